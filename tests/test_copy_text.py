"""Rows in COPY text format (``sinks.copy_text``): escapes, NULLs and instants."""

from __future__ import annotations

from sinks.copy_text import CopyRow, Instants
from pipeline.timeutil import MAX_US, iso, parse_ts


def test_text_is_escaped_and_none_is_null():
    row = CopyRow(("text", "int", "bool", "json", "bytea"))
    line = row(("a\\b\tc\nd\re", -5, True, '{"x":"\\n"}', b"\x00\xff"))
    assert line == b"a\\\\b\\tc\\nd\\re\t-5\tt\t{\"x\":\"\\\\n\"}\t\\\\x00ff\n"
    assert row((None, None, False, None, None)) == b"\\N\t\\N\tf\t\\N\t\\N\n"


def test_instants_are_utc_with_microseconds():
    at = Instants()
    assert at(0) == "1970-01-01 00:00:00.000000+00"
    us = parse_ts("2026-03-05T10:00:01.000250Z")
    assert at(us) == "2026-03-05 10:00:01.000250+00"
    assert at(us + 1) == "2026-03-05 10:00:01.000251+00", "the second's text is kept"
    assert at(MAX_US) == iso(MAX_US).replace("T", " ").replace(".000Z", ".000000+00")


def test_a_row_of_the_wrong_length_is_refused_not_cut():
    encode = CopyRow(("text", "int")).encode
    assert encode(("a", 1)) == b"a\t1\n"
    for row in (("a",), ("a", 1, 2)):
        try:
            encode(row)
        except ValueError:
            continue
        raise AssertionError(f"{row} was encoded")
