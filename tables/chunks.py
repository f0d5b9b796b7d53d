"""Append-only lists kept in a table as fixed-size chunks.

A DPU's or a space's log of one day can grow to thousands of items; appending to one value would
decode and re-encode the whole day at every batch. Chunks bound that to ``CHUNK`` items, and the
owner's state keeps how many items each list has, so reading a list needs no scan. A chunk also
keeps each item's encoding: writing it back after an append encodes only the new item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from pipeline.jsonbytes import dumps_kept

if TYPE_CHECKING:
    from tables.store import Store

CHUNK = 32
"""Items per chunk."""
SEP = "\x1f"
"""Separator of composite keys (ASCII unit separator: never part of a valid id)."""


class Chunk:
    """The items of one chunk (tuples: see ``frozen``), with their encodings kept once made."""

    __slots__ = ("items", "_encoded")

    def __init__(self, items: list[Any] | None = None) -> None:
        self.items: list[Any] = [] if items is None else items
        self._encoded: list[bytes] = []
        """The encodings of the first items (an item overwritten drops it and those after)."""

    def set(self, index: int, item: Any) -> None:
        """Put ``item`` in slot ``index`` (overwritten) or right after the last one."""
        if index < len(self.items):
            self.items[index] = item
            del self._encoded[index:]
        else:
            self.items.append(item)
            if len(self._encoded) == index:
                # Encoded now, while the new item is in the CPU's cache: encoding items made
                # many batches ago cost ten times more (their memory long evicted).
                self._encoded.append(dumps_kept(item))

    @property
    def full(self) -> bool:
        return len(self.items) >= CHUNK

    def to_bytes(self) -> bytes:
        encoded, items = self._encoded, self.items
        if not encoded and self.full:
            # Full (no item will be added), none encoded yet (a rebuild makes them so): one
            # call, not one per item.
            return orjson.dumps(items)
        for i in range(len(encoded), len(items)):
            encoded.append(dumps_kept(items[i]))
        return b"[" + b",".join(encoded) + b"]"

    @classmethod
    def from_value(cls, key: str, value: list[Any]) -> "Chunk":
        return cls([frozen(item) for item in value])

    def to_value(self) -> list[Any]:
        return self.items


def frozen(value: Any) -> Any:
    """``value`` with its lists made tuples, at every depth: the items chunks keep.

    The day logs are most of what a worker keeps alive, item upon item. A list is tracked by
    the cycle collector for as long as it lives; a tuple of numbers and text is untracked by
    the first collection that sees it. Kept as lists, the items made every collection slower
    as the logs grew (counting 60,000 events took 2.5 times longer after 240,000).
    """
    return tuple(frozen(v) for v in value) if isinstance(value, list) else value


def _key(base: str, chunk: int) -> str:
    return f"{base}{SEP}{chunk}"


def append(db: "Store", table: str, base: str, length: int, item: Any) -> None:
    """Append ``item`` to the list ``base`` that has ``length`` items so far."""
    key = _key(base, length // CHUNK)
    chunk = db.load(table, key)
    if chunk is None:
        chunk = Chunk()
    # Slots past ``length`` may hold items of a batch whose state was never written (a kill
    # between the two): the slot is overwritten, the ones after it are kept for ``peek``
    # (the records read again after the kill find there what they sent the first time).
    chunk.set(length % CHUNK, item)
    db.store(table, key, chunk)


def read(db: "Store", table: str, base: str, length: int) -> list[Any]:
    """The ``length`` items of list ``base``, oldest first."""
    out: list[Any] = []
    for chunk in range((length + CHUNK - 1) // CHUNK):
        found = db.load(table, _key(base, chunk))
        if found is not None:
            out.extend(found.items)
    # The last chunk may hold items past ``length``, of a batch whose state was never written:
    # they were not counted, and must not be taken for counted ones.
    return out[:length]


def peek(db: "Store", table: str, base: str, length: int) -> Any:
    """The item in slot ``length`` of list ``base``: left by a batch whose state was never
    written (a kill between the two), or None."""
    found = db.load(table, _key(base, length // CHUNK))
    items = found.items if found is not None else ()
    return items[length % CHUNK] if length % CHUNK < len(items) else None


def drop(db: "Store", table: str, base: str, length: int) -> None:
    for chunk in range((length + CHUNK - 1) // CHUNK):
        db.delete(table, _key(base, chunk))
