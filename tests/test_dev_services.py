"""``dpu dev``: the services follow the configured URLs' ports, and PostgreSQL's cluster lives
where the user running it can reach it (issue 14). ``.ci/closed-clone`` runs the README's
commands for real from a clone in a mode-0700 folder."""

import os
import pwd
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.dev import services
from pipeline.dev.services import Kafka, Postgres, Redis
from pipeline.settings import Settings


def settings(state_dir: Path) -> Settings:
    return Settings(kafka_url="kafka://127.0.0.1:19192",
                    database_url="postgresql://someone@127.0.0.2:25499/dpu",
                    redis_url="redis://127.0.0.3:26399/0", state_dir=state_dir)


def test_every_service_listens_where_its_url_says(tmp_path):
    s = settings(tmp_path)
    kafka, postgres, redis = Kafka(s), Postgres(s), Redis(s)
    assert (kafka.endpoint.host, kafka.endpoint.port) == ("127.0.0.1", 19192)
    assert (postgres.endpoint.host, postgres.endpoint.port) == ("127.0.0.2", 25499)
    options = postgres.server_options().split()
    assert options[options.index("-p") + 1] == "25499"
    assert "listen_addresses=127.0.0.2" in options
    assert postgres.user == "someone"
    arguments = redis.server_arguments()
    assert arguments[arguments.index("--port") + 1] == "26399"
    assert arguments[arguments.index("--bind") + 1] == "127.0.0.3"


@pytest.fixture
def as_root(monkeypatch, tmp_path) -> Path:
    """Root, with a ``postgres`` user whose home is a folder of the test; that home."""
    home = tmp_path / "var-lib-postgresql"
    monkeypatch.setattr(services.os, "geteuid", lambda: 0)
    real = pwd.getpwnam
    monkeypatch.setattr(services.pwd, "getpwnam", lambda name: SimpleNamespace(
        pw_dir=str(home), pw_uid=os.getuid(), pw_gid=os.getgid()) if name == "postgres"
        else real(name))
    return home


def test_run_by_root_the_cluster_lives_in_the_postgres_users_home(as_root, tmp_path):
    postgres = Postgres(settings(tmp_path / "closed" / "clone" / ".dpu"))
    assert postgres.cluster.parent == as_root / "dpu-dev"
    assert postgres.data == postgres.cluster / "data"
    assert postgres.pid_file == postgres.data / "postmaster.pid"
    assert postgres.log.parent == postgres.cluster
    # its socket too: postgres creates it, and a path under the clone may be too long besides
    options = postgres.server_options().split()
    assert options[options.index("-k") + 1] == str(postgres.cluster)


def test_each_state_directory_has_a_cluster_of_its_own(as_root, tmp_path):
    first = Postgres(settings(tmp_path / "one" / ".dpu"))
    again = Postgres(settings(tmp_path / "one" / ".dpu"))
    other = Postgres(settings(tmp_path / "two" / ".dpu"))
    assert first.cluster == again.cluster  # so that `dpu dev down` and `status` find it
    assert first.cluster != other.cluster


def test_a_cluster_made_under_the_state_directory_stays_there(as_root, tmp_path):
    state = tmp_path / ".dpu"
    (state / "services" / "postgres" / "data").mkdir(parents=True)
    (state / "services" / "postgres" / "data" / "PG_VERSION").write_text("15\n")
    postgres = Postgres(settings(state))
    assert postgres.data == (state / "services" / "postgres" / "data").resolve()


def test_run_by_its_own_user_the_cluster_stays_under_the_state_directory(monkeypatch, tmp_path):
    monkeypatch.setattr(services.os, "geteuid", lambda: 1000)
    postgres = Postgres(settings(tmp_path / ".dpu"))
    assert postgres.data == (tmp_path / ".dpu" / "services" / "postgres" / "data").resolve()


def test_remove_data_deletes_the_cluster_wherever_it_lives(as_root, tmp_path):
    postgres = Postgres(settings(tmp_path / ".dpu"))
    for folder in (postgres.data, postgres.dir):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "file").write_text("x")
    postgres.remove_data()
    assert not postgres.cluster.exists() and not postgres.dir.exists()
