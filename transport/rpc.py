"""Local request/reply over ZeroMQ: the CLI to the supervisor, the supervisor
to actors, actors to each other.

A request is one msgpack frame ``{"id": int, "op": str, "args": map}``; the
reply echoes the id: ``{"id", "ok": true, "result"}`` or ``{"id", "ok": false,
"error": {"code", "message"}}``. Ids matter because a DEALER to an actor that
is restarting queues the request and delivers it late: a reply nobody waits
for any more is recognised by its id and dropped.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq

from transport.codec import (
    DEFAULT_LIMITS,
    LOCAL_LIMITS,
    DecodeError,
    Limits,
    pack,
    unpack_untrusted,
)
from transport.sockets import make_socket

_SNDMORE = int(zmq.SNDMORE)  # plain ints: pyzmq's enum flags cost a microsecond per `|`
_NOBLOCK = int(zmq.NOBLOCK)


def send_frames(sock: zmq.Socket, frames: Sequence[bytes], flags: int = 0) -> None:
    """`send_multipart`, at a third of its cost per message (it builds enum flags
    per frame); raises zmq.Again like it when `flags` has NOBLOCK and no room."""
    send, flags = sock.send, int(flags)
    more = _SNDMORE | flags
    for frame in frames[:-1]:
        send(frame, more)
    send(frames[-1], flags)


def recv_frames(sock: zmq.Socket) -> list[bytes] | None:
    """The next whole message if one is waiting, else None (never blocks).

    Cheaper than `poll(0)` then `recv_multipart` (a Poller per call, a getsockopt
    per frame): a try of a non-blocking receive, and each frame says if more follow.
    """
    try:
        frame = sock.recv(_NOBLOCK, copy=False)
    except zmq.Again:
        return None
    frames = [frame.bytes]
    while frame.more:
        frame = sock.recv(copy=False)
        frames.append(frame.bytes)
    return frames


class RpcError(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class RpcTimeout(RpcError):
    def __init__(self, op: str, timeout_s: float) -> None:
        super().__init__("timeout", f"no reply to {op!r} within {timeout_s:g} s")


@dataclass(frozen=True)
class Request:
    route: tuple[bytes, ...]  # ROUTER envelope of whoever asked
    id: int
    op: str
    args: dict[str, Any]


def parse_request_untrusted(frames: list[bytes], limits: Limits = DEFAULT_LIMITS) -> Request:
    """Split a ROUTER message into its route and request; raises RpcError."""
    if len(frames) < 2:
        raise RpcError("bad_request", "missing frames")
    try:
        body = unpack_untrusted(frames[-1], limits)
    except DecodeError as exc:
        raise RpcError("bad_request", f"undecodable ({exc.reason})") from None
    if not isinstance(body, dict):
        raise RpcError("bad_request", "not a map")
    rid, op, args = body.get("id"), body.get("op"), body.get("args", {})
    if not isinstance(rid, int) or isinstance(rid, bool) or not isinstance(op, str):
        raise RpcError("bad_request", "id must be an integer and op a string")
    if not isinstance(args, dict):
        raise RpcError("bad_request", "args must be a map")
    return Request(tuple(frames[:-1]), rid, op, args)


def reply_frames(req: Request, result: Any) -> list[bytes]:
    return [*req.route, pack({"id": req.id, "ok": True, "result": result})]


def error_frames(req: Request, code: str, message: str) -> list[bytes]:
    body = {"id": req.id, "ok": False, "error": {"code": code, "message": message}}
    return [*req.route, pack(body)]


def parse_reply_untrusted(frame: bytes) -> tuple[int, Any]:
    """Returns (id, result) or raises RpcError for an error reply or garbage.
    Replies come from this node's own processes: local limits apply."""
    try:
        body = unpack_untrusted(frame, LOCAL_LIMITS)
    except DecodeError as exc:
        raise RpcError("bad_reply", f"undecodable ({exc.reason})") from None
    if not isinstance(body, dict) or not isinstance(body.get("id"), int):
        raise RpcError("bad_reply", "malformed reply")
    if body.get("ok"):
        return body["id"], body.get("result")
    err = body.get("error")
    if not isinstance(err, dict):
        raise RpcError("bad_reply", "malformed error reply")
    raise RpcError(str(err.get("code", "error")), str(err.get("message", "")))


