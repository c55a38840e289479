"""A public port held by one process and served by another: `listen` + `bind_listening`.

What the gossip and sync ports rely on: the supervisor holds the listening
descriptor, the actor binds onto it, and when the actor dies the port stays
open, so a peer never sees it refused and what it sends meanwhile reaches the
next actor bound onto the same descriptor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator

import pytest
import zmq
from conftest import wait_until

from transport.sockets import BindError, Listener, bind_listening, listen


def _serve(listener: Listener, endpoint: str, report: int) -> int:
    """Fork a process that binds a ROUTER onto `listener` and writes each body it gets."""
    pid = os.fork()
    if pid:
        return pid
    try:
        ctx = zmq.Context()
        router = ctx.socket(zmq.ROUTER)
        bind_listening(router, listener.fd, endpoint)
        while True:
            os.write(report, router.recv_multipart()[-1] + b"\n")
    finally:
        os._exit(0)


@pytest.fixture
def listener() -> Iterator[Listener]:
    held = listen("tcp://127.0.0.1:0")
    yield held
    held.close()


def test_a_restarted_server_gets_what_was_sent_while_none_was_bound(listener):
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    got = bytearray()

    def received() -> list[bytes]:
        with contextlib.suppress(BlockingIOError):
            got.extend(os.read(read_fd, 65536))
        return bytes(got).split()

    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RECONNECT_IVL, 50)
    refused = []
    monitor = dealer.get_monitor_socket(zmq.EVENT_CLOSED)  # how a refused dial shows
    dealer.connect(listener.endpoint)
    first = _serve(listener, listener.endpoint, write_fd)
    second = None
    try:
        dealer.send(b"before")
        wait_until(lambda: received() == [b"before"], what="the first server to receive")
        os.kill(first, signal.SIGKILL)
        os.waitpid(first, 0)
        for n in range(20):  # nobody bound: they wait in the dealer and the kernel's backlog
            dealer.send(b"while-down-%d" % n)
        with socket.create_connection(("127.0.0.1", int(listener.endpoint.rsplit(":", 1)[1]))):
            pass  # the port still accepts connections
        second = _serve(listener, listener.endpoint, write_fd)
        dealer.send(b"after")
        wait_until(lambda: received()[-1:] == [b"after"], what="the restarted server to receive")
        while monitor.poll(0):
            refused.append(monitor.recv_multipart())
        assert not refused, "a peer saw the port closed or refused"
        assert received()[1:] == [b"while-down-%d" % n for n in range(20)] + [b"after"]
    finally:
        for pid in (first, second):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, ChildProcessError):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
        monitor.close()
        dealer.close()
        ctx.term()
        os.close(read_fd)
        os.close(write_fd)


def test_a_port_in_use_is_one_clear_error(listener):
    with pytest.raises(BindError, match="address already in use"):
        listen(listener.endpoint)


def test_a_host_that_is_not_here_is_one_clear_error():
    with pytest.raises(BindError, match="not available on this host"):
        listen("tcp://192.0.2.1:7946")  # TEST-NET-1: never a local address
