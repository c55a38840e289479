"""Health checks against real TCP and HTTP servers on 127.0.0.1 that go up and down.

The provider runs with its real thread pool and the real monotonic clock; the
test drives it like the actor loop does: tick, then sleep until the
provider's next deadline, with an overall deadline per condition.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from actors.providers.health import HealthProvider
from transport.protocol import LamportClock

pytestmark = [pytest.mark.slow, pytest.mark.timeout(30)]

INTERVAL_MS, FAST_MS, TIMEOUT_MS = 200, 50, 300
# Longest time from a change to its report: the wait for the next check, then
# `fall` (or `rise`) checks, each up to the timeout, spaced by the fast interval.
BOUND_S = (INTERVAL_MS + 2 * (FAST_MS + TIMEOUT_MS)) / 1000 + 0.5


class _Reusable:
    allow_reuse_address = True
    daemon_threads = True


class _TcpServer(_Reusable, socketserver.ThreadingTCPServer):
    pass


class _HttpServer(_Reusable, http.server.ThreadingHTTPServer):
    status = 200


class _Accept(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        pass  # accepting the connection is the whole TCP check


class _Silent(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(1024)
        time.sleep(1.0)  # never answers within the check timeout


class _Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, _HttpServer)
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Backend:
    """A server on a fixed 127.0.0.1 port that can be stopped and started again."""

    def __init__(self, server_cls: type[socketserver.TCPServer],
                 handler: type[socketserver.BaseRequestHandler]) -> None:
        self.server_cls, self.handler = server_cls, handler
        self.port = 0
        self.server: socketserver.TCPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> Backend:
        self.server = self.server_cls(("127.0.0.1", self.port), self.handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
        self.server = self.thread = None


@pytest.fixture
def servers() -> Iterator[list[Backend]]:
    made: list[Backend] = []
    yield made
    for backend in made:
        backend.stop()


@pytest.fixture
def providers() -> Iterator[list[HealthProvider]]:
    made: list[HealthProvider] = []
    yield made
    for provider in made:
        provider.close()


def start(servers: list[Backend], server_cls: type[socketserver.TCPServer],
          handler: type[socketserver.BaseRequestHandler]) -> Backend:
    backend = Backend(server_cls, handler).start()
    servers.append(backend)
    return backend


def provider_for(providers: list[HealthProvider], *backends: dict[str, Any]) -> HealthProvider:
    provider = HealthProvider("node-a", LamportClock(), {
        "backends": list(backends), "interval_ms": INTERVAL_MS, "fast_interval_ms": FAST_MS,
        "timeout_ms": TIMEOUT_MS})
    providers.append(provider)
    return provider


def wait_for_status(provider: HealthProvider, name: str, status: str,
                    timeout_s: float = BOUND_S) -> dict[str, Any]:
    """Drive the provider like the actor loop until `name` reports `status`."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = time.monotonic()
        provider.tick(now)
        row = provider.cmd_get({"name": name}, now)
        if row["status"] == status:
            return row
        if now > deadline:
            raise AssertionError(f"{name} still {row['status']} after {timeout_s:.2f} s: {row}")
        due = provider.next_deadline() or now + 0.05
        time.sleep(min(0.05, max(0.0, due - time.monotonic())))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_tcp_backend_is_reported_up_then_down_then_up_again(servers, providers):
    backend = start(servers, _TcpServer, _Accept)
    p = provider_for(providers, {"name": "web1", "check": "tcp",
                                 "address": f"127.0.0.1:{backend.port}"})
    row = wait_for_status(p, "web1", "up")
    assert (row["checked_by"], row["detail"]) == ("node-a", "connected")
    backend.stop()
    row = wait_for_status(p, "web1", "down")
    assert "ConnectionRefused" in row["detail"]
    backend.start()
    wait_for_status(p, "web1", "up")
    assert [s.value["status"] for s in p.drain_changes()] == ["up"]  # latest per key
    assert p.get_sync_state()[0].version == 3  # one write per flip, none in between


def test_an_http_backend_is_down_while_it_answers_500(servers, providers):
    backend = start(servers, _HttpServer, _Status)
    p = provider_for(providers, {"name": "api", "check": "http",
                                 "url": f"http://127.0.0.1:{backend.port}/health"})
    wait_for_status(p, "api", "up")
    assert isinstance(backend.server, _HttpServer)
    backend.server.status = 500
    assert wait_for_status(p, "api", "down")["detail"] == "http 500"
    backend.server.status = 200
    assert wait_for_status(p, "api", "up")["detail"] == "http 200"


def test_a_stopped_http_server_is_reported_down(servers, providers):
    backend = start(servers, _HttpServer, _Status)
    p = provider_for(providers, {"name": "api", "check": "http", "expect_status": 200,
                                 "url": f"http://127.0.0.1:{backend.port}/"})
    wait_for_status(p, "api", "up")
    backend.stop()
    wait_for_status(p, "api", "down")


def test_an_http_server_that_never_answers_is_down_after_the_timeout(servers, providers):
    backend = start(servers, _TcpServer, _Silent)
    p = provider_for(providers, {"name": "slow", "check": "http",
                                 "url": f"http://127.0.0.1:{backend.port}/"})
    row = wait_for_status(p, "slow", "down")
    assert "timed out" in row["detail"] or "Timeout" in row["detail"]
    assert row["latency_ms"] >= TIMEOUT_MS * 0.9


def test_a_port_nobody_listens_on_is_down_from_the_start(providers):
    p = provider_for(providers, {"name": "ghost", "check": "tcp",
                                 "address": f"127.0.0.1:{free_port()}"},
                     {"name": "ghost-http", "check": "http",
                      "url": f"http://127.0.0.1:{free_port()}/"})
    wait_for_status(p, "ghost", "down")
    wait_for_status(p, "ghost-http", "down")
