"""``dpu --version`` and where ``--help`` says the configuration comes from (issue 14)."""

import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import ENVIRONMENT_POINTER, main
from pipeline.environment import KAFKA_SECURITY
from pipeline.kafka_auth import KNOWN
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def invoke(*args: str, **env: str):
    result = CliRunner().invoke(main, list(args), env=env, terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def commands(group: click.Group = main, path: tuple = ()):
    """Every command and group below ``dpu``, with its path."""
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


class ReadRecorder(dict):
    """An empty environment that notes every variable asked of it."""

    def __init__(self):
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return default

    def items(self):
        self.asked.update(f"DPU_KAFKA_{k.upper()}" for k in KNOWN)  # the passthrough reads all
        return super().items()


def test_version_comes_from_the_package_metadata():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert invoke("--version").strip() == f"dpu {version}"


def test_top_level_help_lists_every_variable_the_settings_read():
    env = ReadRecorder()
    Settings.from_env(env)
    assert len(env.asked) > 20
    listed = {line.split()[0] for line in invoke("--help").splitlines()
              if line.strip().startswith("DPU_")}
    assert env.asked <= listed, env.asked - listed


def test_the_kafka_security_variables_are_the_ones_kafka_auth_accepts():
    assert {name for name, _ in KAFKA_SECURITY} == KNOWN


def test_defaults_in_the_help_are_the_settings_defaults():
    text = " ".join(invoke("--help").split())
    assert "DPU_PARTITIONS Partition count of every pipeline topic" in text
    assert f"[default: {Settings().database_url}]" in text
    assert "DPU_WEB_PORT Port of the HTTP view served by the worker. [default: 6066]" in text


@pytest.mark.parametrize("path", [p for p, _ in commands()], ids=" ".join)
def test_every_command_help_says_where_its_configuration_comes_from(path):
    text = " ".join(invoke(*path, "--help").split())
    assert " ".join(ENVIRONMENT_POINTER.split()) in text


def test_every_option_that_reads_a_variable_shows_it():
    with_env = [(path, p) for path, c in [((), main), *commands()] for p in c.params
                if getattr(p, "envvar", None)]
    assert {p.envvar for _, p in with_env} >= {"DPU_KAFKA_URL", "DPU_DATABASE_URL",
                                               "DPU_WEB_PORT", "DPU_WEB_BIND"}
    for path, param in with_env:
        assert param.show_envvar, (path, param.name)
        assert f"[env var: {param.envvar}]" in invoke(*path, "--help"), (path, param.name)


@pytest.fixture
def worker_settings(monkeypatch) -> list[Settings]:
    import pipeline.worker

    started: list[Settings] = []
    monkeypatch.setattr(pipeline.worker, "run_worker", lambda s, level: started.append(s))
    return started


def test_worker_bind_from_the_environment_keeps_the_advertised_host(worker_settings):
    invoke("worker", DPU_WEB_BIND="0.0.0.0", DPU_WEB_HOST="worker-7", DPU_WEB_PORT="7000")
    (s,) = worker_settings
    assert (s.web_bind, s.web_host, s.web_port) == ("0.0.0.0", "worker-7", 7000)


def test_worker_bind_given_as_an_option_is_also_the_advertised_host(worker_settings):
    invoke("worker", "--web-bind", "127.0.0.2", "--web-port", "7001", DPU_WEB_HOST="elsewhere")
    (s,) = worker_settings
    assert (s.web_bind, s.web_host, s.web_port) == ("127.0.0.2", "127.0.0.2", 7001)
