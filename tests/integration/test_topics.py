"""Topics follow the replication settings: every topic the pipeline creates, the tables'
changelogs included (on 04e1813 they were created with one replica whatever the cluster)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.replay import delete_topics_named_after
from pipeline.topics import ALL, TABLES, TopicsRefused, admin_client, changelog, ensure_topics


def topic_configs(settings, names: list[str]) -> dict[str, dict[str, str]]:
    """The configs set on each topic itself (not the broker's defaults)."""
    async def go():
        admin = await admin_client(settings)
        try:
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        finally:
            await admin.close()
        out = {}
        for response in responses:
            for _, _, _, name, entries in response.resources:
                # (name, value, read_only, config_source, is_sensitive, ...): source 1 is a
                # config set on the topic
                out[name] = {e[0]: e[1] for e in entries if e[3] == 1}
        return out
    return asyncio.run(go())


def test_every_topic_and_changelog_takes_the_replication_settings(base_settings):
    run = f"t{uuid.uuid4().hex[:10]}"
    settings = base_settings.with_(topic_prefix=f"{run}-", app_id=f"dpu-{run}",
                                   replication_factor=1, min_insync_replicas=1)
    try:
        created = asyncio.run(ensure_topics(settings, changelogs=True))
        names = [settings.topic(n) for n in ALL] + [changelog(settings, t) for t in TABLES]
        assert sorted(created) == sorted(names)
        configs = topic_configs(settings, names)
        assert all(configs[n].get("min.insync.replicas") == "1" for n in names), configs
        assert all(configs[changelog(settings, t)].get("cleanup.policy") == "compact"
                   for t in TABLES)
        # The factor is the one asked for: this single broker cannot hold two replicas.
        more = settings.with_(topic_prefix=f"{run}-x-", replication_factor=2)
        with pytest.raises(TopicsRefused, match="(?i)replication"):
            asyncio.run(ensure_topics(more))
    finally:
        asyncio.run(delete_topics_named_after(settings, run))
