"""Files that ship with the code: the SQL migrations and the demo data.

The repository keeps them in its top-level ``schema/`` and ``demo/`` folders. A wheel carries the
same files inside the ``pipeline`` package, as ``pipeline/schema`` and ``pipeline/demo_inputs``
(``pyproject.toml`` maps the folders there), so an installed ``dpu`` needs no checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def shipped_folder(in_package: str, in_checkout: str) -> Path:
    """The folder as installed from a wheel, else as the repository lays it out."""
    packaged = resources.files("pipeline").joinpath(in_package)
    # An installed package is a folder on disk: its resources are Paths (never in a zip).
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return CHECKOUT / in_checkout


def schema_dir() -> Path:
    """The SQL migrations, ``NNN_name.sql``."""
    return shipped_folder("schema", "schema")


def demo_dir() -> Path:
    """The demo data: ``placements.jsonl``, ``resets.csv``, ``events.csv``."""
    return shipped_folder("demo_inputs", "demo")
