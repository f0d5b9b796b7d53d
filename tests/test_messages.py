"""Grouped values as bounded Kafka messages (pipeline.messages)."""

import orjson

from pipeline.messages import MAX_MESSAGE_BYTES, json_arrays


def encoded(values):
    return [orjson.dumps(v) for v in values]


def test_a_small_group_is_one_message():
    values = [{"k": "e", "d": 1}, {"k": "e", "d": -1}]
    assert list(json_arrays(encoded(values))) == [orjson.dumps(values)]


def test_a_large_group_is_split_in_order_below_the_limit():
    # 40,000 telemetry-sized values of one DPU in a batch: far over Kafka's 1 MiB default.
    values = [{"k": "event", "src": [0, i], "dpu": "D1", "pad": "x" * 200} for i in range(40_000)]
    messages = list(json_arrays(encoded(values)))
    assert len(messages) > 1
    assert all(len(m) <= MAX_MESSAGE_BYTES for m in messages)
    assert [v for m in messages for v in orjson.loads(m)] == values


def test_a_single_value_over_the_limit_still_goes_alone():
    big = [{"pad": "x" * 100}]
    assert list(json_arrays(encoded(big), max_bytes=10)) == [orjson.dumps(big)]
