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
