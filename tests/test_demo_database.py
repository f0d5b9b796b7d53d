"""``pipeline.demo.fresh_database`` (used by ``dpu demo`` and ``dpu bench``) on a server that is
not there: one clear line, as every other database connection of the CLI gives."""

import socket

import pytest

from pipeline.db import DatabaseUnavailable
from pipeline.demo import fresh_database


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_one_line():
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/dpu"
    with pytest.raises(DatabaseUnavailable) as found:
        fresh_database(url, "dpu_demo")
    message = str(found.value)
    assert "\n" not in message
    assert message.startswith("PostgreSQL is not reachable") and "dpu dev up" in message