def call(ctx: zmq.Context, endpoint: str, op: str, args: dict[str, Any] | None = None,
         timeout_s: float = 5.0) -> Any:
    """One synchronous request on a fresh socket (CLI and tests)."""
    sock = make_socket(ctx, zmq.DEALER, maxmsgsize=LOCAL_LIMITS.max_message_bytes)
    try:
        sock.connect(endpoint)
        sock.send(pack({"id": 1, "op": op, "args": args or {}}))
        deadline_ms = int(timeout_s * 1000)
        while sock.poll(deadline_ms, zmq.POLLIN):
            rid, result = parse_reply_untrusted(sock.recv())
            if rid == 1:
                return result
        raise RpcTimeout(op, timeout_s)
    finally:
        sock.close(linger=0)


Callback = Callable[[Any, RpcError | None], None]


Relay = Callable[[list[bytes]], None]


@dataclass
class _Pending:
    op: str
    deadline: float
    callback: Callback  # a relayed request's callback hears only of failures
    relay: Relay | None = None


@dataclass
class AsyncClient:
    """Non-blocking requests from inside an actor's poll loop."""

    sock: zmq.Socket
    pending: dict[int, _Pending] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def connect(cls, ctx: zmq.Context, endpoint: str, hwm: int = 1000) -> AsyncClient:
        sock = make_socket(ctx, zmq.DEALER, hwm=hwm, local=endpoint.startswith("ipc://"),
                           maxmsgsize=LOCAL_LIMITS.max_message_bytes)
        sock.connect(endpoint)
        return cls(sock)

    def request(self, op: str, args: dict[str, Any], now: float, timeout_s: float,
                callback: Callback) -> None:
        rid = next(self.ids)
        try:
            self.sock.send(pack({"id": rid, "op": op, "args": args}), zmq.NOBLOCK)
        except zmq.Again:
            callback(None, RpcError("busy", f"queue full sending {op!r}"))
            return
        self.pending[rid] = _Pending(op, now + timeout_s, callback)

    def relay(self, route: Sequence[bytes], body: bytes, op: str, now: float,
              timeout_s: float, failed: Callback, relay: Relay) -> None:
        """Send a request body that carries someone else's id, with their ROUTER route.

        The actor answers ``[token, *route, reply]`` (its ROUTER echoes every frame
        before the body), and `relay` gets ``[*route, reply]`` as it came, neither
        decoded nor re-encoded: the supervisor hands a client's reply on as bytes.
        `failed` hears of a timeout, a full queue or `fail_all` as a request would.
        """
        rid = next(self.ids)
        try:
            send_frames(self.sock, [rid.to_bytes(8, "big"), *route, body], _NOBLOCK)
        except zmq.Again:
            failed(None, RpcError("busy", f"queue full sending {op!r}"))
            return
        self.pending[rid] = _Pending(op, now + timeout_s, failed, relay)

    def notify(self, op: str, args: dict[str, Any]) -> bool:
        """Fire and forget; False when the queue is full."""
        try:
            self.sock.send(pack({"id": 0, "op": op, "args": args}), zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def on_readable(self) -> None:
        while (frames := recv_frames(self.sock)) is not None:
            if len(frames) > 1:  # a relayed reply: [token, *route, body]
                entry = self.pending.pop(int.from_bytes(frames[0], "big"), None)
                if entry is not None and entry.relay is not None:
                    entry.relay(frames[1:])
                continue
            frame = frames[0]
            rid: int | None
            try:
                rid, result = parse_reply_untrusted(frame)
                error = None
            except RpcError as exc:
                rid = _reply_id(frame)
                result, error = None, exc
            entry = self.pending.pop(rid, None) if rid is not None else None
            if entry is not None:
                entry.callback(result, error)

    def expire(self, now: float) -> None:
        for rid, entry in list(self.pending.items()):
            if entry.deadline <= now:
                del self.pending[rid]
                entry.callback(None, RpcTimeout(entry.op, 0))

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self.pending.values()), default=None)

    def fail_all(self, code: str, message: str) -> None:
        """Answer every pending request now (its peer is known to be gone)."""
        pending, self.pending = self.pending, {}
        for entry in pending.values():
            entry.callback(None, RpcError(code, message))

    def close(self) -> None:
        self.sock.close(linger=0)


def _reply_id(frame: bytes) -> int | None:
    """The id of a reply that failed its checks, so its caller hears why now rather
    than timing out: read leniently, since the strict read is what failed."""
    try:
        body = msgpack.unpackb(frame, raw=False, strict_map_key=False, max_ext_len=0)
    except Exception:  # any garbage: no id to answer
        return None
    rid = body.get("id") if isinstance(body, dict) else None
    return rid if isinstance(rid, int) else None
