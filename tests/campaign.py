"""The randomized fault campaign's plan: per seed, a fleet with every kind of disorder, hostile
records among it, and a schedule of faults to apply while it is published.

Pure and deterministic per seed (``plan(seed)``), so a failing seed replays the same records
and the same faults in the same order; ``tests/integration/test_campaign.py`` carries it out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import orjson

from pipeline.producer import route
from pipeline.topics import EVENTS, PLACEMENTS, RESETS
from tests import scenarios

FAULTS = ("kill -9", "SIGTERM", "SIGSTOP past the session timeout", "worker joins",
          "worker leaves", "local stores deleted", "PostgreSQL stopped", "Redis stopped",
          "broker restarted")
"""Every kind of fault the campaign applies."""


@dataclass(frozen=True)
class Hostile:
    """A record no producer should send, and the reason its reject must give."""

    name: str
    """What is wrong with it, for the report."""
    topic: str
    """Input topic (without prefix) it is written to."""
    key: bytes | None
    value: bytes
    reason: str
    """A fragment of the reason ``dpu_rejects`` must hold for it."""

    @property
    def raw(self) -> bytes:
        """The value as sent: a JSON object carries the record's name (a field no parser
        reads), so that each one's row in ``dpu_rejects`` can be told apart."""
        if self.value.startswith(b"{") and self.value.endswith(b"}"):
            return self.value[:-1] + b', "campaign": ' + orjson.dumps(self.name) + b"}"
        return self.value


def _event(**fields) -> bytes:
    base = {"dpu_id": "D0", "timestamp": "2026-03-05T10:00:00Z", "direction": 1}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


HOSTILE = [
    Hostile("NUL in the key", EVENTS, b"D\x000", _event(), "record key must equal dpu_id"),
    Hostile("NUL in dpu_id", EVENTS, b"D0", _event(dpu_id="D\x000"), "control character"),
    Hostile("key separator in dpu_id", EVENTS, b"D0", _event(dpu_id="D0\x1f1"),
            "control character"),
    Hostile("NUL in event_id", EVENTS, b"D0", _event(event_id="x\x00"), "control character"),
    Hostile("year 1 at +01:00", EVENTS, b"D0", _event(timestamp="0001-01-01T00:00:00+01:00"),
            "before 1970"),
    Hostile("a microsecond before 1970", EVENTS, b"D0",
            _event(timestamp="1969-12-31T23:59:59.999999Z"), "before 1970"),
    Hostile("year 9999", EVENTS, b"D0", _event(timestamp="9999-12-31T23:59:59Z"), "ahead of"),
    Hostile("not JSON", EVENTS, b"D0", b"{\"dpu_id\": \"D0\",", "not valid JSON"),
    Hostile("a JSON array", EVENTS, b"D0", b"[1, -1]", "expected a JSON object"),
    Hostile("direction 0", EVENTS, b"D0", _event(direction=0), "direction must be 1 or -1"),
    Hostile("key of another DPU", EVENTS, b"D1", _event(), "record key must equal dpu_id"),
    Hostile("a key that is not UTF-8", EVENTS, b"\xff\xfe", _event(),
            "record key must equal dpu_id"),
    Hostile("oversized", EVENTS, b"D0", _event(pad="x" * 70_000), "byte limit"),
    Hostile("placement in year 1", PLACEMENTS, b"D0", orjson.dumps(
        {"dpu_id": "D0", "installed_at": "0001-01-01T00:00:00Z", "doorway_id": "x",
         "spaces": [{"space_id": "S0", "direction": 1}]}), "before 1970"),
    Hostile("NUL in a placement's space", PLACEMENTS, b"D0", orjson.dumps(
        {"dpu_id": "D0", "installed_at": "2026-03-05T00:00:00Z", "doorway_id": "x",
         "spaces": [{"space_id": "S\x000", "direction": 1}]}), "control character"),
    Hostile("negative reset", RESETS, b"S0", orjson.dumps(
        {"space_id": "S0", "at": "2026-03-05T00:00:00Z", "count": -5}), "count must be"),
    Hostile("reset in year 1", RESETS, b"S0", orjson.dumps(
        {"space_id": "S0", "at": "0001-01-01T00:00:00Z", "count": 3}), "before 1970"),
]


@dataclass(frozen=True)
class Publish:
    """Records to publish (valid ones through the producer, hostile ones raw)."""

    records: list
    hostile: list[Hostile] = field(default_factory=list)


@dataclass(frozen=True)
class Fault:
    kind: str
    """One of ``FAULTS``."""
    pick: float
    """Which worker it hits, as a share of the live ones (deterministic per seed)."""


@dataclass
class Plan:
    seed: int
    scenario: scenarios.Scenario
    steps: list
    """``Publish`` and ``Fault`` in the order they happen."""

    @property
    def hostile(self) -> list[Hostile]:
        return [h for s in self.steps if isinstance(s, Publish) for h in s.hostile]

    @property
    def faults(self) -> list[str]:
        return [s.kind for s in self.steps if isinstance(s, Fault)]


def plan(seed: int, n_events: int = 3000, n_faults: int = 5) -> Plan:
    """The records (in waves, cut into chunks), hostile records among them, and faults between
    the chunks: at least one SIGSTOP, one kill -9 and one join in every plan, the rest drawn."""
    rng = random.Random(seed)
    sc = scenarios.build(seed=seed, n_events=n_events)
    chunks: list[list] = []
    for wave in sc.waves:  # the late placements and resets stay after the events they govern
        size = max(1, len(wave) // rng.randint(2, 4))
        chunks += [wave[i:i + size] for i in range(0, len(wave), size)]
    hostile = rng.sample(HOSTILE, rng.randint(len(HOSTILE) // 2, len(HOSTILE)))
    publishes = [Publish(chunk, hostile[i::len(chunks)]) for i, chunk in enumerate(chunks)]
    kinds = ["SIGSTOP past the session timeout", "kill -9", "worker joins"] + [
        rng.choice(FAULTS) for _ in range(max(0, n_faults - 3))]
    rng.shuffle(kinds)
    # Faults between chunks (never before the first), while the pipeline is busy.
    slots = sorted(rng.choices(range(1, len(publishes) + 1), k=len(kinds)))
    steps: list = []
    for i, publish in enumerate(publishes):
        steps += [Fault(kind, rng.random()) for kind, slot in zip(kinds, slots) if slot == i]
        steps.append(publish)
    steps += [Fault(kind, rng.random()) for kind, slot in zip(kinds, slots)
              if slot == len(publishes)]
    return Plan(seed, sc, steps)


def raw_records(hostile: list[Hostile]) -> dict[str, list[tuple[bytes | None, bytes]]]:
    """Hostile records per topic, as ``(key, value)``."""
    out: dict[str, list] = {}
    for h in hostile:
        out.setdefault(h.topic, []).append((h.key, h.raw))
    return out


def topic_of(record) -> str:
    return route(record)[0]
