"""The reconciler against the real PostgreSQL: several workers' reconcilers at once, while a
sink keeps inserting rows late and out of order, leave every row's ``count_reconciled`` equal
to the definition."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from itertools import accumulate

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pipeline.db import migrate
from pipeline.reconcile import MARK_DIRTY, reconcile_round
from pipeline.timeutil import US, from_us

SPACES = ("S1", "S2")
T0 = 1_700_000_000 * US


@pytest.fixture
def schema_url(base_settings):
    """The test database with a schema of this test's own, migrated; dropped afterwards."""
    schema = f"r{uuid.uuid4().hex[:10]}"
    params = conninfo_to_dict(base_settings.database_url)
    params["options"] = f"-csearch_path={schema}"
    url = make_conninfo("", **params)
    migrate(url)
    yield url
    if not os.environ.get("DPU_TEST_KEEP"):
        with psycopg.connect(base_settings.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def expected(rows: list[tuple], resets: dict[str, tuple[int, int]]) -> dict[tuple, int]:
    """count(S, T) at every row: the reset before the first row, then every delta up to T
    (rows at the same instant share the value)."""
    out = {}
    for space in SPACES:
        mine = sorted((ts, d, key) for s, ts, d, key in rows if s == space)
        base = resets[space][1]
        total = dict(zip((ts for ts, _, _ in mine), accumulate(d for _, d, _ in mine)))
        out.update({(space, key): base + total[ts] for ts, _, key in mine})
    return out


async def sink(url: str, batches: list[list[tuple]]) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for batch in batches:
            async with conn.transaction():
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO space_count (space_id, event_ts, dpu_id, delta, "
                        "count_on_arrival, counted_on_arrival, source, source_partition, "
                        "source_offset, seq) VALUES (%s, %s, 'D', %s, 0, true, 'e', 0, %s, 0)",
                        [(s, from_us(ts), d, key) for s, ts, d, key in batch])
                    await cur.execute(
                        "INSERT INTO space_dirty (space_id, since) SELECT space_id, min(event_ts) "
                        "FROM space_count WHERE source_offset = ANY(%s) GROUP BY 1 " + MARK_DIRTY,
                        ([key for *_, key in batch],))
            await asyncio.sleep(0)


async def reconciler(url: str, done: asyncio.Event) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while not done.is_set():
            if not await reconcile_round(conn, max_spaces=1):
                await asyncio.sleep(0.001)
        while await reconcile_round(conn):
            pass


async def campaign(url: str, rng: random.Random) -> list[tuple]:
    resets = {s: (T0 - US, rng.randrange(0, 50)) for s in SPACES}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for space, (at, count) in resets.items():
            await conn.execute("INSERT INTO space_resets VALUES (%s, %s, %s)",
                               (space, from_us(at), count))
    rows = [(rng.choice(SPACES), T0 + rng.randrange(0, 3600) * US, rng.choice((1, -1)), key)
            for key in range(1500)]
    late = rows[:]
    rng.shuffle(late)  # arrivals out of order: every batch may land before rows reconciled
    batches = [late[i:i + 15] for i in range(0, len(late), 15)]
    done = asyncio.Event()
    workers = [asyncio.create_task(reconciler(url, done)) for _ in range(3)]
    await sink(url, batches)
    done.set()
    await asyncio.gather(*workers)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        got = {(s, key): c for s, key, c in await (await conn.execute(
            "SELECT space_id, source_offset, count_reconciled FROM space_count")).fetchall()}
    want = expected(rows, resets)
    return [(k, got.get(k), v) for k, v in want.items() if got.get(k) != v]


@pytest.mark.parametrize("seed", [int(os.environ["DPU_RECONCILE_SEED"])]
                         if os.environ.get("DPU_RECONCILE_SEED") else [1, 2, 3])
def test_concurrent_reconcilers_and_late_rows_reconcile_every_row(schema_url, seed):
    wrong = asyncio.run(campaign(schema_url, random.Random(seed)))
    assert not wrong, (f"seed {seed}: {len(wrong)} rows wrong, e.g. (row, got, want) "
                       f"{wrong[:3]}; rerun it alone with DPU_RECONCILE_SEED={seed} "
                       "scripts/test tests/integration/test_reconcile.py")
