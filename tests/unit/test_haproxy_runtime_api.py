"""The Runtime API client against small local servers: replies, refusals, silence, floods."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from actors.haproxy import runtime_api
from actors.haproxy.core.names import RuntimeAddress
from actors.haproxy.runtime_api import RuntimeApiError, exchange


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """Start a one-connection-at-a-time Unix server running `handle`; returns its path."""
    listeners: list[socket.socket] = []

    def start(handle: Callable[[socket.socket], None]) -> str:
        path = str(tmp_path / f"api{len(listeners)}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(8)
        listeners.append(listener)

        def loop() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    handle(conn)

        threading.Thread(target=loop, daemon=True).start()
        return path

    yield start
    for listener in listeners:
        listener.close()


def read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def test_one_line_out_everything_until_eof_back(serve):
    seen: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        seen.append(read_line(conn))
        conn.sendall(b"1\n# be_name srv_name srv_admin_state\n")
        conn.sendall(b"be_app web1 1\n\n")

    path = serve(handle)
    reply = exchange(RuntimeAddress(path=path), "show servers state", 2.0)
    assert seen == [b"show servers state\n"]
    assert reply == "1\n# be_name srv_name srv_admin_state\nbe_app web1 1\n\n"


def test_no_listener_is_a_connect_failure(tmp_path):
    with pytest.raises(RuntimeApiError) as err:
        exchange(RuntimeAddress(path=str(tmp_path / "absent.sock")), "show info", 1.0)
    assert err.value.reason == "connect"
    with pytest.raises(RuntimeApiError) as err:
        exchange(RuntimeAddress(host="127.0.0.1", port=_closed_port()), "show info", 1.0)
    assert err.value.reason == "connect"


def test_a_silent_peer_times_out_within_the_deadline(serve):
    release = threading.Event()
    path = serve(lambda conn: release.wait(10))
    start = time.monotonic()
    with pytest.raises(RuntimeApiError) as err:
        exchange(RuntimeAddress(path=path), "show info", 0.3)
    elapsed = time.monotonic() - start
    release.set()
    assert err.value.reason == "timeout"
    assert elapsed < 5.0  # bounded by the deadline, with room for a loaded machine


def test_a_flood_is_cut_off(serve, monkeypatch):
    monkeypatch.setattr(runtime_api, "MAX_REPLY", 1000)

    def handle(conn: socket.socket) -> None:
        read_line(conn)
        with contextlib.suppress(OSError):  # the client hangs up, as it should
            conn.sendall(b"x" * 100_000)

    path = serve(handle)
    with pytest.raises(RuntimeApiError) as err:
        exchange(RuntimeAddress(path=path), "show stat", 2.0)
    assert err.value.reason == "too_large"


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
