"""Grouped values as Kafka messages of a bounded size."""

from __future__ import annotations

from typing import Iterator

MAX_MESSAGE_BYTES = 512 * 1024
"""Upper bound of one grouped message: half of Kafka's default limits (the producer's
``max_request_size`` and the broker's ``message.max.bytes``, 1 MiB each)."""


def json_arrays(encoded: list[bytes], max_bytes: int = MAX_MESSAGE_BYTES) -> Iterator[bytes]:
    """Values already encoded as JSON, joined into consecutive JSON arrays, in order, each at
    most ``max_bytes`` long unless it holds a single value.

    A batch groups its outputs per destination; thousands of records for one partition (a
    DPU replayed, a burst on one doorway) made a 1.6 MB message that the producer refused, and
    the worker crashed on it. Values are encoded when they are made, while still in the CPU's
    cache (encoding them all at the end of a batch cost several times more).
    """
    start, size = 0, 2
    for i, value in enumerate(encoded):
        if i > start and size + len(value) + 1 > max_bytes:
            yield b"[" + b",".join(encoded[start:i]) + b"]"
            start, size = i, 2
        size += len(value) + 1
    yield b"[" + b",".join(encoded[start:]) + b"]"
