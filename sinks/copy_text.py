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

try:
    from dpu_native import CopyEncoder as _Compiled  # sinks/native, built by scripts/setup
except ImportError:
    _Compiled = None
COMPILED = _Compiled is not None
"""Whether ``sinks/native`` is installed: it then encodes the rows of plain values itself, byte
for byte as the Python encoder would, and hands that one every other row."""

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


_ENCODE = {"text": "text({})", "json": "text({})", "int": "str({})",
           "bool": "('t' if {} else 'f')", "us": "instant({})", "bytea": "bytea({})"}
"""How each column type is encoded, as an expression of the value."""


class CopyRow:
    """Encodes rows of fixed column types: ``text``, ``int`` (any integer), ``bool``, ``us``
    (an instant, as ``timestamptz``), ``bytea``, ``json`` (JSON text, for ``jsonb``).

    The encoder is one function generated for the types (as ``collections.namedtuple`` does):
    a row is encoded in about three quarters of the time a loop over per-column encoders took,
    and the sinks encode several rows per event. A row of the wrong length raises ``ValueError``.
    With ``sinks/native`` installed, the compiled encoder takes the rows of plain values (str,
    int, bool, bytes, None, instants 1970 - 9999) and hands it any other: the generated
    function stays the definition (``tests/test_copy_text.py`` checks they agree)."""

    def __init__(self, types: Sequence[str]) -> None:
        self.types = tuple(types)
        names = [f"v{i}" for i in range(len(self.types))]
        columns = ", ".join(f"NULL if {n} is None else {_ENCODE[t].format(n)}"
                            for n, t in zip(names, self.types))
        source = (f"def encode(row):\n    ({', '.join(names)},) = row\n"
                  f"    return '\\t'.join(({columns},)).encode() + b'\\n'\n")
        scope: dict[str, Any] = {"NULL": NULL, "text": text, "bytea": bytea,
                                 "instant": Instants()}
        exec(source, scope)
        self.python_encode: Callable[[Sequence[Any]], bytes] = scope["encode"]
        """The generated function: the definition of a row's line."""
        self.encode: Callable[[Sequence[Any]], bytes] = (
            self.python_encode if _Compiled is None
            else _Compiled(list(self.types), self.python_encode))
        """The encoder to call (a call less than the instance)."""

    def __call__(self, row: Sequence[Any]) -> bytes:
        return self.encode(row)
