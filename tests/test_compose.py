"""docker-compose.kafka.yml and .dockerignore, read as data (no Docker here): health checks,
start order, restarts, volumes, pinned images and a worker that scales (issue 14)."""

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.kafka.yml").read_text())
SERVICES = COMPOSE["services"]
WORKER = SERVICES["worker"]
PINNED = re.compile(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*$")


def mounts(service: dict) -> dict[str, str]:
    """Named volume -> path in the container."""
    return dict(v.split(":")[:2] for v in service.get("volumes", []))


def worker_start_environment(hostname: str) -> dict[str, str]:
    """What the worker's command gives ``dpu worker`` in a container named ``hostname``."""
    assert WORKER["command"][:2] == ["sh", "-c"]
    script = WORKER["command"][2].replace("$$", "$")  # compose's escape for a literal $
    assert script.endswith(" dpu worker")
    script = script.removesuffix(" dpu worker") + " env"
    out = subprocess.run(["sh", "-c", script], env={"HOSTNAME": hostname, "PATH": os.defpath},
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_the_four_services():
    assert set(SERVICES) == {"kafka", "timescaledb", "redis", "worker"}


@pytest.mark.parametrize("name", ["kafka", "timescaledb", "redis", "worker"])
def test_every_service_checks_its_health_and_restarts(name):
    service = SERVICES[name]
    check = service["healthcheck"]
    assert check["test"] and check["test"][0] in ("CMD", "CMD-SHELL")
    assert not check.get("disable")
    assert service["restart"] in ("unless-stopped", "always", "on-failure")


def test_the_worker_is_healthy_when_its_status_page_answers():
    command = " ".join(WORKER["healthcheck"]["test"])
    assert f"http://127.0.0.1:{WORKER['environment']['DPU_WEB_PORT']}/status" in command
    # A worker that exits non-zero (70, 75) is started again; one stopped on purpose is not.
    assert WORKER["restart"] == "on-failure"


def test_the_worker_starts_once_the_others_are_healthy():
    assert WORKER["depends_on"] == {name: {"condition": "service_healthy"}
                                    for name in ("kafka", "timescaledb", "redis")}


def test_data_lives_in_named_volumes():
    assert set(COMPOSE["volumes"]) == {"kafka-data", "postgres-data", "worker-state"}
    kafka = SERVICES["kafka"]
    assert mounts(kafka) == {"kafka-data": kafka["environment"]["KAFKA_LOG_DIRS"]}
    assert mounts(SERVICES["timescaledb"]) == {"postgres-data": "/var/lib/postgresql/data"}
    state = worker_start_environment("a1b2c3d4e5f6")["DPU_STATE_DIR"]
    assert Path(state).parent == Path(mounts(WORKER)["worker-state"])


def test_images_are_pinned():
    images = [s["image"] for s in SERVICES.values() if "image" in s]
    images += re.findall(r"^FROM (\S+)", WORKER["build"]["dockerfile_inline"], re.M)
    assert len(images) == 6
    for image in images:
        assert PINNED.match(image) and "latest" not in image, image


def test_the_worker_image_holds_the_wheel_not_the_source_tree():
    build = WORKER["build"]["dockerfile_inline"]
    assert "pip wheel" in build and " -e " not in build
    assert re.search(r"^FROM \S+$\nCOPY --from=\w+ /wheels", build, re.M)


def test_the_worker_image_holds_the_compiled_encoder():
    # Without it the sinks fall back to the Python encoder: the same bytes, ~4 µs an event slower.
    build = WORKER["build"]["dockerfile_inline"]
    assert re.search(r"^COPY sinks/native /native$", build, re.M)
    assert re.search(r"^RUN \S+/pip wheel .*-w /wheels /native$", build, re.M)
    assert "--from=native /wheels" in build and 'import dpu_native' in build


def test_workers_scale_without_port_conflicts():
    assert "container_name" not in WORKER and "hostname" not in WORKER
    for port in WORKER["ports"]:
        # no fixed host port: Docker picks one per replica
        assert isinstance(port, dict) and "published" not in port, port
        assert port["target"] == int(WORKER["environment"]["DPU_WEB_PORT"])


def test_each_replica_advertises_its_own_host_and_keeps_its_own_state():
    assert "DPU_WEB_HOST" not in WORKER["environment"]
    assert "DPU_STATE_DIR" not in WORKER["environment"]
    first = worker_start_environment("0a1b2c3d4e5f")
    second = worker_start_environment("9f8e7d6c5b4a")
    assert first["DPU_WEB_HOST"] == "0a1b2c3d4e5f" and second["DPU_WEB_HOST"] == "9f8e7d6c5b4a"
    assert first["DPU_STATE_DIR"] != second["DPU_STATE_DIR"]
    # Routing between workers needs them reachable on every interface, not loopback.
    assert WORKER["environment"]["DPU_WEB_BIND"] == "0.0.0.0"


def test_the_build_context_leaves_out_local_state():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".dpu", "**/__pycache__", ".pytest_cache", "build"} <= ignored
    # The wheel is built from the context: what pyproject.toml packages must stay in it.
    assert not ignored & {"README.md", "pyproject.toml", "schema", "demo", "pipeline", "agents",
                          "tables", "sinks"}
