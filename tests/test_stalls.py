"""When the commit watchdog reads a partition again (pipeline.stalls)."""

from aiokafka import TopicPartition

from pipeline.stalls import STILL_TICKS, PartitionView, Watch, after_reading_through, standing_still

DELTAS = [TopicPartition("space-deltas", p) for p in range(2)]
EVENTS = TopicPartition("dpu-events", 0)


def ticks(watch: Watch, views_per_tick: list[dict]) -> list:
    """What standing_still returns at each tick."""
    return [standing_still(views, watch) for views in views_per_tick]


def test_a_head_passed_by_acknowledged_records_is_read_again():
    # Offset 100 never acknowledged while 101..180 were: the head is lost.
    views = {DELTAS[0]: PartitionView(100, 500, (101, 180)), DELTAS[1]: PartitionView(7, 9, None)}
    moving = [{**views, DELTAS[1]: PartitionView(7 + i, 50, None)} for i in range(STILL_TICKS + 1)]
    seen = ticks(Watch(), moving)
    assert seen[:STILL_TICKS] == [[]] * STILL_TICKS
    assert seen[STILL_TICKS] == [(DELTAS[0], 100, 500, "records after it acknowledged")]


def test_a_queued_head_under_backlog_is_left_alone():
    # The agents work through the topic (acks move on both partitions), the head of partition 0
    # waits in a queue: nothing above it acknowledged. Reading it again would only add work.
    backlog = [{DELTAS[0]: PartitionView(100, 90_000, None),
                DELTAS[1]: PartitionView(1_000 + 500 * i, 90_000, None)} for i in range(10)]
    assert ticks(Watch(), backlog) == [[]] * 10


def test_a_head_waiting_in_an_idle_worker_is_read_again():
    # The lost record is the partition's last one: nothing after it to acknowledge, and the
    # worker acknowledges nothing at all.
    quiet = {DELTAS[0]: PartitionView(100, 101, None), DELTAS[1]: PartitionView(40, 40, None),
             EVENTS: PartitionView(9_000, 9_000, None)}
    seen = ticks(Watch(), [quiet] * (STILL_TICKS + 1))
    assert seen[STILL_TICKS] == [(DELTAS[0], 100, 101, "the worker idle")]


def test_a_downstream_topic_starved_by_the_counting_agent_is_left_alone():
    # Under a backlog the counting agent holds the fetcher: nothing downstream is acknowledged
    # for a while, but the events topic moves. Nothing is lost.
    starved = [{DELTAS[0]: PartitionView(100, 5_000, None),
                DELTAS[1]: PartitionView(40, 4_000, None),
                EVENTS: PartitionView(9_000 + 800 * i, 900_000, None)} for i in range(10)]
    assert ticks(Watch(), starved) == [[]] * 10


def test_records_queued_before_a_reread_do_not_trigger_another():
    watch = Watch()
    lost = {DELTAS[0]: PartitionView(100, 500, (101, 180)), DELTAS[1]: PartitionView(0, 9, (0, 3))}
    busy = [{**lost, DELTAS[1]: PartitionView(i, 900, None)} for i in range(STILL_TICKS + 1)]
    assert ticks(watch, busy)[-1] == [(DELTAS[0], 100, 500, "records after it acknowledged")]
    # After the re-read, records 101..450 fetched before it are acknowledged ahead of the head
    # read again, which waits behind them in the queue: not lost.
    after = [{DELTAS[0]: PartitionView(100, 2_000, (101, 200 + 50 * i)),
              DELTAS[1]: PartitionView(50 + i, 900, None)} for i in range(2 * STILL_TICKS)]
    assert ticks(watch, after) == [[]] * (2 * STILL_TICKS)
    # Acknowledged past the mark with the head still missing (for longer than the ticks by
    # now): lost again, read again at once, and then not before the new mark.
    again = [{DELTAS[0]: PartitionView(100, 2_000, (101, 600 + i)),
              DELTAS[1]: PartitionView(60 + i, 900, None)} for i in range(STILL_TICKS + 1)]
    assert ticks(watch, again) == ([[(DELTAS[0], 100, 2_000, "records after it acknowledged")]]
                                   + [[]] * STILL_TICKS)


def test_a_commit_that_moves_is_never_read_again():
    moving = [{DELTAS[0]: PartitionView(100 + i, 500, (100 + i, 120 + i))} for i in range(10)]
    assert ticks(Watch(), moving) == [[]] * 10


def test_a_range_of_markers_only_is_a_gap_and_not_read_again():
    markers, again = after_reading_through({EVENTS: (10, 12)}, {EVENTS: {12}}, {EVENTS: 10},
                                           stalled={EVENTS: (10, 12)})
    assert markers == [(EVENTS, 10, 12)] and again == []


def test_a_partition_still_committed_where_it_stood_is_read_again():
    markers, again = after_reading_through({DELTAS[0]: (100, 600)}, {DELTAS[0]: {100, 101}},
                                           {DELTAS[0]: 100}, stalled={})
    assert markers == [] and again == [(DELTAS[0], 100)]


def test_a_partition_committed_while_its_range_was_read_is_left_alone():
    # The sink's write was slow, not lost: by the time the range was read its batch had been
    # committed, and reading again from the old head would redo everything since.
    markers, again = after_reading_through({DELTAS[0]: (109, 609)},
                                           {DELTAS[0]: set(range(109, 207))},
                                           {DELTAS[0]: 207}, stalled={})
    assert markers == [] and again == []
