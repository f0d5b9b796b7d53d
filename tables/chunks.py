"""Append-only lists kept in a table as fixed-size chunks.

A DPU's or a space's log of one day can grow to thousands of items; appending to one value would
decode and re-encode the whole day at every batch. Chunks bound that to ``CHUNK`` items, and the
owner's state keeps how many items each list has, so reading a list needs no scan.
"""

from __future__ import annotations

from typing import Any, Protocol

CHUNK = 32
"""Items per chunk."""
SEP = "\x1f"
"""Separator of composite keys (ASCII unit separator: never part of a valid id)."""


class Store(Protocol):
    def load(self, table: str, key: str) -> Any: ...

    def store(self, table: str, key: str, value: Any) -> None: ...

    def delete(self, table: str, key: str) -> None: ...


def _key(base: str, chunk: int) -> str:
    return f"{base}{SEP}{chunk}"


def append(db: Store, table: str, base: str, length: int, item: Any) -> None:
    """Append ``item`` to the list ``base`` that has ``length`` items so far."""
    key = _key(base, length // CHUNK)
    items = list(db.load(table, key) or [])
    # Slots past ``length`` may hold items of a batch whose state was never written (a kill
    # between the two): the slot is overwritten, the ones after it are kept for ``peek``
    # (the records read again after the kill find there what they sent the first time).
    if length % CHUNK < len(items):
        items[length % CHUNK] = item
    else:
        items.append(item)
    db.store(table, key, items)


def read(db: Store, table: str, base: str, length: int) -> list[Any]:
    """The ``length`` items of list ``base``, oldest first."""
    out: list[Any] = []
    for chunk in range((length + CHUNK - 1) // CHUNK):
        out.extend(db.load(table, _key(base, chunk)) or ())
    # The last chunk may hold items past ``length``, of a batch whose state was never written:
    # they were not counted, and must not be taken for counted ones.
    return out[:length]


def peek(db: Store, table: str, base: str, length: int) -> Any:
    """The item in slot ``length`` of list ``base``: left by a batch whose state was never
    written (a kill between the two), or None."""
    items = db.load(table, _key(base, length // CHUNK)) or ()
    return items[length % CHUNK] if length % CHUNK < len(items) else None


def drop(db: Store, table: str, base: str, length: int) -> None:
    for chunk in range((length + CHUNK - 1) // CHUNK):
        db.delete(table, _key(base, chunk))
