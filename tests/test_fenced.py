"""Changelog epochs (``tables.fenced``): a restore skips the writes a worker paused past the
session timeout delivers after its successor's, whatever their order in the changelog."""

from __future__ import annotations

from types import SimpleNamespace

from tables.fenced import EPOCH_HEADER, Epochs


def record(partition: int, epoch: int | None, value: bytes, topic: str = "spaces-changelog"):
    headers = [] if epoch is None else [(EPOCH_HEADER, str(epoch).encode())]
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition,
                                                   headers=headers, value=value))


def test_a_successor_writes_above_every_epoch_it_restored():
    paused, successor = Epochs(SimpleNamespace(consumer_generation_id=1)), \
        Epochs(SimpleNamespace(consumer_generation_id=2))
    first = paused.writing("spaces-changelog", 0)
    successor.current([record(0, first, b"before the pause")])
    assert successor.writing("dpus-changelog", 0) > first, "above what any table showed"
    assert successor.writing("spaces-changelog", 0) == successor.writing("dpus-changelog", 0)


def test_writes_delivered_late_by_a_paused_worker_are_skipped():
    restorer = Epochs(SimpleNamespace(consumer_generation_id=3))
    changelog = [record(0, 100, b"paused worker, before"), record(0, 200, b"successor"),
                 record(0, 100, b"paused worker, delivered late"), record(1, 100, b"other p"),
                 record(0, 200, b"successor again")]
    kept = restorer.current(changelog)
    assert [r.message.value for r in kept] == [b"paused worker, before", b"successor",
                                              b"other p", b"successor again"]


def test_records_without_a_stamp_are_kept_until_stamped_ones_come():
    restorer = Epochs(SimpleNamespace(consumer_generation_id=1))
    kept = restorer.current([record(0, None, b"old"), record(0, 5, b"stamped"),
                             record(0, None, b"unstamped after")])
    assert [r.message.value for r in kept] == [b"old", b"stamped"]


def test_a_new_generation_takes_a_new_epoch():
    app = SimpleNamespace(consumer_generation_id=1)
    epochs = Epochs(app)
    before = epochs.writing("spaces-changelog", 2)
    app.consumer_generation_id = 2
    assert epochs.writing("spaces-changelog", 2) > before


def test_an_older_write_of_one_table_is_not_stale_for_a_newer_write_of_another():
    """Faust restores several tables side by side: each changelog partition keeps its order."""
    restorer = Epochs(SimpleNamespace(consumer_generation_id=1))
    dpus = restorer.current([record(0, 100, b"d1", "dpus-changelog"),
                             record(0, 200, b"d2", "dpus-changelog")])
    spaces = restorer.current([record(0, 100, b"s1", "spaces-changelog"),
                               record(0, 200, b"s2", "spaces-changelog")])
    assert len(dpus) == len(spaces) == 2
