"""Socket helpers against real libzmq sockets (no node needed)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import zmq

from transport.sockets import close_monitored

EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
          | zmq.EVENT_CONNECT_DELAYED)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_closing_a_monitored_dealer_leaves_the_io_thread_working(tmp_path: Path) -> None:
    # A DEALER retrying a dead port keeps producing monitor events. Closed in the
    # wrong order (its monitor first), the next event blocks the context's I/O
    # thread forever and the round trip below never completes.
    ctx = zmq.Context()
    try:
        rep = ctx.socket(zmq.REP)
        rep.bind(f"ipc://{tmp_path}/rep")
        req = ctx.socket(zmq.REQ)
        req.connect(f"ipc://{tmp_path}/rep")
        port = closed_port()
        for _ in range(20):
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.RECONNECT_IVL, 5)
            monitor = dealer.get_monitor_socket(EVENTS)
            dealer.connect(f"tcp://127.0.0.1:{port}")
            time.sleep(0.03)  # several refused reconnects, each reported
            close_monitored(dealer, monitor)
            assert dealer.closed and monitor.closed
        time.sleep(0.05)
        req.send(b"ping")
        assert rep.poll(5000), "the I/O thread is stuck: ipc traffic no longer moves"
        assert rep.recv() == b"ping"
        rep.send(b"pong")
        assert req.poll(5000) and req.recv() == b"pong"
        for s in (rep, req):
            s.close(linger=0)
        ctx.term()
    except BaseException:
        ctx.destroy(linger=0)  # term() would wait on a stuck I/O thread
        raise


def test_close_monitored_tolerates_a_closed_socket() -> None:
    ctx = zmq.Context()
    try:
        dealer = ctx.socket(zmq.DEALER)
        monitor = dealer.get_monitor_socket(EVENTS)
        dealer.disable_monitor()
        dealer.close(linger=0)
        close_monitored(dealer, monitor)
        assert monitor.closed
    finally:
        ctx.destroy(linger=0)
