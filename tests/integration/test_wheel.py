"""The wheel is a deployable package (issue 14): built from this checkout and installed alone into
a fresh virtualenv, its ``dpu`` migrates an empty database with the migrations the wheel carries
and runs the demo (a worker from the wheel included) with the demo data it carries.

The virtualenv is made with ``python -m venv`` and gets the wheel with ``pip install``, which
fetches the dependencies the wheel declares from the package index: nothing of the checkout or
of its ``.venv`` is visible to it, so a file or a package the wheel lacks fails here. (pip's
resolve and download take about 20 s; a venv sharing the checkout's site-packages would be
faster but could hide exactly that.) Every command runs outside the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pipeline.replay import delete_topics_named_after
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MIGRATION_FILES = sorted(REPO.glob("schema/[0-9][0-9][0-9]_*.sql"))


def run(argv: list, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}", pytrace=False)
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv holding the wheel built from this checkout; its ``bin`` folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    # From a copy of the checkout's files: a build in place reuses its build/ folder, whose
    # files from an earlier build would end up in the wheel.
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                cwd=REPO).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (tmp / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tmp / "src" / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist",
         tmp / "src"])
    (wheel,) = (tmp / "dist").glob("dpu_pipeline-*.whl")
    run([sys.executable, "-m", "venv", tmp / "venv"])
    run([tmp / "venv/bin/pip", "install", "-q", wheel], timeout=600, cwd=tmp)
    return tmp / "venv/bin"


def outside_checkout(bin_dir: Path, **env: str) -> dict:
    """Run from the venv's folder, with no path back into the checkout."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {"env": {**base, "PATH": f"{bin_dir}{os.pathsep}{base.get('PATH', '')}", **env},
            "cwd": bin_dir.parent}


def test_the_wheel_is_what_the_venv_imports(installed: Path):
    where = run([installed / "python", "-c", "import pipeline.shipped as s; print(s.__file__); "
                 "print(s.schema_dir()); print(s.demo_dir())"], **outside_checkout(installed))
    module, schema, demo = where.stdout.split()
    site = str(installed.parent / "lib")
    assert all(path.startswith(site) for path in (module, schema, demo)), where.stdout
    assert sorted(p.name for p in Path(schema).glob("*.sql")) == [p.name for p in MIGRATION_FILES]
    assert sorted(p.name for p in Path(demo).iterdir()) == sorted(
        p.name for p in (REPO / "demo").iterdir())
    page = run([installed / "python", "-c", "from pipeline.views.dashboard import page; "
                "import pipeline.views.dashboard as d; print(d.__file__); print(len(page()))"],
               **outside_checkout(installed))
    module, size = page.stdout.split()
    assert module.startswith(site) and int(size) > 1000, page.stdout  # the dashboard's HTML


def test_dpu_db_migrate_from_the_wheel_creates_every_table(installed: Path, base_settings):
    name = f"dpu_wheel_{uuid.uuid4().hex[:10]}"
    params = conninfo_to_dict(base_settings.database_url)
    params.pop("options", None)  # the tables' own schema: public
    url = make_conninfo("", **{**params, "dbname": name})
    admin = make_conninfo("", **{**params, "dbname": "postgres"})
    try:
        out = run([installed / "dpu", "db", "migrate"],
                  **outside_checkout(installed, DPU_DATABASE_URL=url))
        assert f"applied {len(MIGRATION_FILES)} migration(s)" in out.stdout, out.stdout
        expected = {t for p in MIGRATION_FILES
                    for t in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", p.read_text())}
        with psycopg.connect(url) as conn:
            applied = [r[0] for r in conn.execute(
                "SELECT version FROM schema_migrations ORDER BY version")]
            tables = {r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
        assert applied == [p.stem for p in MIGRATION_FILES]
        assert expected and expected <= tables, expected - tables
        again = run([installed / "dpu", "db", "migrate"],
                    **outside_checkout(installed, DPU_DATABASE_URL=url))
        assert "applied 0 migration(s)" in again.stdout
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def test_dpu_demo_from_the_wheel_counts_its_shipped_data(installed: Path, base_settings):
    from tests.integration.conftest import free_port

    env = Settings.from_env()
    # The demo checks the services `dpu dev up` started: their state directory, wherever it runs.
    demo = run([installed / "dpu", "demo"], timeout=400, **outside_checkout(
        installed, DPU_STATE_DIR=str(env.state_dir.resolve()), DPU_WEB_PORT=str(free_port())))
    try:
        assert re.search(r"^published 2 placements, 2 resets, 601 events", demo.stdout, re.M)
        assert re.search(r"^A = 31 +\(Redis mirror: 31\)$", demo.stdout, re.M), demo.stdout
        assert re.search(r"^B = 18 +\(Redis mirror: 18\)$", demo.stdout, re.M), demo.stdout
    finally:
        found = re.search(r"/(demo-\d+)/worker\.log", demo.stdout)
        if found:
            import asyncio

            asyncio.run(delete_topics_named_after(base_settings, found.group(1)))
