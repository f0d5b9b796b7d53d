"""The state tables as the counting logic sees them: keys to live, decoded values.

``dpus`` and ``spaces`` hold :class:`DpuState` and :class:`SpaceState` objects, the day logs
(``dpu-days``, ``space-days``) :class:`Chunk` objects, every other table JSON-able lists and
dicts. A store decodes a value when it is first loaded and encodes it when it is written back.
The counting logic changes loaded values in place and always stores what it changed, so a store
may keep values across records and batches (the workers' ``TableCache``) or decode them afresh
at every load (the tests' stores): both see the same state.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from tables.chunks import Chunk
from tables.dpu_state import DpuState
from tables.space_state import SpaceState

VALUE_TYPES = {"dpus": DpuState, "spaces": SpaceState, "dpu-days": Chunk, "space-days": Chunk}
"""Tables whose values are objects (``from_value``, ``to_value``, ``to_bytes``)."""


def settled(table: str, value: Any) -> bool:
    """Whether a value just written is unlikely to be read again soon: a full day-log chunk
    (appends go to the next one) or an event id's first source (read again by a duplicate
    only). A cache that drops these once written keeps what the fleet needs, not what its
    events added up to."""
    return table == "event-ids" or (isinstance(value, Chunk) and value.full)


class Store(Protocol):
    def load(self, table: str, key: str) -> Any:
        """The value of ``key`` (an object for the tables of ``VALUE_TYPES``), or None."""

    def store(self, table: str, key: str, value: Any) -> None:
        """Write ``value`` back (it may be the very object ``load`` returned, changed)."""

    def delete(self, table: str, key: str) -> None: ...


def decode(table: str, key: str, value: Any) -> Any:
    """A table value as stored (JSON-able) to what ``Store.load`` returns."""
    kind = VALUE_TYPES.get(table)
    return value if kind is None or value is None else kind.from_value(key, value)


def encode(table: str, value: Any) -> Any:
    """What ``Store.load`` returns to the JSON-able value a table stores."""
    return value if value is None or table not in VALUE_TYPES else value.to_value()


def to_bytes(table: str, value: Any) -> bytes:
    """What ``Store.load`` returns, encoded as the table stores it."""
    return value.to_bytes() if table in VALUE_TYPES else orjson.dumps(value)
