"""Stand-ins for what ``pipeline.bulk_input`` reads of the Faust app and of Kafka messages."""

from __future__ import annotations

from types import SimpleNamespace

GENERATION = 2
"""The consumer generation of the fake app and of every fake message."""


def fake_app() -> SimpleNamespace:
    return SimpleNamespace(consumer_generation_id=GENERATION,
                           consumer=SimpleNamespace(_unacked_messages=set()))


def records(*offsets: int, topic: str = "events") -> list[SimpleNamespace]:
    return [SimpleNamespace(topic=topic, offset=o, generation_id=GENERATION, refcount=None)
            for o in offsets]


def offsets(batch) -> list[int]:
    return [message.offset for message in batch]
