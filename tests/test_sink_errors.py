"""A sink never blocks on one bad record (``sinks.base``): transient errors are retried with
backoff, a permanent one splits the batch down to the refused record, which is filed as a
reject while every other row is written."""

from __future__ import annotations

import asyncio
import random

import psycopg
import pytest

from sinks.base import BatchingSink, RejectSource, printable
from sinks.postgres import PostgresSink


class FakeDatabase(BatchingSink[str]):
    """Refuses any batch holding a row that starts with "bad" (as PostgreSQL refuses a NUL in
    text); fails the first ``outages`` attempts as a lost connection."""

    initial_backoff_s = 0.001
    permanent_errors = PostgresSink.permanent_errors

    def __init__(self, outages: int = 0) -> None:
        super().__init__()
        self.written: list[str] = []
        self.filed: list[tuple[RejectSource, str]] = []
        self.outages = outages
        self.attempts = 0

    async def write(self, rows: list[str]) -> None:
        self.attempts += 1
        if self.outages:
            self.outages -= 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        if any(r.startswith("bad") for r in rows):
            raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        self.written += rows

    async def write_rejects(self, rejects) -> None:
        self.filed += rejects


def source(i: int) -> RejectSource:
    return RejectSource("dpu-events", 0, i, b"raw %d" % i)


@pytest.mark.parametrize("seed", range(20))
def test_bad_records_are_filed_and_every_good_row_written(seed):
    rng = random.Random(seed)
    sink = FakeDatabase()
    records = [[f"{'bad' if rng.random() < 0.05 else 'ok'}-{i}-{j}"
                for j in range(rng.randrange(1, 4))] for i in range(rng.randrange(1, 300))]
    for i, rows in enumerate(records):
        sink.add_item(rows, source(i))
    asyncio.run(sink.flush())
    bad = {i for i, rows in enumerate(records) if any(r.startswith("bad") for r in rows)}
    assert sink.written == [r for i, rows in enumerate(records) if i not in bad for r in rows], \
        f"seed {seed}"
    assert [s.offset for s, _ in sink.filed] == sorted(bad)
    assert all("NUL" in reason for _, reason in sink.filed)
    assert sink.stats.rejected == len(bad) and sink.stats.pending == 0


def test_an_outage_is_retried_never_refused():
    sink = FakeDatabase(outages=3)
    sink.add_item(["ok-1"], source(1))
    asyncio.run(sink.flush())
    assert sink.written == ["ok-1"] and sink.filed == []
    assert sink.stats.failures == 3 and sink.stats.last_error is None


def test_a_record_whose_rows_could_not_be_built_is_filed():
    sink = FakeDatabase()
    sink.add_item(["ok-1"], source(1))
    sink.add_refused(source(2), "could not be read: KeyError: 'ts'")
    asyncio.run(sink.flush())
    assert sink.written == ["ok-1"]
    assert [(s.offset, r) for s, r in sink.filed] == [
        (2, "sink sink: could not be read: KeyError: 'ts'")]


def test_reasons_are_text_postgresql_can_store():
    assert printable("id 'a\x00b'\n") == "id 'a\\x00b'\\n"


@pytest.mark.parametrize("seed", range(10))
def test_a_grouped_message_refused_is_written_but_for_the_values_refused(seed):
    """A grouped message's rows go to a sink as one item (``agents.sinks.each_value``); the
    database refusing them splits them per value: only the bad values are filed, each with
    its own value and key, and a value whose rows cannot be built is filed alone too."""
    from types import SimpleNamespace

    import orjson

    from agents.sinks import each_value

    rng = random.Random(seed)
    first, second = FakeDatabase(), FakeDatabase()
    broken = 0.05 if seed % 2 else 0.0  # even seeds: the grouped item itself is split
    values = [{"row": f"{'bad' if rng.random() < 0.1 else 'ok'}-{i}",
               "also": rng.random() < 0.5, "broken": rng.random() < broken}
              for i in range(rng.randrange(1, 60))]

    def build(value, ver):
        if value["broken"]:
            raise KeyError("ts")
        return [(first, [value["row"]])] + ([(second, [f"ok-{ver[1]}"])] if value["also"] else [])

    message = SimpleNamespace(topic="dpu-telemetry", partition=2, offset=41, timestamp=1.7e9,
                              key=None, value=orjson.dumps([[f"k{i}", v]
                                                            for i, v in enumerate(values)]))
    each_value(message, build, first)
    asyncio.run(first.flush())
    asyncio.run(second.flush())
    bad = [v for v in values if v["broken"] or v["row"].startswith("bad")]
    assert first.written == [v["row"] for v in values if v not in bad], f"seed {seed}"
    assert second.written == [f"ok-{i}" for i, v in enumerate(values)
                              if v["also"] and not v["broken"]], f"seed {seed}"
    assert sorted((s.raw["row"], s.key) for s, _ in first.filed) == sorted(
        (v["row"], f"k{values.index(v)}") for v in bad), f"seed {seed}"
    assert all(s.offset == 41 for s, _ in first.filed)


def test_a_value_of_a_grouped_message_copy_cannot_encode_is_refused_alone():
    from sinks.base import Item
    from sinks.postgres import CopyMerge

    sink = PostgresSink("t", "postgresql://unused", {
        "x": CopyMerge("x_in", "x", ("a",), ("text",), "")})
    good, bad = Item([("x", ("fine",))], source(1)), Item([("x", ("lone \ud800",))], source(2))
    sink.add_item(good.rows + bad.rows, source(0), split=lambda: [good, bad])
    assert [(i.source.offset, i.rows, bool(i.refused)) for i in sink._buffer] == [
        (1, [("x", b"fine\n")], False), (2, [], True)]
    assert "UnicodeEncodeError" in sink._buffer[1].refused
