"""NodeClient against a scripted control socket: members without a membership
actor, arguments msgpack cannot carry, and an event stream that gives up."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from actors.sdk.client import NodeClient, NodeUnavailable
from transport.codec import pack, unpack_untrusted
from transport.rpc import RpcError

Handler = Callable[[str, dict[str, Any]], dict[str, Any]]


class FakeNode:
    """A ROUTER on an ipc socket that answers each request with `handler(op, args)`."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.control = f"ipc://{path}"
        self.handler = handler
        self.ops: list[str] = []  # every op received, in order
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.bind(self.control)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            if not self.sock.poll(50):
                continue
            *route, body = self.sock.recv_multipart()
            req = unpack_untrusted(body)
            self.ops.append(req["op"])
            self.sock.send_multipart([*route, pack({"id": req["id"], **self.handler(
                req["op"], req["args"])})])

    def stop(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Callable[[Handler], FakeNode]]:
    made: list[FakeNode] = []

    def make(handler: Handler) -> FakeNode:
        made.append(FakeNode(tmp_path / "control.sock", handler))
        return made[-1]

    yield make
    for node in made:
        node.stop()


def _no_membership_actor(op: str, args: dict[str, Any]) -> dict[str, Any]:
    if op == "members":
        return {"ok": False, "error": {"code": "unavailable",
                                       "message": "this node runs no membership actor"}}
    if op == "snapshot":
        return {"ok": True, "result": {"seq": 3, "node_id": "a", "actors": [],
                                       "members": [{"node_id": "a", "status": "alive"}]}}
    return {"ok": False, "error": {"code": "unknown_op", "message": op}}


def test_members_fall_back_to_the_snapshot_when_the_node_runs_no_membership_actor(fake):
    node = fake(_no_membership_actor)
    with NodeClient(control=node.control) as client:
        assert client.members() == [{"node_id": "a", "status": "alive"}]
    assert node.ops == ["members", "snapshot"]


def test_other_errors_of_members_are_raised_not_hidden(fake):
    node = fake(lambda op, args: {"ok": False, "error": {"code": "timeout", "message": "slow"}})
    with NodeClient(control=node.control) as client, pytest.raises(RpcError) as caught:
        client.members()
    assert caught.value.code == "timeout" and node.ops == ["members"]


def test_arguments_msgpack_cannot_carry_are_an_rpc_error_and_nothing_is_sent(fake):
    node = fake(_no_membership_actor)
    with NodeClient(control=node.control) as client, pytest.raises(RpcError) as caught:
        client.kv_set("k", 2**70)
    assert caught.value.code == "unencodable" and node.ops == []


def test_an_event_stream_gives_up_once_the_node_is_gone_for_give_up_s(fake, tmp_path):
    node = fake(_no_membership_actor)
    with NodeClient(control=node.control, events=f"ipc://{tmp_path / 'events'}") as client:
        stream = client.events(snapshot=True, give_up_s=0.0)
        assert next(stream)["type"] == "snapshot"  # the stream is running
        node.stop()
        with pytest.raises(NodeUnavailable, match="node stopped"):
            next(stream)
