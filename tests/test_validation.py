"""The one definition of a valid id and a valid instant (SPEC §3), and POST /events' answer
when Kafka does not acknowledge (a producer injected in place of the worker's)."""

from __future__ import annotations

import asyncio
import sys
import unicodedata

import orjson
import pytest
from hypothesis import example, given, settings, strategies as st

from pipeline.models import MAX_ID_LEN, DpuEvent, Invalid, Placement, Reject, Reset, \
    event_from_obj, parse_event, parse_placement, parse_reset, placement_from_obj, \
    reset_from_obj, valid_id, valid_instant
from pipeline.timeutil import MAX_US, US, BadTimestamp, from_us, iso, parse_ts

NOW = parse_ts("2026-11-27T12:00:00Z")
DAY = 86_400
EXAMPLES = settings(max_examples=300, deadline=None)

CONTROL = st.characters(categories=["Cc"])
"""Every Unicode control character: C0 (NUL, the \\x1f key separator), DEL, C1."""
ID_CHARS = st.characters(blacklist_categories=["Cc", "Cs"])
"""Anything an id may hold: no control character, no lone surrogate."""


def event(dpu_id="1", ts="2018-02-24T08:45:21Z", **extra):
    return {"dpu_id": dpu_id, "timestamp": ts, "direction": 1, **extra}


def test_the_control_set_is_exactly_unicode_category_cc():
    import pipeline.models as models

    refused = {c for c in map(chr, range(sys.maxunicode + 1)) if models._CONTROL.search(c)}
    assert refused == {c for c in map(chr, range(sys.maxunicode + 1))
                       if unicodedata.category(c) == "Cc"}


@EXAMPLES
@given(st.text(ID_CHARS, max_size=60), CONTROL, st.text(ID_CHARS, max_size=60))
@example("", "\x00", "")
@example("A", "\x1f", "B")
@example("423", "\x85", "")  # NEL: C1, and whitespace to str.strip()
def test_an_id_holding_a_control_character_is_refused_anywhere(before, control, after):
    value = before + control + after
    with pytest.raises(Invalid, match=rf"dpu_id holds a control character \(U\+{ord(control):04X}\)"):
        valid_id(value, "dpu_id")
    for field in ("dpu_id", "event_id"):
        result = parse_event(orjson.dumps(event(**{field: value})), now_us=NOW,
                             max_bytes=4096, max_future_s=DAY)
        assert isinstance(result, Reject) and "control character" in result.reason
    placement = {"dpu_id": "1", "doorway_id": "D", "installed_at": "2018-02-01T00:00:00Z",
                 "spaces": [{"space_id": value, "direction": 1}]}
    assert "spaces[0].space_id holds a control character" in \
        parse_placement(orjson.dumps(placement), max_bytes=4096).reason
    reset = {"space_id": value, "at": "2018-02-01T00:00:00Z", "count": 1}
    assert "space_id holds a control character" in \
        parse_reset(orjson.dumps(reset), max_bytes=4096).reason


@EXAMPLES
@given(st.text(ID_CHARS, min_size=1, max_size=MAX_ID_LEN).filter(str.strip))
@example("x" * MAX_ID_LEN)
@example("é☃𝄞")
def test_any_id_of_1_to_128_characters_without_control_characters_is_accepted(value):
    assert valid_id(value, "dpu_id") == value.strip()
    e = parse_event(orjson.dumps(event(value, event_id=value)), now_us=NOW, max_bytes=4096,
                    max_future_s=DAY)
    assert isinstance(e, DpuEvent) and e.dpu_id == e.event_id == value.strip()


@given(st.integers(min_value=-(10 ** 127) + 1, max_value=10 ** MAX_ID_LEN - 1))
def test_integer_ids_are_their_decimal_text(n):
    assert valid_id(n, "dpu_id") == str(n)


@pytest.mark.parametrize("value,reason", [
    ("", "dpu_id is empty"),
    ("  ", "dpu_id is empty"),
    ("x" * (MAX_ID_LEN + 1), "dpu_id is longer than 128 characters"),
    ("-" + "9" * MAX_ID_LEN, "dpu_id is longer than 128 characters"),
    (10 ** MAX_ID_LEN, "dpu_id is longer than 128 characters"),
    pytest.param(10 ** 5000, "dpu_id is longer than 128 characters",  # str() of it raises
                 id="10**5000"),
    ("a\ud800", "dpu_id is not valid UTF-8 (lone surrogate U+D800)"),
    ("\udcff", "dpu_id is not valid UTF-8 (lone surrogate U+DCFF)"),  # a CLI byte 0xff
    ("1\x00", "dpu_id holds a control character (U+0000)"),
    ("\t1", "dpu_id holds a control character (U+0009)"),
    ("1\x7f", "dpu_id holds a control character (U+007F)"),
    (True, "dpu_id must be a string or an integer, got bool"),
    (1.5, "dpu_id must be a string or an integer, got float"),
])
def test_invalid_ids_say_why(value, reason):
    with pytest.raises(Invalid) as exc:
        valid_id(value, "dpu_id")
    assert str(exc.value) == reason


# -- instants ------------------------------------------------------------------------------

