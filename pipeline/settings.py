"""One frozen settings object: the only place that reads the environment.

Every other module receives a :class:`Settings` (or reads :func:`settings`), so a test or a CLI flag
can build its own without touching ``os.environ`` behind anyone's back.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


class SettingsError(ValueError):
    """A configuration value a user set is unusable."""


DURATIONS = {
    "max_future_s": True,
    "sink_flush_s": True,
    "count_batch_s": True,
    "fetch_max_wait_s": True,
    "switch_interval_s": False,
    "commit_interval_s": False,
    "session_timeout_s": False,
    "silent_after_s": False,
}
"""Every duration setting (read from ``DPU_`` and its name in capitals), and whether 0 means
something (no wait, no future allowed) rather than nothing at all."""


def variable(name: str) -> str:
    """The environment variable of a setting: ``max_future_s`` is ``DPU_MAX_FUTURE_S``."""
    return f"DPU_{name.upper()}"


@dataclass(frozen=True)
class Settings:
    """Configuration of one deployment of the pipeline (SPEC §6)."""

    kafka_url: str = "kafka://127.0.0.1:9092"
    """Broker URL(s), ``kafka://host:port[;host:port]``."""
    database_url: str = "postgresql://postgres@127.0.0.1:15432/dpu"
    """PostgreSQL connection URL; its database is created by ``dpu db migrate``."""
    redis_url: str = "redis://127.0.0.1:6380/0"
    """Redis URL for the live-count mirror."""
    app_id: str = "dpu-pipeline"
    """Faust application id: the consumer group and the prefix of internal topics."""
    topic_prefix: str = ""
    """Prefix for every topic, so deployments and test runs can share a broker."""
    partitions: int = 4
    """Partition count of every pipeline topic (inputs, repartition, outputs)."""
    web_port: int = 6066
    """Port of the HTTP view served by the worker."""
    web_bind: str = "127.0.0.1"
    """Interface of the HTTP view; loopback unless told otherwise."""
    web_host: str = "127.0.0.1"
    """Host name other workers use to reach this worker's HTTP view (DPU_WEB_BIND when unset)."""
    state_dir: Path = Path(".dpu")
    """Local state: table stores, dev services' data, the Kafka jars."""
    ingest_token: str = ""
    """Bearer token required by write endpoints when not empty."""
    store: str = "rocksdb://"
    """Faust table store URL (``rocksdb://`` or ``memory://``)."""
    max_record_bytes: int = 64 * 1024
    """Records larger than this are rejected to the dead-letter topic."""
    max_future_s: float = 24 * 3600
    """Events further ahead of the wall clock than this are rejected."""
    sink_batch_size: int = 2000
    """Largest batch a sink writes at once."""
    sink_rows: int = 20_000
    """Rows a sink buffers at most before it writes (a batch of grouped messages holds many)."""
    sink_flush_s: float = 0.2
    """Longest time a sink holds a non-empty batch before writing it."""
    count_batch_size: int = 5000
    """Records a counting agent's batch stops taking more at: fetched lists are taken whole, so
    a batch can hold more by part of one list."""
    count_batch_s: float = 0.01
    """Shortest time between the starts of two batches of a counting agent; a batch starts
    sooner when ``count_batch_size`` records are waiting. Unpaced at 2,000 events/s, each agent
    counted 110 – 220 batches a second of a few records, each batch with its own writes."""
    fetch_max_wait_s: float = 0.05
    """Longest time the broker holds the worker's fetch for records (Faust fixes 1.5 s): while
    one is held, partitions left out of it are not fetched, so this bounds their extra delay."""
    switch_interval_s: float = 0.001
    """How long a worker's thread may hold the GIL while another waits for it (CPython's 5 ms
    by default): the Kafka consumer runs in a thread of its own, and every fetched record
    waits for it to get the GIL back from the busy event loop."""
    commit_interval_s: float = 0.5
    """How often the worker commits consumer offsets."""
    session_timeout_s: float = 30.0
    """How long the group waits for a silent worker before moving its partitions elsewhere."""
    replication_factor: int = 1
    """Replicas of every topic the pipeline or Faust creates (1 suits a single dev broker)."""
    min_insync_replicas: int = 1
    """``min.insync.replicas`` of those topics: with ``acks=all``, writes fail rather than land
    on fewer replicas."""
    reconcile_share: float = 0.2
    """Most of the database's time the reconciler takes while a backlog lasts: after each round
    it pauses long enough for the live sinks to have the rest."""
    silent_after_s: float = 3600.0
    """A DPU whose latest event is older than this is ``silent`` in sensor health."""
    kafka_extra: Mapping[str, str] = field(default_factory=dict)
    """``DPU_KAFKA_*`` passthrough settings (SASL/TLS), lower-cased without the prefix."""

    def __post_init__(self) -> None:
        if not 0 < self.reconcile_share <= 1:
            raise SettingsError("DPU_RECONCILE_SHARE must be more than 0 and at most 1, got "
                                f"{self.reconcile_share!r}")
        for name, zero in DURATIONS.items():
            # Unchecked, a negative or infinite duration did something else without a word
            # (CPython takes an infinite switch interval and reads it back as 0.0).
            value = getattr(self, name)
            if not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
                raise SettingsError(f"{variable(name)} must be a finite number of seconds, "
                                    f"{'0 or more' if zero else 'more than 0'}, got {value!r}")

    def topic(self, name: str) -> str:
        """The full name of a pipeline topic."""
        return f"{self.topic_prefix}{name}"

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port,host:port`` for plain aiokafka clients."""
        url = self.kafka_url
        for scheme in ("kafka://", "aiokafka://"):
            if url.startswith(scheme):
                url = url[len(scheme):]
        return url.replace(";", ",")

    @property
    def store_dir(self) -> Path:
        """Where a worker keeps its local table stores (Faust's datadir)."""
        return self.state_dir / "worker"

    @property
    def redis_prefix(self) -> str:
        """Namespace of this deployment's Redis keys and channels."""
        return f"{self.topic_prefix}dpu:"

    def with_(self, **changes: object) -> "Settings":
        """A copy with some fields changed (CLI flags, tests)."""
        return replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The environment that makes ``from_env`` rebuild these settings (for child workers)."""
        env = {
            "DPU_KAFKA_URL": self.kafka_url, "DPU_DATABASE_URL": self.database_url,
            "DPU_REDIS_URL": self.redis_url, "DPU_APP_ID": self.app_id,
            "DPU_TOPIC_PREFIX": self.topic_prefix, "DPU_PARTITIONS": str(self.partitions),
            "DPU_WEB_PORT": str(self.web_port), "DPU_WEB_BIND": self.web_bind,
            "DPU_WEB_HOST": self.web_host, "DPU_STATE_DIR": str(self.state_dir),
            "DPU_INGEST_TOKEN": self.ingest_token, "DPU_STORE": self.store,
            "DPU_MAX_RECORD_BYTES": str(self.max_record_bytes),
            "DPU_MAX_FUTURE_S": str(self.max_future_s),
            "DPU_SINK_BATCH_SIZE": str(self.sink_batch_size),
            "DPU_SINK_ROWS": str(self.sink_rows),
            "DPU_SINK_FLUSH_S": str(self.sink_flush_s),
            "DPU_COUNT_BATCH_SIZE": str(self.count_batch_size),
            "DPU_COUNT_BATCH_S": str(self.count_batch_s),
            "DPU_FETCH_MAX_WAIT_S": str(self.fetch_max_wait_s),
            "DPU_SWITCH_INTERVAL_S": str(self.switch_interval_s),
            "DPU_COMMIT_INTERVAL_S": str(self.commit_interval_s),
            "DPU_SESSION_TIMEOUT_S": str(self.session_timeout_s),
            "DPU_REPLICATION_FACTOR": str(self.replication_factor),
            "DPU_MIN_INSYNC_REPLICAS": str(self.min_insync_replicas),
            "DPU_RECONCILE_SHARE": str(self.reconcile_share),
            "DPU_SILENT_AFTER_S": str(self.silent_after_s),
        }
        env.update({f"DPU_KAFKA_{k.upper()}": v for k, v in self.kafka_extra.items()})
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        d = cls()
        return cls(
            kafka_url=env.get("DPU_KAFKA_URL") or d.kafka_url,
            database_url=env.get("DPU_DATABASE_URL") or d.database_url,
            redis_url=env.get("DPU_REDIS_URL") or d.redis_url,
            app_id=env.get("DPU_APP_ID") or d.app_id,
            topic_prefix=env.get("DPU_TOPIC_PREFIX", d.topic_prefix),
            partitions=_int(env, "DPU_PARTITIONS", d.partitions),
            web_port=_int(env, "DPU_WEB_PORT", d.web_port),
            web_bind=env.get("DPU_WEB_BIND") or d.web_bind,
            web_host=env.get("DPU_WEB_HOST") or env.get("DPU_WEB_BIND") or d.web_host,
            state_dir=Path(env.get("DPU_STATE_DIR") or d.state_dir),
            ingest_token=env.get("DPU_INGEST_TOKEN", d.ingest_token),
            store=env.get("DPU_STORE") or d.store,
            max_record_bytes=_int(env, "DPU_MAX_RECORD_BYTES", d.max_record_bytes),
            max_future_s=_float(env, "DPU_MAX_FUTURE_S", d.max_future_s),
            sink_batch_size=_int(env, "DPU_SINK_BATCH_SIZE", d.sink_batch_size),
            sink_rows=_int(env, "DPU_SINK_ROWS", d.sink_rows),
            sink_flush_s=_float(env, "DPU_SINK_FLUSH_S", d.sink_flush_s),
            count_batch_size=_int(env, "DPU_COUNT_BATCH_SIZE", d.count_batch_size),
            count_batch_s=_float(env, "DPU_COUNT_BATCH_S", d.count_batch_s),
            fetch_max_wait_s=_float(env, "DPU_FETCH_MAX_WAIT_S", d.fetch_max_wait_s),
            switch_interval_s=_float(env, "DPU_SWITCH_INTERVAL_S", d.switch_interval_s),
            commit_interval_s=_float(env, "DPU_COMMIT_INTERVAL_S", d.commit_interval_s),
            session_timeout_s=_float(env, "DPU_SESSION_TIMEOUT_S", d.session_timeout_s),
            replication_factor=_int(env, "DPU_REPLICATION_FACTOR", d.replication_factor),
            min_insync_replicas=_int(env, "DPU_MIN_INSYNC_REPLICAS", d.min_insync_replicas),
            reconcile_share=_float(env, "DPU_RECONCILE_SHARE", d.reconcile_share),
            silent_after_s=_float(env, "DPU_SILENT_AFTER_S", d.silent_after_s),
            kafka_extra={
                k[len("DPU_KAFKA_"):].lower(): v
                for k, v in env.items()
                if k.startswith("DPU_KAFKA_") and k != "DPU_KAFKA_URL"
            },
        )


_current: Settings | None = None


def settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current


def use(new: Settings) -> Settings:
    """Make ``new`` the process-wide settings (the CLI does this before building the app)."""
    global _current
    _current = new
    return new
