"""The control socket: the supervisor's own ops, and the forwarding of the rest.

The supervisor answers a few ops itself (`routing.SUPERVISOR_OPS`: ping,
status, snapshot, stop, leave); every other op goes to the actor the routing
table names, and the actor's reply (or error) is relayed. An actor that was
given up answers nothing, so its requests fail at once with ``unavailable``
instead of waiting out a timeout.

A forwarded request is relayed as bytes: its body goes to the actor as the
client sent it (re-encoded only when the route renames the op), with the
client's ROUTER route as extra frames, so the actor answers the client's own
id and the supervisor hands the reply frames back without decoding them.
The supervisor still decodes and checks each request (it must route it, and
it holds untrusted clients to the network limits before any actor sees it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import zmq

from actors.node.lifecycle import Lifecycle
from actors.node.routing import RoutingTable
from actors.runtime import BATCH
from transport.codec import pack
from transport.rpc import (
    AsyncClient,
    Callback,
    Request,
    RpcError,
    error_frames,
    parse_request_untrusted,
    recv_frames,
    reply_frames,
    send_frames,
)

FORWARD_TIMEOUT_S = 5.0
# An op the supervisor answers itself; a None result means it replies later (`reply`).
LocalOp = Callable[[Request, float], Any]


class ControlServer:
    def __init__(self, sock: zmq.Socket, routes: RoutingTable, lifecycle: Lifecycle,
                 clients: Mapping[str, AsyncClient], local_ops: Mapping[str, LocalOp],
                 counters: dict[str, int]) -> None:
        self.sock, self.routes, self.lifecycle = sock, routes, lifecycle
        self.clients, self.local_ops, self.counters = clients, local_ops, counters

    def on_readable(self, now: float) -> None:
        for _ in range(BATCH):  # bounded: the loop must get back to its checks
            frames = recv_frames(self.sock)
            if frames is None:
                return
            try:
                req = parse_request_untrusted(frames)
            except RpcError:
                self.counters["control_malformed"] += 1
                continue
            self.counters["control_requests"] += 1
            try:
                result = self._serve(req, frames[-1], now)
            except RpcError as exc:
                self.fail(req, exc)
                continue
            if result is not None:
                self.reply(req, result)

    def reply(self, req: Request, result: Any) -> None:
        send_frames(self.sock, reply_frames(req, result))

    def fail(self, req: Request, error: RpcError) -> None:
        send_frames(self.sock, error_frames(req, error.code, error.message))

    def _relayed(self, frames: list[bytes]) -> None:
        send_frames(self.sock, frames)

    def _failure(self, req: Request) -> Callback:
        def failed(_: Any, error: RpcError | None) -> None:
            if error is not None:
                self.fail(req, error)
        return failed

    def _serve(self, req: Request, body: bytes, now: float) -> Any:
        local = self.local_ops.get(req.op)
        if local is not None:
            return local(req, now)
        route = self.routes.resolve(req.op)
        if route is None:
            raise RpcError("unknown_op", f"no such operation: {req.op}")
        target, op = route
        why = self.lifecycle.unavailable(target, now)
        if why is not None:
            raise RpcError("unavailable", why)
        if not req.id:  # a notification: the actor would not answer id 0, so ask for it
            self.forward(target, op, req.args, now, lambda result: self.reply(req, result),
                         lambda error: self.fail(req, error))
            return None
        if op != req.op:
            body = pack({"id": req.id, "op": op, "args": req.args})
        self.clients[target].relay(req.route, body, op, now, FORWARD_TIMEOUT_S,
                                   self._failure(req), self._relayed)
        return None

    def forward(self, target: str, op: str, args: dict[str, Any], now: float,
                ok: Callable[[Any], None], failed: Callable[[RpcError], None]) -> None:
        def done(result: Any, error: RpcError | None) -> None:
            if error is not None:
                failed(error)
            else:
                ok(result)

        self.clients[target].request(op, args, now, FORWARD_TIMEOUT_S, done)