BUILDERS = {
    "timestamp": lambda ts, now: event_from_obj(event(ts=ts), now, DAY).ts,
    "installed_at": lambda ts, now: placement_from_obj(
        {"dpu_id": "1", "installed_at": ts, "spaces": []}, now, DAY).installed_at,
    "at": lambda ts, now: reset_from_obj({"space_id": "A", "at": ts, "count": 0}, now, DAY).at,
}


@pytest.mark.parametrize("name", BUILDERS)
def test_record_instants_run_from_1970_to_the_clock_plus_24_h_both_included(name):
    build = BUILDERS[name]
    assert build("1970-01-01T00:00:00Z", NOW) == 0
    assert build("1970-01-01T01:00:00+01:00", NOW) == 0
    assert build(iso(NOW + DAY * US), NOW) == NOW + DAY * US
    with pytest.raises(Invalid, match=rf"^{name} is before 1970-01-01T00:00:00Z$"):
        build("1969-12-31T23:59:59.999999Z", NOW)
    with pytest.raises(Invalid, match=rf"^{name} is more than 24 h ahead of the clock$"):
        build(iso(NOW + DAY * US + 1), NOW)
    for edge in ("0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00+23:59", "0001-01-01"):
        with pytest.raises(Invalid, match="before 1970"):
            build(edge, NOW)
    for edge in ("9999-12-31T23:59:59.999999-23:59", "9999-12-31T23:59:59Z"):
        with pytest.raises(Invalid, match="ahead of the clock"):
            build(edge, NOW)


def test_placements_and_resets_default_to_the_wall_clock():
    far = {"dpu_id": "1", "doorway_id": "D", "installed_at": "2999-01-01T00:00:00Z",
           "spaces": [{"space_id": "A", "direction": 1}]}
    assert "ahead of the clock" in parse_placement(orjson.dumps(far), max_bytes=4096).reason
    late = {"space_id": "A", "at": "2999-01-01T00:00:00Z", "count": 1}
    assert "ahead of the clock" in parse_reset(orjson.dumps(late), max_bytes=4096).reason
    assert isinstance(parse_reset(orjson.dumps({**late, "at": "2999-01-01T00:00:00Z"}),
                                  max_bytes=4096, now_us=parse_ts("2998-12-31T12:00:00Z")),
                      Reset)


@pytest.mark.parametrize("max_future_s", [float("inf"), float("nan"), 1e300])
def test_an_unbounded_future_setting_still_keeps_instants_renderable(max_future_s):
    assert valid_instant("9999-12-31T00:00:00Z", "at", NOW, max_future_s) == MAX_US
    with pytest.raises(Invalid):
        valid_instant("9999-12-31T00:00:00.000001Z", "at", NOW, max_future_s)


def test_query_instants_reach_9999_12_31_and_name_the_field():
    assert parse_ts("9999-12-31T00:00:00Z") == MAX_US
    assert iso(MAX_US) == "9999-12-31T00:00:00.000Z"
    with pytest.raises(BadTimestamp, match=r"^parameter 'at' is after 9999-12-31T00:00:00Z$"):
        parse_ts("9999-12-31T00:00:00.000001Z", "parameter 'at'")
    with pytest.raises(BadTimestamp, match=r"^parameter 'at' is before 1970-01-01T00:00:00Z$"):
        parse_ts("0001-01-01T00:00:00Z", "parameter 'at'")


OFFSETS = st.builds(lambda sign, h, m: f"{sign}{h:02d}:{m:02d}", st.sampled_from("+-"),
                    st.integers(0, 23), st.integers(0, 59)) | st.sampled_from(["", "Z", "+24:00"])
ISO_LIKE = st.builds(
    lambda y, mo, d, h, mi, s, frac, off: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"
                                          f"{frac}{off}",
    st.integers(1, 9999) | st.sampled_from([1, 1969, 1970, 9999]), st.integers(1, 12),
    st.integers(1, 31), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59),
    st.sampled_from(["", ".999999", ".000001", ".5"]), OFFSETS)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(ISO_LIKE, st.text(max_size=40), st.text(st.characters(codec="ascii"),
                                                          max_size=40)))
@example("\ud800")
@example("0001-01-01T00:00:00+23:59")
@example("9999-12-31T23:59:59.999999-23:59")
@example("+99999-01-01T00:00:00Z")
@example("2018-W08-6")
def test_parse_ts_raises_only_bad_timestamp_and_what_it_returns_renders_back(text):
    try:
        us = parse_ts(text)
    except BadTimestamp:
        return
    assert 0 <= us <= MAX_US
    assert parse_ts(iso(us)) == us  # iso and from_us never fail on a parsed instant
    assert from_us(us).year >= 1970
    if us <= NOW + DAY * US:
        assert valid_instant(text, "timestamp", NOW, DAY) == us
    else:
        with pytest.raises(Invalid, match="ahead of the clock"):
            valid_instant(text, "timestamp", NOW, DAY)


@pytest.mark.parametrize("us", [-(10 ** 30), 10 ** 30, 253402300800 * US])
def test_from_us_and_iso_refuse_an_unrenderable_instant_with_bad_timestamp(us):
    with pytest.raises(BadTimestamp, match="outside the years 1 to 9999"):
        iso(us)


