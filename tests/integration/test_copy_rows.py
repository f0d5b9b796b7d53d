"""Rows encoded for COPY (``sinks.copy_text``) against the real PostgreSQL."""

from __future__ import annotations


def test_copy_lines_store_what_parameters_store(base_settings):
    """A row encoded by ``sinks.copy_text`` reads back as the same row inserted with psycopg's
    parameters: escapes, unicode, bytes, NULLs and instants at both ends of the range."""
    import psycopg

    from pipeline.timeutil import MAX_US, from_us
    from sinks.copy_text import CopyRow

    types = ("text", "int", "bool", "json", "bytea", "us")
    rows = [("a\\b\tc\nd\re 'é' ∑", 2**40, True, '{"x": "\\n\\t"}', bytes(range(256)), 0),
            (None, -7, False, None, b"", MAX_US),
            ("x", 0, None, "[1, 2]", None, 1_700_000_000_123_456)]
    encode = CopyRow(types)
    with psycopg.connect(base_settings.database_url) as conn:
        conn.execute("CREATE TEMP TABLE copied (t text, i bigint, b bool, j jsonb, r bytea, "
                     "at timestamptz, n int)")
        with conn.cursor().copy("COPY copied (t, i, b, j, r, at) FROM STDIN") as copy:
            copy.write(b"".join(encode(row) for row in rows))
        for n, row in enumerate(rows):
            conn.execute("INSERT INTO copied VALUES (%s, %s, %s, %s, %s, %s, %s)",
                         (*row[:5], from_us(row[5]), n))
        copied = conn.execute("SELECT t, i, b, j, r, at FROM copied WHERE n IS NULL").fetchall()
        inserted = conn.execute("SELECT t, i, b, j, r, at FROM copied WHERE n IS NOT NULL "
                                "ORDER BY n").fetchall()
    assert copied == inserted
