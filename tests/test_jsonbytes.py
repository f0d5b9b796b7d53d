"""Encodings kept in memory are right-sized (``pipeline.jsonbytes``)."""

import tracemalloc

import orjson

from pipeline.jsonbytes import dumps_kept
from tables.chunks import CHUNK, Chunk


def allocated(make) -> int:
    """Bytes still allocated by what ``make()`` returns."""
    tracemalloc.start()
    try:
        kept = make()
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del kept
    return size


ITEM = (1764700000123456, 1, 2, 123456, (("space-00012", 1),))


def test_dumps_kept_is_the_json_in_a_buffer_of_its_size():
    assert dumps_kept(ITEM) == orjson.dumps(ITEM)
    per_value = allocated(lambda: [dumps_kept(ITEM) for _ in range(1000)]) / 1000
    assert per_value < 200, per_value  # orjson.dumps itself keeps 4 KiB per value


def test_chunks_keep_right_sized_encodings():
    def fill():
        chunks = [Chunk() for _ in range(100)]
        for chunk in chunks:
            for i in range(CHUNK):
                chunk.set(i, ITEM)
        return chunks

    per_item = allocated(fill) / (100 * CHUNK)
    assert per_item < 300, per_item
