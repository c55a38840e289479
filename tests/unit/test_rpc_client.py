"""AsyncClient: a reply that fails the strict checks is an error for its caller now,
not a silent drop followed by a timeout."""

from __future__ import annotations

from typing import Any

import msgpack
import zmq

from transport.rpc import (
    AsyncClient,
    RpcError,
    parse_request_untrusted,
    recv_frames,
    reply_frames,
    send_frames,
)


def test_an_undecodable_reply_fails_its_request_at_once() -> None:
    ctx = zmq.Context()
    try:
        server = ctx.socket(zmq.ROUTER)
        server.bind("inproc://rpc-test")
        client = AsyncClient.connect(ctx, "inproc://rpc-test")
        got: list[tuple[Any, RpcError | None]] = []
        client.request("members", {}, 0.0, 5.0, lambda r, e: got.append((r, e)))
        ident, frame = server.recv_multipart()
        rid = msgpack.unpackb(frame)["id"]
        deep: Any = "x"
        for _ in range(60):  # deeper than LOCAL_LIMITS allow
            deep = [deep]
        server.send_multipart([ident, msgpack.packb({"id": rid, "ok": True, "result": deep})])
        assert client.sock.poll(2000)
        client.on_readable()
        assert len(got) == 1 and got[0][0] is None
        assert isinstance(got[0][1], RpcError) and got[0][1].code == "bad_reply"
        assert client.pending == {}
    finally:
        ctx.destroy(linger=0)  # closes both sockets, also when an assert failed


def test_a_relayed_request_comes_back_as_the_frames_the_actor_sent() -> None:
    """The supervisor's relay: the actor sees the client's route behind a token and
    answers the client's own id; the reply reaches `relay` undecoded, and a relayed
    request that is never answered fails through the ordinary timeout."""
    ctx = zmq.Context()
    try:
        actor = ctx.socket(zmq.ROUTER)
        actor.bind("inproc://relay-test")
        client = AsyncClient.connect(ctx, "inproc://relay-test")
        relayed: list[list[bytes]] = []
        failed: list[RpcError | None] = []
        route = (b"client-identity",)
        body = msgpack.packb({"id": 77, "op": "set", "args": {"key": "k"}})
        for _ in range(2):
            client.relay(route, body, "set", 0.0, 5.0, lambda _, e: failed.append(e),
                         relayed.append)
        req = parse_request_untrusted(recv_frames_blocking(actor))
        assert (req.id, req.op, req.route[2:]) == (77, "set", route)
        send_frames(actor, reply_frames(req, {"ok": 1}))
        assert client.sock.poll(2000)
        client.on_readable()
        assert len(relayed) == 1 and relayed[0][:-1] == list(route)
        assert msgpack.unpackb(relayed[0][-1]) == {"id": 77, "ok": True, "result": {"ok": 1}}
        client.expire(10.0)  # the second was never answered
        assert len(failed) == 1 and isinstance(failed[0], RpcError)
        assert failed[0].code == "timeout" and client.pending == {}
    finally:
        ctx.destroy(linger=0)


def recv_frames_blocking(sock: zmq.Socket) -> list[bytes]:
    assert sock.poll(2000)
    frames = recv_frames(sock)
    assert frames is not None
    return frames
