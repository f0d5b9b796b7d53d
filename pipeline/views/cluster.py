"""Listings over every worker: each worker lists what its own table partitions hold, and the
worker asked gathers the lists of all of them.

A table's partitions are spread over the workers, so a listing from one worker's table alone
(what ``/spaces`` used to answer) misses the rest. The worker asked reads the assignment (which
worker holds each changelog partition), asks every other holder with ``?scope=local``, and answers
only when the answers cover every partition; during a rebalance, or when a holder does not
answer, it says 503 rather than give part of the list.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Mapping

import aiohttp

from pipeline.app import app, cfg

LOCAL_SCOPE = "local"
"""``?scope=local``: the asked worker's own partitions only (what another worker asks for)."""
ASK_TIMEOUT_S = 5.0
"""How long the gathering worker waits for each other worker."""

LocalAnswer = Callable[[Mapping[str, str]], Awaitable[dict[str, Any]]]
"""A worker's own part of a listing, from the request's query: ``{"items": [...], ...}``."""


class Incomplete(Exception):
    """Some partitions of the table are not covered by any answer (answered with 503)."""


def changelog(table) -> str:
    return table.changelog_topic.get_topic_name()


def own_partitions(table) -> list[int]:
    """The table partitions this worker holds as their active owner, recovered."""
    if not app.tables.recovery.completed.is_set():
        return []  # still restoring: its values are not complete yet
    topic = changelog(table)
    return sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic)


def is_local(query: Mapping[str, str]) -> bool:
    return query.get("scope") == LOCAL_SCOPE


async def local_part(table, query: Mapping[str, str], local: LocalAnswer) -> dict[str, Any]:
    """This worker's answer to ``?scope=local``: its items and the partitions they cover."""
    partitions = own_partitions(table)
    answer = await local(query) if partitions else {"items": []}
    return {**answer, "partitions": partitions}


async def gather(table, path: str, query: Mapping[str, str],
                 local: LocalAnswer) -> list[dict[str, Any]]:
    """Every worker's answer for ``table``'s listing at ``path``; raises :class:`Incomplete`."""
    topic = changelog(table)
    me = str(app.conf.canonical_url).rstrip("/")
    holders = {url.rstrip("/") for url, topics in app.assignor.tables_metadata().items()
               if topics.get(topic)}
    params = {**query, "scope": LOCAL_SCOPE}
    parts = await asyncio.gather(*(
        local_part(table, query, local) if url == me else _ask(url, path, params)
        for url in sorted(holders | {me})))
    covered = {p for part in parts for p in part["partitions"]}
    missing = set(range(cfg.partitions)) - covered
    if missing:
        raise Incomplete(f"partitions {sorted(missing)} of {topic} have no worker that answers "
                         "(a rebalance or a restore is under way, or a worker is down); "
                         "try again shortly")
    return parts


async def _ask(url: str, path: str, params: Mapping[str, str]) -> dict[str, Any]:
    """Another worker's local answer; no partitions when it does not answer in time."""
    try:
        async with app.http_client.get(
                f"{url}{path}", params=dict(params),
                timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT_S)) as resp:
            if resp.status != 200:
                return {"items": [], "partitions": []}
            return await resp.json()
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return {"items": [], "partitions": []}
