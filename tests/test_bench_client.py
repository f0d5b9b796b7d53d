"""The latency phase's client side: its poller (``pipeline.bench.KeptAlive``), one connection
for many polls and a new one when the server drops it, and no cycle collection meanwhile."""

import http.server
import threading

import pytest

from pipeline.bench import KeptAlive


class CountingHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the handler closes

    def do_GET(self):
        server = self.server
        server.requests += 1
        body = b'{"count": %d}' % server.requests
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if server.close_after_each:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        if server.close_after_each:
            self.close_connection = True

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    def __init__(self, close_after_each: bool):
        super().__init__(("127.0.0.1", 0), CountingHandler)
        self.requests = 0
        self.connections = 0
        self.close_after_each = close_after_each

    def process_request(self, request, client_address):
        self.connections += 1
        super().process_request(request, client_address)


@pytest.fixture(params=[False, True], ids=["kept-alive", "closed-by-server"])
def server(request):
    srv = Server(close_after_each=request.param)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_polls_share_one_connection_and_survive_a_dropped_one(server):
    client = KeptAlive("127.0.0.1", server.server_address[1])
    try:
        answers = [client.get_json("/spaces/s/count")["count"] for _ in range(5)]
    finally:
        client.close()
    assert answers == [1, 2, 3, 4, 5]
    assert server.connections == (5 if server.close_after_each else 1)


def test_a_server_that_is_gone_raises():
    srv = Server(close_after_each=False)
    port = srv.server_address[1]
    srv.server_close()
    with pytest.raises(OSError):
        KeptAlive("127.0.0.1", port).get_json("/")


def test_a_latency_phase_runs_without_cycle_collection_and_leaves_the_collector_as_it_was():
    """No collection of the bench's heap while probes are timed (one held the poller back
    140–213 ms), and the collector as before afterwards, also when the phase fails."""
    import gc

    from pipeline.bench import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with collector_paused():
            raise RuntimeError("phase failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()
