"""Rows in COPY text format (``sinks.copy_text``): escapes, NULLs and instants."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from sinks.copy_text import COMPILED, CopyRow, Instants
from pipeline.timeutil import MAX_US, US, iso, parse_ts

TYPES = ("text", "int", "bool", "us", "bytea", "json")
"""Every column type a row can have."""


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


def test_the_compiled_encoder_is_installed():
    assert COMPILED, ("dpu_native is not installed: scripts/setup builds it from sinks/native "
                      "(it needs cargo: https://rustup.rs)")
    assert CopyRow(("text",)).encode is not CopyRow(("text",)).python_encode


def test_plain_rows_are_encoded_without_the_python_encoder():
    from dpu_native import CopyEncoder

    compiled = CopyEncoder(list(TYPES), lambda row: b"by the python encoder")
    row = ("d-1\t", -2**63, False, parse_ts("2026-03-05T10:00:01.000250Z"), b"\x00", '{"a":1}')
    assert compiled(row) == CopyRow(TYPES).python_encode(row)
    assert compiled(row) != b"by the python encoder"
    assert compiled(("d-1", 2**63, False, 0, b"", "")) == b"by the python encoder"


values = {
    "text": st.one_of(st.text(), st.sampled_from(["\ud800", "a\\b\tc\nd\re", "x\x00y", ""])),
    "int": st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(), st.booleans(),
                     st.floats(allow_nan=False)),
    "bool": st.one_of(st.booleans(), st.integers(-1, 2), st.text(max_size=1)),
    "us": st.one_of(st.integers(0, MAX_US), st.integers(-10 * US, MAX_US + 10 * 86_400 * US),
                    st.sampled_from([0, MAX_US, MAX_US + 1, -1, 951_782_400 * US])),
    "bytea": st.one_of(st.binary(), st.text(max_size=3)),
}
values["json"] = values["text"]


@st.composite
def rows(draw):
    types = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=8))
    row = [draw(st.none() | values[t]) for t in types]
    shape = draw(st.sampled_from(["tuple", "list", "short", "long"]))
    if shape == "short":
        row = row[:-1]
    elif shape == "long":
        row = row + [None]
    return types, (list(row) if shape == "list" else tuple(row))


def outcome(encode, row):
    try:
        return encode(row)
    except Exception as exc:
        return type(exc)


@settings(max_examples=500, deadline=None)
@given(rows())
def test_the_compiled_encoder_writes_every_row_as_the_python_one(case):
    types, row = case
    encoder = CopyRow(types)
    assert outcome(encoder.encode, row) == outcome(encoder.python_encode, row)
