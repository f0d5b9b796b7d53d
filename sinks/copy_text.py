"""Rows encoded in PostgreSQL's COPY text format, as a sink takes them.

A sink holds thousands of rows before it writes; formatting them all in the flush (psycopg's
``write_row``) reached each row long after it was made, out of the CPU's cache, and cost more
than making it. A :class:`CopyRow` encodes a row at once into the bytes COPY reads: a flush
then sends the joined lines. Columns are typed once per statement; instants are µs since the
epoch (``pipeline.timeutil``).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from pipeline.timeutil import US

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = "\\N"


def text(value: str) -> str:
    """A text value as COPY reads it (backslash, tab and line ends escaped)."""
    if value.isprintable() and "\\" not in value:  # ids and most text: nothing to escape
        return value
    return value.translate(_ESCAPES)


def bytea(value: bytes) -> str:
    """A bytea value in hex, its backslash escaped for COPY."""
    return "\\\\x" + value.hex()


class Instants:
    """µs since the epoch as ``timestamptz`` text, the date and time of each second kept (events
    of a batch share their seconds)."""

    def __init__(self, max_seconds: int = 100_000) -> None:
        self.max_seconds = max_seconds
        self._seconds: dict[int, str] = {}

    def __call__(self, us: int) -> str:
        second, micro = divmod(us, US)
        prefix = self._seconds.get(second)
        if prefix is None:
            if len(self._seconds) >= self.max_seconds:
                self._seconds.clear()
            prefix = self._seconds[second] = time.strftime("%Y-%m-%d %H:%M:%S",
                                                           time.gmtime(second))
        return f"{prefix}.{micro:06d}+00"


class CopyRow:
    """Encodes rows of fixed column types: ``text``, ``int`` (any integer), ``bool``, ``us``
    (an instant, as ``timestamptz``), ``bytea``, ``json`` (JSON text, for ``jsonb``)."""

    def __init__(self, types: Sequence[str]) -> None:
        instants = Instants()
        by_type: dict[str, Callable[[Any], str]] = {
            "text": text, "json": text, "int": str, "bool": lambda b: "t" if b else "f",
            "us": instants, "bytea": bytea}
        self.types = tuple(types)
        self._encoders = [by_type[t] for t in self.types]

    def __call__(self, row: Sequence[Any]) -> bytes:
        return ("\t".join([NULL if value is None else encode(value)
                           for encode, value in zip(self._encoders, row)]) + "\n").encode()
