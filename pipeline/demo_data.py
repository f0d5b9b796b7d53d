"""Generates the shipped demo data: the floorplan of SPEC §9 with synthetic traffic.

Space A has an outside door X (DPU 283, +1 into A) and a door Z into B (DPU 423, +1 into A and
out of B). Starting from A = 20 and B = 10, the traffic is drawn so that it ends at A = 31 and
B = 18, like the real sample, and no count ever goes below zero.
Run ``python -m pipeline.demo_data demo/`` to regenerate (deterministic for a seed).
"""

from __future__ import annotations

import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

START = datetime(2026, 1, 5, 7, 0, tzinfo=timezone.utc)
PLACEMENTS = [
    '{"dpu_id": "283", "doorway_id": "X", "installed_at": "2026-01-01T00:00:00Z", '
    '"spaces": [{"space_id": "A", "direction": 1}]}',
    '{"dpu_id": "423", "doorway_id": "Z", "installed_at": "2026-01-01T00:00:00Z", '
    '"spaces": [{"space_id": "A", "direction": 1}, {"space_id": "B", "direction": -1}]}',
]
INITIAL = {"A": 20, "B": 10}
FINAL = {"A": 31, "B": 18}


def _walk(rng: random.Random, steps: int, net: int) -> list[int]:
    """A ±1 sequence of ``steps`` summing to ``net``."""
    ups = (steps + net) // 2
    seq = [1] * ups + [-1] * (steps - ups)
    rng.shuffle(seq)
    return seq


def generate(seed: int = 7, events: int = 600) -> list[tuple[datetime, int, str]]:
    """(time, direction, dpu_id) rows with the counts above; retries until counts stay >= 0."""
    rng = random.Random(seed)
    # B changes by -dir423, A by dir283 + dir423: net423 = -(18-10), net283 = (31-20) - net423.
    net423 = -(FINAL["B"] - INITIAL["B"])
    net283 = (FINAL["A"] - INITIAL["A"]) - net423
    n423 = events // 2 if (events // 2 - net423) % 2 == 0 else events // 2 + 1
    n283 = events - n423 if (events - n423 - net283) % 2 == 0 else events - n423 + 1
    while True:
        dpus = ["423"] * n423 + ["283"] * n283
        rng.shuffle(dpus)
        dirs = {"423": iter(_walk(rng, n423, net423)), "283": iter(_walk(rng, n283, net283))}
        rows, a, b, t = [], INITIAL["A"], INITIAL["B"], START
        ok = True
        for dpu in dpus:
            d = next(dirs[dpu])
            a += d
            b -= d if dpu == "423" else 0
            ok = ok and a >= 0 and b >= 0
            t += timedelta(seconds=rng.randint(5, 900), milliseconds=rng.randint(0, 999))
            rows.append((t, d, dpu))
        if ok:
            return rows


def write(folder: Path, seed: int = 7) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = generate(seed)
    reset_at = (START - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    (folder / "placements.jsonl").write_text("\n".join(PLACEMENTS) + "\n")
    (folder / "resets.csv").write_text(
        "space_id,at,count\n" + "".join(f"{s},{reset_at},{c}\n" for s, c in INITIAL.items()))
    lines = ['"timestamp","direction","dpu_id"']
    for t, d, dpu in rows:
        stamp = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
        lines.append(f'"{stamp}","{d}","{dpu}"')
    (folder / "events.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode())


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "demo"))
