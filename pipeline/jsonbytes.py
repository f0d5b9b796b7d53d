"""JSON encodings that are kept: right-sized copies of what orjson returns."""

from __future__ import annotations

from typing import Any

import orjson


def dumps_kept(value: Any) -> bytes:
    """``orjson.dumps(value)`` in a bytes object of its own length.

    orjson (3.12 and later) returns its output buffer as is: at least 4 KiB for any value.
    Fine for an encoding used and dropped at once; a worker that kept one per day-log item
    and per output of a batch held 2.4 GB after 200,000 events, and the allocator's
    fresh pages cost a sixth of its CPU. The copy costs about 0.07 µs.
    """
    return b"".join((orjson.dumps(value), b""))
