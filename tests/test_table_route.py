"""Realtime routes while the key's worker cannot be named (``pipeline.views.common.table_route``):
503 with a JSON error, not Faust's 500; the view itself once it can."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest

import pipeline.views  # noqa: F401  (registers the routes on the Faust app)
from pipeline.app import app
from pipeline.views import common
from tables.faust_tables import spaces


class FakeView:
    web = None

    def json(self, value, status=200):
        return SimpleNamespace(status=status, body=orjson.dumps(value))


def request_for(space_id: str):
    return SimpleNamespace(match_info={"space_id": space_id}, query={})


@common.table_route(spaces, match_info="space_id")
async def answer(view, request, space_id: str):
    return view.json({"space_id": space_id})


@pytest.mark.parametrize("failure", [
    TypeError("'NoneType' object is not iterable"),  # the client lacks the partitions
    KeyError(3),  # no assignment yet
])
def test_a_key_whose_worker_cannot_be_named_yet_is_503(monkeypatch, failure):
    def key_store(table_name, key):
        raise failure

    monkeypatch.setattr(app.router, "key_store", key_store)
    response = asyncio.run(answer(FakeView(), request_for("hall"), space_id="hall"))
    assert response.status == 503
    assert orjson.loads(response.body) == {"error": common.NOT_LOCATED}


def test_a_key_held_here_is_answered_by_the_view(monkeypatch):
    monkeypatch.setattr(app.router, "key_store",
                        lambda table_name, key: app.conf.canonical_url)
    response = asyncio.run(answer(FakeView(), request_for("hall"), space_id="hall"))
    assert (response.status, orjson.loads(response.body)) == (200, {"space_id": "hall"})
