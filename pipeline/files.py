"""Reading the CLI's input files (SPEC §3) into validated records.

Events: CSV with a ``timestamp,direction,dpu_id`` header (the prototype's sample data: Windows line
endings, mixed quoting), JSON lines, or one JSON array. Placements: JSON lines, or CSV in the
``dpu_location`` shape ``dpu_id,space_id,doorway_id,installed,direction``. Resets: CSV
``space_id,at,count`` or JSON lines. Bad rows are reported with their line number, never raised.
Ids and instants are checked by ``pipeline.models``, as the workers check them.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import orjson

from pipeline.models import MAX_FUTURE_S, Invalid, Placement, event_from_obj, \
    placement_from_obj, reset_from_obj
from pipeline.timeutil import now_us

T = TypeVar("T")


class FileError(ValueError):
    """The file as a whole cannot be read."""


@dataclass(frozen=True)
class BadRow:
    line: int
    """1-based line (CSV/JSON lines) or 1-based array index (JSON array)."""
    reason: str


def read_text(path: str) -> str:
    if path == "-":
        data = sys.stdin.buffer.read()  # decoded here: sys.stdin.read() raises on bad UTF-8
    else:
        p = Path(path)
        if not p.is_file():
            raise FileError(f"{path}: no such file")
        data = p.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _rows(text: str, name: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or ``Invalid``) for each record of a JSON or CSV text."""
    stripped = text.lstrip()
    if not stripped:
        return
    if stripped[0] == "[":
        try:
            items = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise FileError(f"{name}: not a valid JSON array ({exc})") from None
        yield from enumerate(items, 1)
    elif stripped[0] == "{":
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield n, orjson.loads(line)
                except orjson.JSONDecodeError:
                    yield n, Invalid("not valid JSON")
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames:
            raise FileError(f"{name}: empty CSV")
        reader.fieldnames = [f.strip().lower() for f in reader.fieldnames]
        rows = iter(reader)
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a field over csv's size limit: that row only
                yield reader.line_num + 1, Invalid(f"unreadable CSV row ({exc})")
                continue
            # Only spaces are stripped: str.strip() would also drop control characters such as
            # a tab or the unit separator (\x1f) from an id's ends, which the id check must see.
            yield reader.line_num, {k: (v.strip(" ") if isinstance(v, str) else v)
                                    for k, v in row.items() if k is not None}


def _check_columns(obj: Any, required: tuple[str, ...]) -> None:
    if isinstance(obj, dict):
        missing = [c for c in required if c not in obj]
        if missing:
            raise Invalid(f"missing column(s) {', '.join(missing)}")


def _validated(text: str, name: str, build: Callable[[Any], T]) -> tuple[list[T], list[BadRow]]:
    good: list[T] = []
    bad: list[BadRow] = []
    for n, obj in _rows(text, name):
        try:
            if isinstance(obj, Invalid):
                raise obj
            if not isinstance(obj, dict):
                raise Invalid("expected an object")
            good.append(build(obj))
        except Invalid as exc:
            bad.append(BadRow(n, str(exc)))
    return good, bad


def read_events(path: str, max_future_s: float = MAX_FUTURE_S):
    now = now_us()

    def build(obj: dict) -> Any:
        _check_columns(obj, ("timestamp", "direction", "dpu_id"))
        if obj.get("event_id") == "":
            obj = {k: v for k, v in obj.items() if k != "event_id"}
        return event_from_obj(obj, now, max_future_s)

    return _validated(read_text(path), path, build)


def read_resets(path: str, max_future_s: float = MAX_FUTURE_S):
    now = now_us()

    def build(obj: dict) -> Any:
        if "daily_reset" not in obj:
            _check_columns(obj, ("space_id", "at", "count"))
        return reset_from_obj(obj, now, max_future_s)

    return _validated(read_text(path), path, build)


def read_placements(path: str, max_future_s: float = MAX_FUTURE_S
                    ) -> tuple[list[Placement], list[BadRow]]:
    now = now_us()
    text = read_text(path)
    if text.lstrip()[:1] in ("{", "["):
        return _validated(text, path, lambda obj: placement_from_obj(obj, now, max_future_s))
    # dpu_location CSV: one row per (dpu, space); rows of one (dpu, installed) form one placement.
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    first_line: dict[tuple[str, str], int] = {}
    bad: list[BadRow] = []
    for n, row in _rows(text, path):
        try:
            if isinstance(row, Invalid):
                raise row
            _check_columns(row, ("dpu_id", "space_id", "installed", "direction"))
        except Invalid as exc:
            bad.append(BadRow(n, str(exc)))
            continue
        key = (row["dpu_id"], row["installed"])
        first_line.setdefault(key, n)
        placement = grouped.setdefault(key, {"dpu_id": row["dpu_id"],
                                             "installed_at": row["installed"],
                                             "doorway_id": row.get("doorway_id") or None,
                                             "spaces": []})
        if row["space_id"]:
            placement["spaces"].append({"space_id": row["space_id"],
                                        "direction": row["direction"]})
    good: list[Placement] = []
    for key, obj in grouped.items():
        try:
            good.append(placement_from_obj(obj, now, max_future_s))
        except Invalid as exc:
            bad.append(BadRow(first_line[key], str(exc)))
    return good, bad
