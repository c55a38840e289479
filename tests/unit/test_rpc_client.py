"""AsyncClient: a reply that fails the strict checks is an error for its caller now,
not a silent drop followed by a timeout."""

from __future__ import annotations

from typing import Any

import msgpack
import zmq

from transport.rpc import AsyncClient, RpcError


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
