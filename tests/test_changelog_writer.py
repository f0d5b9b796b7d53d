"""``tables.cache.ChangelogWriter`` over RocksDB: a batch phase's values reach each partition's
store in one write batch, and a delete still comes after the puts before it."""

from __future__ import annotations

import asyncio

import rocksdict

from tables.cache import ChangelogWriter


class FakeStore:
    """The parts of Faust's RocksDB store the writer uses, over real rocksdict databases."""

    use_rocksdict = True

    def __init__(self, path) -> None:
        self.path = path
        self._dbs: dict[int, rocksdict.Rdict] = {}
        self._key_index: dict[bytes, int] = {}

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        if partition not in self._dbs:
            self._dbs[partition] = rocksdict.Rdict(str(self.path / str(partition)),
                                                   options=rocksdict.Options(raw_mode=True))
        return self._dbs[partition]

    def _set(self, key: bytes, value: bytes) -> None:
        raise AssertionError("a value was written on its own, not in the batch")

    def set_persisted_offset(self, tp, offset: int) -> None:
        pass

    def _del(self, key: bytes) -> None:
        for db in self._dbs.values():
            db.delete(key)


class FakeTable:
    def __init__(self, store: FakeStore) -> None:
        self.data = store
        self.changelog_topic = type("T", (), {"get_topic_name": lambda self: "t-changelog"})()


class FakeBatch:
    def append(self, **record):
        return object()

    def close(self) -> None:
        pass


class FakeProducer:
    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch, topic, partition):
        future = asyncio.get_running_loop().create_future()
        future.set_result(type("M", (), {"topic_partition": (topic, partition), "offset": 0})())
        return future


class FakeEpochs:
    def writing(self, topic: str, partition: int) -> int:
        return 1


def test_values_are_written_per_partition_in_one_batch_and_deletes_keep_their_order(tmp_path):
    store = FakeStore(tmp_path)
    writer = ChangelogWriter({"dpus": FakeTable(store)}, FakeEpochs(), FakeProducer)
    writer.put("dpus", 0, b"a", b"1")
    writer.put("dpus", 1, b"b", b"2")
    writer.put("dpus", 0, b"c", b"3")
    assert store._db_for_partition(0).get(b"a") is None, "held until the phase is written"
    writer.write_local()
    assert (store._db_for_partition(0).get(b"a"), store._db_for_partition(0).get(b"c"),
            store._db_for_partition(1).get(b"b")) == (b"1", b"3", b"2")
    assert store._key_index == {b"a": 0, b"b": 1, b"c": 0}

    writer.put("dpus", 0, b"d", b"4")
    writer.put("dpus", 0, b"d", None)  # deleted after the put before it, not before
    writer.put("dpus", 0, b"e", b"5")

    async def send():
        await (await writer.send())
    asyncio.run(send())  # sending writes what is held first
    assert store._db_for_partition(0).get(b"d") is None
    assert store._db_for_partition(0).get(b"e") == b"5"
