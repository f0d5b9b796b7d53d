"""Database set-up: create the database if missing and apply ``schema/*.sql`` in order, once each."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pipeline.shipped import schema_dir

SCHEMA_DIR = schema_dir()
MIGRATION_LOCK = 0x64707531  # "dpu1": one migrating process at a time


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL could not be reached or refused the connection."""


def connect(url: str, **kwargs) -> psycopg.Connection:
    """A connection to ``url``; one clear line (``DatabaseUnavailable``) when there is none."""
    try:
        return psycopg.connect(url, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(f"PostgreSQL is not reachable ({first}): start it with "
                                  "`dpu dev up` (or set DPU_DATABASE_URL)") from None


def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` when it does not exist; True if created."""
    params = conninfo_to_dict(url)
    name = params.get("dbname") or "postgres"
    admin = make_conninfo(url, dbname="postgres")
    with connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return False
        return True


def migrations(schema_dir: Path = SCHEMA_DIR) -> list[Path]:
    return sorted(schema_dir.glob("[0-9][0-9][0-9]_*.sql"))


def migrate(url: str, schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Apply the pending migrations; returns their names.

    The tables go to the first schema of the connection's ``search_path``, created if missing:
    ``?options=-csearch_path%3Dname`` in the URL gives a deployment (or a test) its own schema.
    """
    ensure_database(url)
    applied_now: list[str] = []
    with connect(url, autocommit=True) as conn:
        first = conn.execute("SHOW search_path").fetchone()[0].split(",")[0].strip().strip('"')
        if first and first != "$user":
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(first)))
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                         "version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for path in migrations(schema_dir):
                if path.stem in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)",
                                 (path.stem,))
                applied_now.append(path.stem)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied_now

