"""What an operator opens: fleet-wide listings with two workers, sensor health, the write routes,
CSV series, the OpenAPI document, the live feed and the dashboard in headless Chromium."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from pipeline.files import read_events
from pipeline.models import DpuEvent, Placement, Reset, SpaceSign
from pipeline.timeutil import DAY_US, US, day_of, iso, now_us, parse_ts
from tables.daily import DailySchedule
from tests.integration.browser import Browser
from tests.integration.conftest import ARTIFACTS_WRITTEN, poll
from tests.integration.test_end_to_end import FLOORPLAN, START

T0 = parse_ts("2018-02-24T09:00:00Z")
ARTIFACTS = Path(os.environ.get("DPU_ARTIFACTS_DIR") or Path(__file__).parents[2] / "artifacts")


def fleet(now: int):
    """12 DPUs over 5 spaces and a sixth space known by a reset only: d00-d07 counted events
    long ago (silent), d08-d09 a minute ago (ok), d10-d11 none (never seen)."""
    placements = [Placement(f"d{i:02d}", T0, (SpaceSign(f"S{i % 5}", 1),), f"door{i}")
                  for i in range(12)]
    events = [DpuEvent(f"d{i:02d}", T0 + (i * 10 + k) * US, 1)
              for i in range(8) for k in range(i + 1)]
    events += [DpuEvent(f"d{i:02d}", now - 60 * US + k, 1) for i in (8, 9) for k in range(3)]
    return placements, events, [Reset("S5", T0, 4)]


def answered(worker, path: str):
    """``(200, body)`` of ``path``, or None while the worker answers something else."""
    code, body = worker.get_json(path)
    return (code, body) if code == 200 else None


def test_spaces_and_sensor_health_are_complete_whichever_worker_answers(pipeline):
    now = now_us()
    placements, events, resets = fleet(now)
    pipeline.publish(placements + resets)
    pipeline.publish(events)
    bad = [(b"d03", b"not json"), (b"d03", b'{"dpu_id": "d03", "direction": 7}')]
    pipeline.send_raw("dpu-events", bad)
    pipeline.wait()
    second = pipeline.add_worker("w2")
    second.wait_ready(timeout=180)
    workers = [pipeline.worker, second]
    poll(lambda: all(w.get_json("/status")[1].get("ready") and
                     w.get_json("/status")[1].get("assigned") for w in workers) or None,
         what="both workers ready with partitions")

    expected = {f"S{s}": sum(1 for e in events if int(e.dpu_id[1:]) % 5 == s) for s in range(5)}
    expected["S5"] = 4
    silent = [f"d{i:02d}" for i in range(8)]
    for w in workers:
        code, body = poll(lambda: answered(w, "/spaces"), what=f"/spaces from {w.base_url}")
        assert {s["space_id"]: s["count"] for s in body["spaces"]} == expected
        # Paged by 5: every DPU once, in order, whichever worker holds it.
        listed, after = [], ""
        while True:
            code, page = w.get_json(f"/dpus?limit=5&after={after}")
            assert code == 200, page
            listed += page["dpus"]
            if not page["next"]:
                break
            after = page["next"]
        assert [d["dpu_id"] for d in listed] == [f"d{i:02d}" for i in range(12)]
        by_id = {d["dpu_id"]: d for d in listed}
        assert [d for d in by_id if by_id[d]["status"] == "silent"] == silent
        assert [d for d in by_id if by_id[d]["status"] == "ok"] == ["d08", "d09"]
        assert [d for d in by_id if by_id[d]["status"] == "never_seen"] == ["d10", "d11"]
        assert by_id["d03"]["rejects"] == 2 and by_id["d04"]["rejects"] == 0
        assert by_id["d05"]["ins"] == 6 and by_id["d05"]["last_event_at"] == iso(T0 + 55 * US)
        today = day_of(now_us())
        assert by_id["d08"]["events_today"] == sum(
            1 for e in events if e.dpu_id == "d08" and day_of(e.ts) == today)
        assert by_id["d07"]["placement"]["spaces"] == [{"space_id": "S2", "direction": 1}]
        code, page = w.get_json("/dpus?status=never_seen")
        assert [d["dpu_id"] for d in page["dpus"]] == ["d10", "d11"]
        # Ten years of quiet: nothing is silent.
        code, page = w.get_json("/dpus?status=silent&silent_after=3650d")
        assert (code, page["dpus"]) == (200, [])
    # The status counts come from each worker's periodic scan, summed over the workers.
    poll(lambda: pipeline.get("/dpus")[1]["statuses"] ==
         {"ok": 2, "silent": 8, "never_seen": 2} or None, timeout=40, what="status counts")
    for path, fragment in (("/dpus?limit=0", "limit"), ("/dpus?status=asleep", "unknown status"),
                           ("/dpus?silent_after=soon", "unknown duration")):
        code, body = pipeline.get(path)
        assert code == 400 and fragment in body["error"], (path, body)
    out = pipeline.cli("dpus", "list", "--status", "silent").stdout.splitlines()
    assert [line.split()[0] for line in out[1:]] == silent
    assert "d03" in out[4] and out[4].split()[6] == "2"  # the rejects column
    lines = pipeline.cli("dpus", "list", "--json", "--limit", "3").stdout.splitlines()
    assert [orjson.loads(line)["dpu_id"] for line in lines] == ["d00", "d01", "d02"]


@pytest.mark.settings(ingest_token="s3cret")
def test_placements_and_resets_over_http_and_a_backfilled_daily_reset(pipeline):
    token = "s3cret"
    placement = {"dpu_id": "283", "doorway_id": "X", "installed_at": iso(T0 - US),
                 "spaces": [{"space_id": "A", "direction": 1}]}
    assert pipeline.post("/placements", orjson.dumps(placement))[0] == 401
    code, body = pipeline.post("/placements", orjson.dumps([placement, {"dpu_id": "9"}]), token)
    assert code == 202 and body["accepted"] == 1 and body["rejected"][0]["index"] == 1
    code, body = pipeline.post("/spaces/A/resets", orjson.dumps({"at": iso(T0), "count": 20}),
                               token)
    assert (code, body) == (202, {"accepted": 1, "rejected": []})
    code, body = pipeline.post("/spaces/A/resets", orjson.dumps(
        {"space_id": "B", "at": iso(T0), "count": 1}), token)
    assert code == 202 and "not the path's" in body["rejected"][0]["reason"]
    pipeline.publish([DpuEvent("283", T0 + k * US, 1) for k in range(1, 4)])
    pipeline.wait()
    assert pipeline.count("A") == 23

    # A nightly reset to 0 at 04:00 UTC, backfilled over the last three days.
    now = now_us()
    since = now - 3 * DAY_US
    pipeline.publish([DpuEvent("283", since + k * 3600 * US, 1) for k in range(72)])
    code, body = pipeline.post("/spaces/A/resets", orjson.dumps(
        {"daily_reset": {"time": "04:00", "tz": "UTC", "count": 0, "since": iso(since)}}), token)
    assert code == 202, body
    due = DailySchedule("04:00", "UTC", 0, since).due(now)
    assert len(due) == 3
    poll(lambda: pipeline.sql("SELECT count(*) FROM space_resets WHERE space_id = 'A' AND "
                              "at > %s", (iso(since),))[0][0] == 3 or None,
         what="the three backfilled daily resets")
    pipeline.wait()
    hourly = [since + k * 3600 * US for k in range(72)]
    assert pipeline.count("A") == sum(1 for t in hourly if t > due[-1])
    middle = due[1] + 5 * 3600 * US
    assert pipeline.get(f"/spaces/A/count?at={iso(middle)}")[1]["count"] == \
        sum(1 for t in hourly if due[1] < t <= middle)
    assert pipeline.sql("SELECT since FROM space_daily_resets WHERE space_id = 'A'")[0][0] \
        .timestamp() * US == pytest.approx(since, abs=1000)

    # The series as CSV: the JSON's buckets, one line each.
    start, end = iso(T0 - 3600 * US), iso(T0 + 3 * 3600 * US)
    code, series = pipeline.get(f"/spaces/A/series?start={start}&end={end}&bucket=1h")
    csv_text = fetch_text(pipeline, f"/spaces/A/series?start={start}&end={end}&bucket=1h"
                                    "&format=csv")
    rows = [line.split(",") for line in csv_text.strip().splitlines()]
    assert rows[0] == ["start", "entries", "exits", "count", "min", "max"]
    assert rows[1:] == [[p["start"], *(str(p[k]) for k in rows[0][1:])] for p in series["series"]]
    assert pipeline.get(f"/spaces/A/series?start={start}&end={end}&format=xml")[0] == 400
    code, doc = pipeline.get("/openapi.json")  # its completeness: tests/test_openapi.py
    assert code == 200 and {"/placements", "/spaces/{space_id}/resets"} <= set(doc["paths"])


def fetch_text(pipeline, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(pipeline.worker.base_url + path, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/csv")
        return resp.read().decode()


async def read_feed(url: str, until, timeout: float = 60) -> list[tuple[str, dict]]:
    """Server-Sent Events from ``url`` until ``until(events)`` holds."""
    events: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            kind = None
            while not until(events):
                if time.monotonic() > deadline:
                    raise AssertionError(f"live feed: condition not met in {timeout}s: {events}")
                line = (await resp.content.readline()).decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[len("event: "):]
                elif line.startswith("data: "):
                    events.append((kind, orjson.loads(line[len("data: "):])))
    return events


@pytest.mark.settings(silent_after_s=12)
def test_live_feed_sends_counts_as_the_http_answers_and_status_changes(pipeline):
    pipeline.publish(FLOORPLAN)
    pipeline.wait()

    async def scenario():
        url = pipeline.worker.base_url + "/events/stream"
        feed = asyncio.ensure_future(read_feed(url, lambda ev: any(
            k == "dpu-status" and e["dpu_id"] == "283" and e["status"] == "silent"
            for k, e in ev), timeout=90))
        await asyncio.sleep(0.5)  # subscribed before the event is counted
        await asyncio.to_thread(pipeline.publish, [DpuEvent("283", now_us(), 1)])
        return await feed

    events = asyncio.run(scenario())
    spaces = [e for k, e in events if k == "space" and e["space_id"] == "A"]
    assert spaces, events
    code, answer = pipeline.get("/spaces/A/count")
    assert spaces[-1] == answer  # same shape, same values: ISO instants, not µs
    changes = [e for k, e in events if k == "dpu-status" and e["dpu_id"] == "283"]
    assert changes[-1]["previous"] == "ok" and changes[-1]["status"] == "silent"
    code, body = pipeline.get("/events/stream?events=space,weather")
    assert code == 400 and "unknown event kind" in body["error"]


def test_dashboard_in_headless_chromium_shows_the_api_numbers_and_updates_live(
        pipeline, sample_csv, tmp_path):
    events, _ = read_events(str(sample_csv))
    pipeline.publish(FLOORPLAN + START)
    pipeline.publish(events)
    pipeline.wait()
    start, end = "2018-02-24T00:00:00Z", "2018-03-03T00:00:00Z"
    spaces = {s["space_id"]: s["count"] for s in pipeline.get("/spaces")[1]["spaces"]}
    assert spaces == {"A": 31, "B": 18}
    series = pipeline.get(f"/spaces/A/series?start={start}&end={end}&bucket=1d")[1]["series"]
    sensors = {d["dpu_id"]: d for d in pipeline.get("/dpus")[1]["dpus"]}

    async def check() -> Path:
        browser = Browser(tmp_path / "chromium")
        try:
            await browser.open(f"{pipeline.worker.base_url}/dashboard?show=A&start={start}"
                               f"&end={end}&bucket=1d")
            await browser.wait_for("document.body.dataset.ready === '1' && "
                                   "!!document.querySelector('#chart svg')", what="page loaded")
            shown = await browser.evaluate("""({
                spaces: Object.fromEntries([...document.querySelectorAll('#spaces tr[data-space]')]
                    .map(r => [r.dataset.space, Number(r.querySelector('.count').textContent)])),
                points: Number(document.querySelector('#chart svg').dataset.points),
                last: Number(document.querySelector('#chart svg').dataset.last),
                dpus: [...document.querySelectorAll('#dpus tr[data-dpu]')].map(r =>
                    [r.dataset.dpu, r.dataset.status, Number(r.cells[4].textContent),
                     Number(r.cells[5].textContent)]),
                title: document.getElementById('chart-title').textContent,
                errors: [...document.querySelectorAll('.error')].map(e => e.textContent).join(''),
            })""")
            assert shown["errors"] == ""
            assert shown["spaces"] == spaces
            assert (shown["points"], shown["last"]) == (len(series), series[-1]["count"])
            assert shown["title"] == "Series of A"
            assert shown["dpus"] == [[d, s["status"], s["ins"], s["outs"]]
                                     for d, s in sorted(sensors.items())]
            await browser.wait_for("document.getElementById('live').className === 'on'",
                                   what="live feed connected")
            await asyncio.to_thread(pipeline.publish, [DpuEvent("283", now_us(), 1)])
            await browser.wait_for("document.querySelector('#spaces tr[data-space=\"A\"] .count')"
                                   ".textContent === '32'", what="A updated live to 32")
            return await browser.screenshot(ARTIFACTS / "dashboard.png")
        finally:
            await browser.close()

    # A browser opening the worker's address gets the same page (no 400 for a missing space).
    import urllib.request

    pages = []
    for route in ("/", "/dashboard"):
        with urllib.request.urlopen(pipeline.worker.base_url + route, timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/html")
            pages.append(resp.read())
    assert pages[0] == pages[1] and b"Sensor health" in pages[0]
    path = asyncio.run(check())
    assert path.stat().st_size > 10_000
    ARTIFACTS_WRITTEN.append(f"dashboard screenshot: {path} (spaces A and B live, the daily "
                             "series of A over the sample week, sensor health of DPUs 283, 423)")
