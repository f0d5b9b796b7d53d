"""PostgreSQL sinks: each flush is one transaction of batched ``INSERT ... ON CONFLICT`` upserts."""

from __future__ import annotations

from typing import Any, Sequence

import psycopg

from sinks.base import BatchingSink

Statement = tuple[str, Sequence[Any]]
"""A SQL statement key and its parameters."""


class PostgresSink(BatchingSink[Statement]):
    """Writes rows to PostgreSQL with a fixed set of parameterized statements.

    ``statements`` maps a key to SQL with ``%s`` placeholders; ``add((key, params))`` queues one
    execution. A flush runs each statement's rows with ``executemany`` (pipelined by psycopg) in
    statement order, in one transaction, then ``finally_sql`` (if any) once.
    """

    def __init__(self, name: str, database_url: str, statements: dict[str, str],
                 finally_sql: Sequence[str] = ()) -> None:
        super().__init__()
        self.name = name
        self.database_url = database_url
        self.statements = statements
        self.finally_sql = finally_sql
        self._conn: psycopg.AsyncConnection | None = None

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.database_url, connect_timeout=5, application_name=f"dpu-{self.name}")
        return self._conn

    async def write(self, rows: list[Statement]) -> None:
        grouped: dict[str, list[Sequence[Any]]] = {key: [] for key in self.statements}
        for key, params in rows:
            grouped[key].append(params)
        conn = await self._connection()
        async with conn.transaction():
            async with conn.cursor() as cur:
                for key, params in grouped.items():
                    if params:
                        await cur.executemany(self.statements[key], params)
                for sql in self.finally_sql:
                    await cur.execute(sql)

    async def reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except Exception:
                pass
