"""Services from testcontainers, for machines with a Docker engine and no service URLs given.

``scripts/test`` always gives URLs (it starts local services), so this path serves developers who
run pytest directly on a machine with Docker. (Not exercised where no Docker engine runs.)
"""

from __future__ import annotations

import os
from contextlib import ExitStack

SERVICE_URL_VARS = ("DPU_KAFKA_URL", "DPU_DATABASE_URL", "DPU_REDIS_URL")


def wanted() -> bool:
    """True when no service URL is configured and a Docker engine answers."""
    if any(os.environ.get(name) for name in SERVICE_URL_VARS):
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def start(stack: ExitStack) -> dict[str, str]:
    """Start Kafka (KRaft), TimescaleDB and Redis; returns the ``DPU_*_URL`` settings."""
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    kafka = stack.enter_context(KafkaContainer().with_kraft())
    postgres = stack.enter_context(PostgresContainer("timescale/timescaledb:latest-pg16"))
    redis = stack.enter_context(RedisContainer("redis:7"))
    return {
        "kafka_url": f"kafka://{kafka.get_bootstrap_server()}",
        "database_url": postgres.get_connection_url(driver=None),
        "redis_url": f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0",
    }
