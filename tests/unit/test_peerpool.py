"""The shared outbound peer pool against real libzmq sockets (no node needed)."""

from __future__ import annotations

import errno
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import zmq

import transport.peerpool as peerpool
from transport.peerpool import SMALL_MESSAGE, UNCONNECTED_GIVE_UP_S, PeerPool


class PollWatcher:
    """What an actor's runtime does for the pool: poll the monitors, run their handlers."""

    def __init__(self) -> None:
        self.poller = zmq.Poller()
        self.handlers: dict[zmq.Socket, Callable[[float], None]] = {}

    def watch(self, sock: zmq.Socket, handler: Callable[[float], None]) -> None:
        self.handlers[sock] = handler
        self.poller.register(sock, zmq.POLLIN)

    def unwatch(self, sock: zmq.Socket) -> None:
        self.handlers.pop(sock, None)
        self.poller.unregister(sock)

    def pump(self, until: Callable[[], bool], timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not until() and time.monotonic() < deadline:
            for sock, _ in self.poller.poll(50):
                handler = self.handlers.get(sock)
                if handler is not None:
                    handler(time.monotonic())
        return until()


@pytest.fixture
def make_pool() -> Iterator[Callable[..., tuple[PeerPool, PollWatcher]]]:
    pools: list[PeerPool] = []

    def make(**kwargs: object) -> tuple[PeerPool, PollWatcher]:
        watcher = PollWatcher()
        pool = PeerPool(watcher, None, Counter(), hwm=16, **kwargs)  # type: ignore[arg-type]
        pools.append(pool)
        return pool, watcher

    yield make
    for pool in pools:
        pool.close()


@pytest.fixture
def refusing_ports() -> Iterator[Callable[[int], list[str]]]:
    """Endpoints on 127.0.0.1 that refuse every connection: bound, never listening,
    so no other process can take the port while the test runs."""
    held: list[socket.socket] = []

    def make(count: int) -> list[str]:
        endpoints = []
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
            endpoints.append(f"tcp://127.0.0.1:{s.getsockname()[1]}")
        return endpoints

    yield make
    for s in held:
        s.close()


def test_dialling_past_the_cap_hangs_up_the_least_recently_used_peer(make_pool, refusing_ports):
    pool, _ = make_pool(max_peers=4)
    a, b, c, d, e, f = refusing_ports(6)
    for address in (a, b, c, d):
        assert pool.send(address, b"ping", None)
    assert pool.send(a, b"again", None)  # a becomes the most recently used
    pool.send(e, b"ping", None)
    assert pool.addresses() == [c, d, a, e]  # b went first, not a
    pool.send(f, b"ping", None)
    assert pool.addresses() == [d, a, e, f]
    assert pool.counters["peers_evicted"] == 2


def test_fifteen_hundred_unreachable_peers_past_the_cap_are_survived(make_pool,
                                                                     refusing_ports):
    # 400 peers hold 1,200 sockets at once: past the 1,023 a default context allows.
    pool, watcher = make_pool(max_peers=400)
    endpoints = refusing_ports(1500)
    dialled = []
    for i, address in enumerate(endpoints):
        if pool.send(address, b"ping", None):
            dialled.append(address)
        if i % 50 == 0:  # as an actor's loop does between sends
            watcher.pump(lambda: False, timeout_s=0.01)
    # A dial fails (counted, never raised) only while libzmq still reaps closed sockets.
    assert len(dialled) + pool.counters["dial_failed"] == 1500
    assert len(dialled) > 1000
    assert pool.max_peers - pool.counters["dial_failed"] <= len(pool) <= pool.max_peers
    assert pool.addresses() == dialled[-len(pool):]  # the least recently used went first
    assert pool.counters["peers_evicted"] <= 1500 - pool.max_peers
    watcher.pump(lambda: False, timeout_s=0.3)  # monitor events of refused dials arrive
    for address in endpoints[:50]:  # and the pool keeps working
        assert pool.send(address, b"again", None)
    assert pool.addresses()[-50:] == endpoints[:50]


def test_a_connection_is_reported_and_its_later_refusal_too(make_pool):
    events: list[tuple[str, str]] = []
    pool, watcher = make_pool(on_connected=lambda a, now: events.append(("connected", a)),
                              on_refused=lambda a, now: events.append(("refused", a)))
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    address = f"tcp://127.0.0.1:{port}"
    try:
        assert pool.send(address, b"hello", None)
        assert watcher.pump(lambda: ("connected", address) in events)
        assert router.poll(5000) and router.recv_multipart()[-1] == b"hello"
        router.close()  # the process behind the port is gone: its reconnect is refused
        assert watcher.pump(lambda: ("refused", address) in events)
        assert pool.counters["connections_refused"] == 1
    finally:
        ctx.destroy(linger=0)


def test_large_messages_to_unconnected_peers_share_one_budget(make_pool, refusing_ports,
                                                              monkeypatch):
    monkeypatch.setattr(peerpool, "UNCONNECTED_BUDGET", 3 * SMALL_MESSAGE)
    pool, _ = make_pool()
    a, b = refusing_ports(2)
    big = b"x" * (SMALL_MESSAGE + 1)
    assert pool.send(a, big, None)
    assert pool.send(b, big, None)
    assert not pool.send(a, big, None)  # a third would pass the budget
    assert pool.send(b, b"probe", None)  # small messages always pass
    assert pool.counters["send_unconnected_full"] == 1
    assert pool.unsent == 2 * len(big) + len(b"probe")
    pool.hang_up(a)
    assert pool.unsent == len(big) + len(b"probe")


def test_a_peer_holding_messages_unconnected_too_long_is_hung_up(make_pool, refusing_ports):
    connected: list[str] = []
    pool, watcher = make_pool(on_connected=lambda a, now: connected.append(a))
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    answering = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
    (unreachable,) = refusing_ports(1)
    try:
        pool.send(answering, b"ping", None)
        pool.send(unreachable, b"ping", None)
        assert watcher.pump(lambda: answering in connected)
        pool.sweep(time.monotonic())
        assert unreachable in pool  # not yet: a dial may take a moment
        pool.sweep(time.monotonic() + UNCONNECTED_GIVE_UP_S + 1)
        assert unreachable not in pool and answering in pool
        assert pool.counters["peers_unreachable_dropped"] == 1 and pool.unsent == 0
    finally:
        ctx.destroy(linger=0)


def test_socket_errors_are_counted_never_raised(make_pool, monkeypatch):
    pool, _ = make_pool()
    assert not pool.send("tcp://127.0.0.1:notaport", b"ping", None)
    assert pool.counters["dial_refused_address"] == 1 and len(pool) == 0

    def no_sockets(*args: object, **kwargs: object) -> zmq.Socket:
        raise zmq.ZMQError(errno.EMFILE)

    monkeypatch.setattr(peerpool, "make_socket", no_sockets)
    assert not pool.send("tcp://127.0.0.1:1", b"ping", None)
    assert pool.counters["dial_failed"] == 1 and len(pool) == 0


class ActorLikeWatcher(PollWatcher):
    """A watcher with a context, as an actor has (its runtime sizes it)."""

    def __init__(self, ctx: zmq.Context) -> None:
        super().__init__()
        self.ctx = ctx


def test_pool_dials_through_the_actors_context_when_it_is_large_enough() -> None:
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, peerpool.sockets_for(8))
    try:
        pool = PeerPool(ActorLikeWatcher(ctx), None, Counter(), hwm=16, max_peers=8)
        assert pool.send("tcp://127.0.0.1:9", b"x", None)
        assert pool.context is ctx
        pool.close()
        assert not ctx.closed  # the actor's context is the actor's to end
        ctx.socket(zmq.PAIR).close()
    finally:
        ctx.destroy(linger=0)


def test_pool_makes_its_own_context_when_the_actors_is_too_small() -> None:
    ctx = zmq.Context()  # the default 1,023 sockets: short of 256 peers' worth
    try:
        pool = PeerPool(ActorLikeWatcher(ctx), None, Counter(), hwm=16)
        assert pool.send("tcp://127.0.0.1:9", b"x", None)
        own = pool.context
        assert own is not ctx and own.get(zmq.MAX_SOCKETS) >= peerpool.sockets_for(256)
        pool.close()
        assert own.closed
    finally:
        ctx.destroy(linger=0)