# -- POST /events when Kafka does not acknowledge -------------------------------------------

from pipeline.views.ingest import deliver, ingest  # noqa: E402  (imports the Faust app)

ITEMS = [event("283", "2018-02-25T10:00:00Z"), event("1\x00"),
         event("283", "0001-01-01T00:00:00+01:00"), event("423", "2018-02-25T10:00:01Z"),
         "not an object", event("423", "2018-02-25T10:00:02Z")]
VALID = [0, 3, 5]


class Producer:
    """A stand-in for the worker's producer: records what it is handed; deliveries as told."""

    def __init__(self, outcome=lambda i: None, refuse_at=None, block_at=None):
        self.outcome, self.refuse_at, self.block_at = outcome, refuse_at, block_at
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, key: bytes, value: bytes):
        i = len(self.sent)
        if i == self.refuse_at:
            raise RuntimeError("ProducerSendError: broker gone")
        if i == self.block_at:
            await asyncio.Event().wait()  # the producer's buffer is full and stays full
        self.sent.append((key, value))
        fut = asyncio.get_running_loop().create_future()
        result = self.outcome(i)
        if isinstance(result, BaseException):
            fut.set_exception(result)
        elif result != "never":
            fut.set_result(("topic", i))
        return fut


def run(coro):
    return asyncio.run(coro)


def test_202_only_with_every_valid_event_acknowledged_and_each_bad_item_named():
    producer = Producer()
    status, body = run(ingest(ITEMS, producer.send, now=NOW))
    assert status == 202 and body["accepted"] == 3 and "unacknowledged" not in body
    assert [r["index"] for r in body["rejected"]] == [1, 2, 4]
    assert body["rejected"][0]["reason"] == "dpu_id holds a control character (U+0000)"
    assert body["rejected"][1]["reason"] == "timestamp is before 1970-01-01T00:00:00Z"
    assert [orjson.loads(v)["timestamp"] for _, v in producer.sent] == [
        "2018-02-25T10:00:00.000Z", "2018-02-25T10:00:01.000Z", "2018-02-25T10:00:02.000Z"]
    assert [k for k, _ in producer.sent] == [b"283", b"423", b"423"]


@pytest.mark.parametrize("producer,unacked", [
    (Producer(lambda i: "never" if i == 1 else None), [3]),  # no answer from the broker
    (Producer(lambda i: "never"), VALID),
    (Producer(lambda i: RuntimeError("NotEnoughReplicas") if i != 1 else None), [0, 5]),
    (Producer(refuse_at=1), [3, 5]),  # the producer refuses the second record
    (Producer(block_at=2), [5]),  # the producer never takes the third
])
def test_503_lists_the_unacknowledged_items_within_the_bound(producer, unacked):
    loop_time = []

    async def go():
        t0 = asyncio.get_running_loop().time()
        answer = await ingest(ITEMS, producer.send, now=NOW, timeout_s=0.3)
        loop_time.append(asyncio.get_running_loop().time() - t0)
        return answer

    status, body = run(go())
    assert status == 503, body
    assert body["unacknowledged"] == unacked
    assert body["accepted"] == len(VALID) - len(unacked)
    assert [r["index"] for r in body["rejected"]] == [1, 2, 4]
    assert "did not acknowledge" in body["error"] and "again" in body["error"]
    assert loop_time[0] < 2, "the answer waited past its bound"


def test_deliver_with_nothing_to_send_acknowledges_nothing_and_waits_not():
    assert run(deliver([], Producer().send, timeout_s=0)) == []


# -- the CLI's one-record commands ----------------------------------------------------------

@pytest.mark.parametrize("args,line", [
    (["placements", "set", "423", "--doorway", "Z", "--space", "A:1",
      "--at", "0001-01-01T00:00:00Z"], "Error: installed_at is before 1970-01-01T00:00:00Z"),
    (["placements", "set", "4\x0123", "--at", "2018-01-01T00:00:00Z"],
     "Error: dpu_id holds a control character (U+0001)"),
    (["spaces", "reset", "A", "--count", "1", "--at", "0001-01-01T00:00:00+01:00"],
     "Error: at is before 1970-01-01T00:00:00Z"),
    (["spaces", "reset", "A", "--count", "1", "--at", "9999-12-31T23:59:59-23:59"],
     "Error: at is more than 24 h ahead of the clock"),
    (["spaces", "reset", "A\udcff", "--count", "1", "--at", "2018-01-01T00:00:00Z"],
     "Error: space_id is not valid UTF-8 (lone surrogate U+DCFF)"),
])
def test_cli_one_record_commands_refuse_invalid_values_in_one_line(args, line):
    from click.testing import CliRunner

    from pipeline.cli import main

    # A broker nobody listens on: a value that passed the check would fail differently.
    result = CliRunner().invoke(main, args, env={"DPU_KAFKA_URL": "kafka://127.0.0.1:9"})
    assert result.exit_code == 1 and not isinstance(result.exception, Exception), result.output
    assert result.output.strip() == line
