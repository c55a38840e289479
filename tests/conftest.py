"""Shared fixtures: real nodes on 127.0.0.1 that are always stopped."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from actors.testing.localcluster import LocalCluster
from transport.codec import unpack_untrusted
from transport.sockets import make_socket

# The smallest valid node config (relative paths: write it into a tmp folder).
MINIMAL_CONFIG = """
[node]
id = "a"
data_dir = "data"
[network]
gossip = "tcp://127.0.0.1:7946"
sync = "tcp://127.0.0.1:7947"
[local]
events = "tcp://127.0.0.1:7948"
control = "ipc://data/control.sock"
"""


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    """Build LocalClusters (not started); every one is stopped at teardown."""
    made: list[LocalCluster] = []

    def make(count: int = 1, **kwargs: Any) -> LocalCluster:
        cluster = LocalCluster(tmp_path / f"c{len(made)}", count, **kwargs)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


class Subscriber:
    """Collects events from one or more nodes' event sockets."""

    def __init__(self, endpoints: list[str], prefixes: tuple[str, ...] = ("",)) -> None:
        self.ctx = zmq.Context()
        self.sock = make_socket(self.ctx, zmq.SUB, hwm=100000)
        for prefix in prefixes:
            self.sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        for endpoint in endpoints:
            self.sock.connect(endpoint)
        self.events: list[dict[str, Any]] = []

    def pump(self, wait_s: float = 0.05) -> None:
        while self.sock.poll(int(wait_s * 1000), zmq.POLLIN):
            self.events.append(unpack_untrusted(self.sock.recv_multipart()[-1]))
            wait_s = 0

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 20.0,
                 count: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            matched = [e for e in self.events if predicate(e)]
            if len(matched) >= count:
                return matched
            if time.monotonic() > deadline:
                kinds = [(e.get("type"), e.get("node_id")) for e in self.events][-30:]
                raise AssertionError(f"timed out waiting for events; last seen: {kinds}")
            self.pump(0.1)

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def subscriber() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(endpoints: list[str], prefixes: tuple[str, ...] = ("",)) -> Subscriber:
        sub = Subscriber(endpoints, prefixes)
        made.append(sub)
        time.sleep(0.1)  # let the subscription reach the publisher
        return sub

    yield make
    for sub in made:
        sub.close()


def wait_until(predicate: Callable[[], Any], timeout_s: float = 20.0,
               interval_s: float = 0.05, what: str = "condition",
               explain: Callable[[], Any] | None = None) -> Any:
    """`explain`, on a timeout, says what the nodes hold, so a rare failure in CI
    can be understood from its log alone."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = ""
            if explain is not None:
                try:
                    detail = f"; state at the timeout: {explain()!r}"
                except Exception as exc:  # the timeout is the failure to report, not this
                    detail = f"; explain failed: {exc!r}"
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{detail}")
        time.sleep(interval_s)


@pytest.fixture
def ae_actor(tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    """Makes anti-entropy actors of node "a" (no runtime: tests drive them by hand),
    with a fixed random source; their peer pools are closed after the test."""
    import random

    from actors.anti_entropy.actor import AntiEntropyActor
    from actors.anti_entropy.core.engine import AntiEntropy
    from actors.node.config import load_config
    from actors.runtime import NodeEnv

    made: list[AntiEntropyActor] = []

    def make(config: str = MINIMAL_CONFIG) -> AntiEntropyActor:
        path = tmp_path / "node.toml"
        path.write_text(config)
        env = NodeEnv(load_config(path), "a", "t")
        actor = AntiEntropyActor("anti_entropy", env, zmq.Context.instance())
        actor.core = AntiEntropy("a", actor.store, actor.config, random.Random(1), actor.clock)
        env.config.node.data_dir.mkdir(parents=True, exist_ok=True)
        made.append(actor)
        return actor

    yield make
    for actor in made:
        actor.pool.close()


class SentFrames:
    """A socket stand-in that keeps whole messages (lists of frames) as
    `transport.rpc.send_frames` sends them, frame by frame."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []
        self._parts: list[bytes] = []

    def send(self, frame: bytes, flags: int = 0) -> None:
        self._parts.append(bytes(frame))
        if not flags & zmq.SNDMORE:
            self.sent.append(self._parts)
            self._parts = []
