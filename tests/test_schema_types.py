"""Count columns wide enough for real values (issue #12: delta, entries, exits were smallint).
Reads the migrations; the integration tests apply them to PostgreSQL."""

import re

from pipeline.db import migrations


def final_types(table: str) -> dict[str, str]:
    """Each column's type after every migration, read from the SQL."""
    types: dict[str, str] = {}
    for path in migrations():
        text = path.read_text()
        create = re.search(rf"CREATE TABLE IF NOT EXISTS {table} \((.*?)\n\);", text, re.S)
        if create:
            for line in create.group(1).splitlines():
                m = re.match(r"\s+\"?(\w+)\"?\s+(\w+)", line)
                if m and m.group(1) != "PRIMARY":
                    types[m.group(1)] = m.group(2)
        for alter in re.finditer(rf"ALTER TABLE {table}\b(.*?);", text, re.S):
            for col, typ in re.findall(r"ADD COLUMN IF NOT EXISTS (\w+) (\w+)", alter.group(1)):
                types[col] = typ
            for col, typ in re.findall(r"ALTER COLUMN (\w+) TYPE (\w+)", alter.group(1)):
                types[col] = typ
    return types


def test_space_count_holds_any_delta_and_any_offset():
    types = final_types("space_count")
    assert {c: types[c] for c in ("delta", "entries", "exits")} == dict.fromkeys(
        ("delta", "entries", "exits"), "integer")
    assert types["seq"] == "bigint" and types["source_offset"] == "bigint"
