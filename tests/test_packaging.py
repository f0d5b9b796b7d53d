"""What the wheel is made of (pyproject.toml): every package of the checkout and the files the
code reads at run time. ``tests/integration/test_wheel.py`` installs the wheel and runs it."""

import tomllib
from pathlib import Path

from pipeline.shipped import demo_dir, schema_dir

REPO = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_of_the_checkout_is_in_the_wheel():
    found = {str(init.parent.relative_to(REPO)).replace("/", ".")
             for top in ("pipeline", "agents", "tables", "sinks")
             for init in (REPO / top).rglob("__init__.py")}
    assert found <= set(SETUPTOOLS["packages"]), found - set(SETUPTOOLS["packages"])


def test_migrations_and_demo_data_are_package_data():
    mapped = SETUPTOOLS["package-dir"]
    assert mapped == {"pipeline.schema": "schema", "pipeline.demo_inputs": "demo"}
    for package, folder in mapped.items():
        assert package in SETUPTOOLS["packages"]
        shipped = {p for pattern in SETUPTOOLS["package-data"][package]
                   for p in (REPO / folder).glob(pattern)}
        assert shipped == set((REPO / folder).iterdir()), f"{folder}/ has files the wheel lacks"


def test_a_checkout_reads_its_top_level_folders():
    assert schema_dir() == REPO / "schema"
    assert demo_dir() == REPO / "demo"
