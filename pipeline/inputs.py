"""An input topic's Kafka record read as a typed record, or refused with the reason.

The counting agents and the bulk rebuild (``pipeline.rebuild``) both read records through these
functions, so a rebuild accepts and refuses exactly what the first count did: the value is
validated (``pipeline.models``) against the record's own Kafka timestamp as the clock, and the
record's key must be the id whose state it changes.
"""

from __future__ import annotations

from typing import Any, Protocol

from pipeline.models import (DailyReset, DpuEvent, Placement, Reject, Reset, parse_event,
                             parse_placement, parse_reset)
from pipeline.settings import Settings
from pipeline.timeutil import clamped


class KafkaRecord(Protocol):
    """What is read of a Kafka record (Faust's ``Message`` and aiokafka's records have it)."""

    topic: str
    partition: int
    offset: int
    timestamp: Any
    """Faust: seconds (float); see ``kafka_us``."""
    key: bytes | None
    value: bytes | None


def kafka_us(message: KafkaRecord) -> int:
    """The record's Kafka timestamp in µs, clamped to the instants every sink can store: a
    producer sets it to anything, and one out of range must not fail the rows of a valid
    record."""
    return clamped(int(message.timestamp * 1_000_000))


def sent_at(message: KafkaRecord, now: int) -> int:
    """The wall clock when the record was sent (its Kafka timestamp), that instants are checked
    against: a replay then refuses and accepts exactly what the first count did."""
    ts = kafka_us(message)
    return ts if ts > 0 else now


def record_key(message: KafkaRecord) -> str | None:
    """The record's key as text; None when it has none or it is not UTF-8."""
    key = message.key
    if key is None:
        return None
    try:
        return key.decode() if isinstance(key, bytes) else str(key)
    except UnicodeDecodeError:
        return None


def _keyed(message: KafkaRecord, record, expected: str, field: str):
    if isinstance(record, Reject) or record_key(message) == expected:
        return record
    # The state of an id lives in the partition its key hashes to: a record keyed otherwise
    # would be counted apart from the rest of its id's history.
    return Reject(f"record key must equal {field} {expected!r}", message.value or b"")


def read_event(message: KafkaRecord, settings: Settings, now: int) -> DpuEvent | Reject:
    event = parse_event(message.value or b"", now_us=sent_at(message, now),
                        max_bytes=settings.max_record_bytes, max_future_s=settings.max_future_s)
    return event if isinstance(event, Reject) else _keyed(message, event, event.dpu_id, "dpu_id")


def read_placement(message: KafkaRecord, settings: Settings, now: int) -> Placement | Reject:
    p = parse_placement(message.value or b"", max_bytes=settings.max_record_bytes,
                        now_us=sent_at(message, now), max_future_s=settings.max_future_s)
    return p if isinstance(p, Reject) else _keyed(message, p, p.dpu_id, "dpu_id")


def read_reset(message: KafkaRecord, settings: Settings,
               now: int) -> Reset | DailyReset | Reject:
    r = parse_reset(message.value or b"", max_bytes=settings.max_record_bytes,
                    now_us=sent_at(message, now), max_future_s=settings.max_future_s)
    return r if isinstance(r, Reject) else _keyed(message, r, r.space_id, "space_id")
