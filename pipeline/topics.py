"""The pipeline's Kafka topics: names, roles, and their explicit creation.

All topics have the same partition count, so Faust's assignor gives partition ``i`` of every topic
(and of every table changelog) to the same worker, and keys hash to the same partition number
everywhere (Kafka's default murmur2 partitioner of the key bytes).
"""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError, for_code

from pipeline.kafka_auth import client_options
from pipeline.settings import Settings

EVENTS = "dpu-events"
"""Input: one JSON event per record, key ``dpu_id``."""
PLACEMENTS = "dpu-placements"
"""Input: placements, key ``dpu_id``."""
RESETS = "space-resets"
"""Input: resets and daily-reset settings, key ``space_id``."""
DEAD_LETTER = "dpu-dead-letter"
"""Output: every refused input record, raw value, reason and source in headers."""
SPACE_DELTAS = "space-deltas"
"""Internal: attributed deltas repartitioned by ``space_id``."""
TELEMETRY = "dpu-telemetry"
"""Output: every counted event with its DPU's running counts, key ``dpu_id``."""
SPACE_COUNTS = "space-counts"
"""Output: every change of a space count (attributions and resets), key ``space_id``."""

ALL = (EVENTS, PLACEMENTS, RESETS, DEAD_LETTER, SPACE_DELTAS, TELEMETRY, SPACE_COUNTS)
INPUTS = (EVENTS, PLACEMENTS, RESETS)
"""The topics other producers write to; the others only the workers' (never transactional)."""

TABLES = ("dpus", "dpu-days", "event-ids", "spaces", "space-days", "daily-resets")
"""The worker's Faust tables; each has a compacted changelog topic."""


class Partitioner:
    """Kafka's default partitioner (murmur2 of the key bytes, as Java clients, aiokafka and
    ``dpu produce`` use), remembered per key."""

    def __init__(self, partitions: int, max_keys: int = 500_000) -> None:
        self.partitions = partitions
        self.max_keys = max_keys
        self._known: dict[str, int] = {}

    def __call__(self, key: str) -> int:
        try:
            return self._known[key]
        except KeyError:
            if len(self._known) >= self.max_keys:
                self._known.clear()
            p = self._known[key] = (murmur2(key.encode()) & 0x7FFFFFFF) % self.partitions
            return p


def changelog(settings: Settings, table: str) -> str:
    """The changelog topic Faust keeps ``table`` in."""
    return f"{settings.app_id}-{table}-changelog"


def topic_configs(settings: Settings, compacted: bool = False) -> dict[str, str]:
    configs = {"min.insync.replicas": str(settings.min_insync_replicas)}
    if compacted:
        configs["cleanup.policy"] = "compact"
    return configs


class BrokerUnavailable(RuntimeError):
    """The Kafka broker could not be reached."""


class TopicsRefused(RuntimeError):
    """The broker refused to create a topic (too many replicas asked, a bad config)."""


def refused(response) -> None:
    """Raise TopicsRefused for the first topic a CreateTopics response did not create."""
    for topic, code, *message in response.topic_errors:
        if code and code != TopicAlreadyExistsError.errno:
            why = (message[0] if message and message[0] else None) or for_code(code).__name__
            raise TopicsRefused(f"the broker refused to create topic {topic}: {why}")


def unreachable_message(settings: Settings) -> str:
    return (f"Kafka is not reachable at {settings.kafka_bootstrap}: start it with "
            "`dpu dev up` (or set DPU_KAFKA_URL)")


async def admin_client(settings: Settings, timeout_s: float = 15) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**client_options(settings),
                                request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
    except (KafkaConnectionError, KafkaError, OSError, asyncio.TimeoutError):
        await admin.close()
        raise BrokerUnavailable(unreachable_message(settings)) from None
    return admin


async def ensure_topics(settings: Settings, changelogs: bool = False) -> list[str]:
    """Create the missing pipeline topics (and with ``changelogs`` the tables' changelog topics,
    which a worker needs listed before it joins its group: Faust's assignor leaves out a
    changelog it does not see yet, and every write to that table then fails); returns the names
    created. Replication follows the settings."""
    wanted = {settings.topic(n): False for n in ALL}
    if changelogs:
        wanted.update({changelog(settings, t): True for t in TABLES})
    admin = await admin_client(settings)
    try:
        return await _ensure(admin, settings, wanted)
    except (KafkaError, OSError, asyncio.TimeoutError) as exc:
        # The broker went away half-way (restarted): as unreachable, the caller waits for it.
        raise BrokerUnavailable(f"{unreachable_message(settings)} ({type(exc).__name__})") \
            from None
    finally:
        await admin.close()


async def _ensure(admin: AIOKafkaAdminClient, settings: Settings,
              wanted: dict[str, bool]) -> list[str]:
    existing = set(await admin.list_topics())
    missing = [n for n in wanted if n not in existing]
    if missing:
        try:
            response = await admin.create_topics(
                [NewTopic(n, settings.partitions, settings.replication_factor,
                          topic_configs=topic_configs(settings, wanted[n]))
                 for n in missing])
        except TopicAlreadyExistsError:
            pass  # another process created it meanwhile
        else:
            refused(response)
    await _until_listed(admin, list(wanted), settings.partitions)
    return missing


async def _until_listed(admin: AIOKafkaAdminClient, topics: list[str], partitions: int,
                        timeout_s: float = 30) -> None:
    """Wait until the broker's metadata lists every partition of ``topics`` with a leader.

    A topic just created can be missing from the metadata for a moment; a worker subscribing
    then is told the topic does not exist and is never assigned it.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        pending = []
        for topic in await admin.describe_topics(topics):
            listed = topic.get("partitions") or []
            if listed and len(listed) != partitions:
                raise RuntimeError(
                    f"topic {topic['topic']} has {len(listed)} partitions, the pipeline is "
                    f"configured for {partitions} (DPU_PARTITIONS)")
            if topic.get("error_code") or not listed or any(
                    p.get("error_code") or p.get("leader", -1) < 0 for p in listed):
                pending.append(topic["topic"])
        if not pending:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"topics {', '.join(pending)} have no leader after {timeout_s:.0f} s")
        await asyncio.sleep(0.2)
