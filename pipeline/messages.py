"""Grouped values as Kafka messages of a bounded size."""

from __future__ import annotations

from typing import Any, Iterator

import orjson

MAX_MESSAGE_BYTES = 512 * 1024
"""Upper bound of one grouped message: half of Kafka's default limits (the producer's
``max_request_size`` and the broker's ``message.max.bytes``, 1 MiB each)."""


def json_arrays(values: list[Any], max_bytes: int = MAX_MESSAGE_BYTES) -> Iterator[bytes]:
    """``values`` as consecutive JSON arrays, in order, each at most ``max_bytes`` long unless
    it holds a single value.

    A batch groups its outputs per key; one key with thousands of records in a batch (a DPU
    replayed, a burst on one doorway) made a 1.6 MB message that the producer refused, and the
    worker crashed on it. The usual small group is encoded once, as before.
    """
    encoded = orjson.dumps(values)
    if len(encoded) <= max_bytes or len(values) <= 1:
        yield encoded
        return
    half = len(values) // 2
    yield from json_arrays(values[:half], max_bytes)
    yield from json_arrays(values[half:], max_bytes)
