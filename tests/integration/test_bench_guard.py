"""``dpu bench`` runs one at a time: a second run is refused in one line, before it touches
the first one's database or ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from pipeline.bench import BenchFailed, one_run_at_a_time
from tests.integration.conftest import free_port


def test_a_second_run_is_refused_while_one_holds_the_server(base_settings):
    with one_run_at_a_time(base_settings, []):
        with pytest.raises(BenchFailed, match="another dpu bench is running"):
            with one_run_at_a_time(base_settings, []):
                pass
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "bench", "--quick"],
                              env={**os.environ, **base_settings.to_env()},
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("dpu: another dpu bench is running"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    with one_run_at_a_time(base_settings, []):  # released with the run
        pass


def test_a_run_is_refused_when_its_worker_port_is_taken(base_settings):
    port = free_port()
    with socket.socket() as held:
        held.bind((base_settings.web_host, port))
        held.listen()
        with pytest.raises(BenchFailed, match=f"port {port} .* is in use"):
            with one_run_at_a_time(base_settings, [port]):
                pass
    with one_run_at_a_time(base_settings, [port]):  # free again
        pass
