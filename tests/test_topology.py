"""``faust -A pipeline.topology`` sees everything a worker runs (issue 14: ``faust -A pipeline.app
agents`` listed nothing, the agents attach themselves to the app only when imported)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pipeline.topics import TABLES

REPO = Path(__file__).resolve().parents[1]
SOURCES = "\n".join(p.read_text() for top in ("agents", "pipeline", "tables", "sinks")
                    for p in sorted((REPO / top).rglob("*.py")))
DECLARED_AGENTS = set(re.findall(r'@app\.agent\([^\n]*name="([^"]+)"', SOURCES))
DECLARED_TIMERS = set(re.findall(r'@(?:app\.)?timer\([^\n]*name="([^"]+)"', SOURCES))


def faust(tmp_path: Path, *args: str):
    """Faust's command line on the topology, as JSON, run outside the checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "DPU_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run([sys.executable, "-m", "faust", "--json", "-A", "pipeline.topology",
                           *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return orjson.loads(proc.stdout)


def test_the_sources_declare_agents_and_timers():
    assert {"count-dpus", "count-spaces", "sink-telemetry"} <= DECLARED_AGENTS
    assert {"reconcile-space-counts", "mirror-resync"} <= DECLARED_TIMERS


def test_faust_agents_lists_every_agent(tmp_path):
    listed = {row["name"].lstrip("@") for row in faust(tmp_path, "agents", "--local")}
    assert listed == DECLARED_AGENTS


def test_faust_tables_lists_every_table(tmp_path):
    assert [row["name"] for row in faust(tmp_path, "tables")] == list(TABLES)


def test_faust_topology_lists_agents_with_their_inputs_tables_and_timers(tmp_path):
    found = faust(tmp_path, "topology")
    inputs = {a["name"]: a["inputs"] for a in found["agents"]}
    assert set(inputs) == DECLARED_AGENTS
    # The bulk-fed agents read a local channel: their topics come from the bulk input.
    assert inputs["count-dpus"] == ["dpu-events", "dpu-placements"]
    assert inputs["sink-telemetry"] == ["dpu-telemetry"]
    assert all(inputs.values()), inputs
    assert [t["name"] for t in found["tables"]] == list(TABLES)
    assert all(t["changelog"].endswith(f"-{t['name']}-changelog") for t in found["tables"])
    assert {t["name"] for t in found["timers"]} == DECLARED_TIMERS
    assert all(t["interval_s"] > 0 for t in found["timers"])
