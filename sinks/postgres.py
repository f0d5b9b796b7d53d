"""PostgreSQL sinks: each flush is one transaction of batched, idempotent upserts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import psycopg

from sinks.base import BatchingSink, Item, RejectSource, Source, describe, reject_rows
from sinks.copy_text import CopyRow

Statement = tuple[str, Sequence[Any]]
"""A statement key and its parameters."""


@dataclass(frozen=True)
class CopyMerge:
    """Rows COPYed into a temporary staging table, then merged with one statement.

    COPY moves a large batch in one round trip; ``merge`` (an ``INSERT ... SELECT ... FROM
    <staging> ON CONFLICT ...``) keeps the write idempotent and may update rollups from the rows
    it actually inserted. Rows are encoded when the sink takes them (``PostgresSink.items``).
    """

    staging: str
    """Name of the temporary table (emptied at each commit)."""
    like: str
    """Table whose columns the staging table copies."""
    columns: tuple[str, ...]
    """Columns given by each row, in order."""
    types: tuple[str, ...]
    """The type of each column as ``sinks.copy_text.CopyRow`` encodes it."""
    merge: str
    """SQL that moves the staged rows into place."""

    def __post_init__(self) -> None:
        assert len(self.types) == len(self.columns), self.staging


REJECT = ("INSERT INTO dpu_rejects (source_topic, source_partition, source_offset, reason, raw, "
          "kafka_ts, record_key) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
"""Files one refused input record (the first reason given for a record is kept)."""


class PostgresSink(BatchingSink[Statement]):
    """Writes rows to PostgreSQL with a fixed set of parameterized statements.

    ``statements`` maps a key to SQL with ``%s`` placeholders (run with ``executemany``, pipelined
    by psycopg) or to a :class:`CopyMerge`. ``add((key, params))`` queues one row. A flush runs the
    statements in their declared order, in one transaction. Rows PostgreSQL refuses as data
    (class 22 and 23 errors: data exceptions, constraint violations) fail for good; every other
    error is taken for an outage and retried.
    """

    permanent_errors = BatchingSink.permanent_errors + (psycopg.DataError,
                                                        psycopg.IntegrityError)

    def __init__(self, name: str, database_url: str,
                 statements: dict[str, str | CopyMerge], once: frozenset[str] = frozenset()
                 ) -> None:
        super().__init__()
        self.name = name
        self.database_url = database_url
        self.statements = statements
        self.once = once
        """Statements whose effect a row with the same parameters can only repeat (registry
        inserts): run once per parameters while this sink lives."""
        self._done: dict[str, set] = {key: set() for key in once if key in statements}
        self._copy_rows = {key: CopyRow(s.types).encode for key, s in statements.items()
                           if isinstance(s, CopyMerge)}
        self._conn: psycopg.AsyncConnection | None = None

    def items(self, rows: list[Statement], source: Source,
              split: Callable[[], list[Item[Statement]]] | None = None
              ) -> list[Item[Statement]]:
        """Rows for COPY are encoded now (``sinks.copy_text``), and registry rows already
        written are left out; a record whose rows cannot be encoded is refused (of a grouped
        message, the value whose rows cannot be)."""
        copy_rows, done = self._copy_rows, self._done
        try:
            rows = [(key, copy_rows[key](params)) if key in copy_rows else (key, params)
                    for key, params in rows if key not in done or params not in done[key]]
        except (ValueError, TypeError) as exc:  # UnicodeEncodeError: a lone surrogate
            if split is not None:
                return self.value_items(split)
            return [Item([], source, f"could not be written: {describe(exc)}")]
        return [Item(rows, source, split=split)]

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.database_url, connect_timeout=5, application_name=f"dpu-{self.name}")
        return self._conn

    async def write(self, rows: list[Statement]) -> None:
        grouped: dict[str, list[Sequence[Any]]] = {key: [] for key in self.statements}
        for key, params in rows:
            grouped[key].append(params)
        for key, done in self._done.items():
            # Each once only, and not again after it was written.
            grouped[key] = [p for p in dict.fromkeys(grouped[key]) if p not in done]
        conn = await self._connection()
        async with conn.transaction():
            async with conn.cursor() as cur:
                for key, params in grouped.items():
                    if not params:
                        continue
                    statement = self.statements[key]
                    if isinstance(statement, CopyMerge):
                        await self._copy_merge(cur, statement, params)
                    else:
                        await cur.executemany(statement, params)
        for key, done in self._done.items():
            done.update(grouped[key])

    @staticmethod
    async def _copy_merge(cur: psycopg.AsyncCursor, stmt: CopyMerge,
                          rows: list[Sequence[Any]]) -> None:
        await cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stmt.staging} "
                          f"(LIKE {stmt.like} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        columns = ", ".join(f'"{c}"' for c in stmt.columns)
        async with cur.copy(f"COPY {stmt.staging} ({columns}) FROM STDIN") as copy:
            await copy.write(b"".join(rows))  # each row encoded by items()
        await cur.execute(stmt.merge)

    async def write_rejects(self, rejects: list[tuple[RejectSource, str]]) -> None:
        conn = await self._connection()
        async with conn.transaction():
            async with conn.cursor() as cur:
                await cur.executemany(REJECT, reject_rows(rejects))

    async def reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except Exception:
                pass
