"""The host thread of an attached provider: its sockets, its registration, its requests."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq
from loguru import logger

from transport.codec import DecodeError, unpack_untrusted
from transport.protocol import (
    SyncableState,
    syncable_state_to_map,
)
from transport.rpc import (
    AsyncClient,
    Request,
    RpcError,
    error_frames,
    parse_request_untrusted,
    reply_frames,
)
from transport.sockets import bind, make_socket
from transport.views import parse_states_untrusted

if TYPE_CHECKING:
    from actors.sdk.hosted import HostedProvider

LOCAL_BATCH = 500  # states per "local" request, well under the codec's message bound


class HostLoop:
    """The host thread: owns its sockets; talks to the node; never raises."""

    def __init__(self, hosted: HostedProvider[Any], reattach_s: float) -> None:
        self.h = hosted
        self.reattach_s = reattach_s
        self.stop = threading.Event()
        self.first = threading.Event()
        self.first_error: RpcError | None = None
        self.attached = False
        self.attaching = False
        self.next_attach = 0.0
        self.in_flight = 0
        self.log = logger.bind(sdk="attach", state_type=hosted.state_type,
                               endpoint=hosted.endpoint)

    def run(self) -> None:
        try:
            self._open()
        except Exception as exc:
            self.log.exception("attached provider could not start")
            self.first_error = RpcError("sdk_error", str(exc))
            self.first.set()
            return
        try:
            self._serve()
        finally:
            for sock in (self.router, self.control.sock, self.sub):
                sock.close(linger=0)
            self.first.set()

    def _open(self) -> None:
        ctx, node = self.h.node.ctx, self.h.node
        self.router = make_socket(ctx, zmq.ROUTER)
        bind(self.router, self.h.endpoint)
        self.control = AsyncClient.connect(ctx, node.control)
        self.sub = node.subscriber(("node.failed",), hwm=1000)
        self.handlers: dict[Any, Callable[[], None]] = {
            self.router: self._on_router, self.control.sock: self.control.on_readable,
            self.sub: self._on_event, self.h._wake_r: self._on_wake}
        self.poller = zmq.Poller()
        for sock in self.handlers:
            self.poller.register(sock, zmq.POLLIN)

    def _serve(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= self.next_attach and not self.attaching:
                self._send_attach(now)
            deadline = min(d for d in (self.next_attach, self.control.next_deadline())
                           if d is not None)
            timeout_ms = int(min(0.5, max(0.0, deadline - now)) * 1000) + 1
            for sock, _ in self.poller.poll(timeout_ms):
                self._guarded(self.handlers[sock])
            self._guarded(lambda: self.control.expire(time.monotonic()))

    def _guarded(self, fn: Callable[[], None]) -> None:
        """A bug here or in the provider is logged and counted; the thread goes on."""
        try:
            fn()
        except Exception:
            self.h.errors["internal"] += 1
            self.log.exception("attached provider: unexpected error")

    # -- registration ------------------------------------------------------------
    def _send_attach(self, now: float) -> None:
        self.attaching, self.next_attach = True, now + self.reattach_s
        args = {"type": self.h.state_type, "endpoint": self.h.endpoint}
        self.control.request("attach", args, now, self.h.node.timeout_s, self._on_attached)

    def _on_attached(self, result: Any, error: RpcError | None) -> None:
        self.attaching = False
        if error is None and not (isinstance(result, dict) and isinstance(result.get("states"),
                                                                          list)):
            error = RpcError("bad_reply", "attach reply without states")
        if error is None:
            error = self._registered(result)
        if error is not None:
            self._attach_failed(error)
            return
        self.attached = True
        self.h.counters["attaches"] += 1
        self.first.set()

    def _registered(self, result: dict[str, Any]) -> RpcError | None:
        """Take the node's states of our type; send back what it lacks."""
        states, bad = parse_states_untrusted(result["states"])
        if bad:
            self.h.errors["bad_state"] += bad
        try:
            with self.h._lock:
                self.h._witness(result.get("clock"))
                ours = self.h._reconcile(states)
        except Exception as exc:  # the provider's bug: retried at the next registration
            self.h.errors["provider"] += 1
            self.log.exception("attached provider raised")
            return RpcError("provider_error", f"{type(exc).__name__}: {exc}")
        self._send_local(ours)
        if not self.attached:
            self.log.bind(states=len(states), pushed=len(ours)).info("attached provider registered")
        return None

    def _attach_failed(self, error: RpcError) -> None:
        self.h.errors[f"attach.{error.code}"] += 1
        if not self.first.is_set():
            self.first_error = error
            self.first.set()
            self.stop.set()
            return
        if self.attached:
            self.log.bind(code=error.code, error=error.message).warning(
                "attached provider lost its node; retrying")
        self.attached = False
        if error.code == "busy":  # our own queue was full: try again soon
            self.next_attach = min(self.next_attach, time.monotonic() + 0.1)

    # -- local writes ------------------------------------------------------------
    def _on_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.h._wake_r, 4096):
                pass
        self._send_local(self.h._take_outbox())

    def _send_local(self, states: list[SyncableState]) -> None:
        for i in range(0, len(states), LOCAL_BATCH):
            batch = [syncable_state_to_map(s) for s in states[i:i + LOCAL_BATCH]]
            self.in_flight += 1
            self.control.request("local", {"states": batch}, time.monotonic(),
                                 self.h.node.timeout_s, self._on_local_done)

    def _on_local_done(self, result: Any, error: RpcError | None) -> None:
        self.in_flight -= 1
        if error is not None:
            # Not lost: the next registration finds what the node lacks. Make it soon.
            self.h.errors[f"local.{error.code}"] += 1
            self.next_attach = min(self.next_attach, time.monotonic() + 0.2)
            return
        self.h.counters["local_sent"] += int(result.get("accepted", 0))
        with self.h._lock:
            self.h._witness(result.get("clock"))

    # -- requests from the node's anti-entropy actor ----------------------------------
    def _on_router(self) -> None:
        while self.router.poll(0, zmq.POLLIN):
            frames = self.router.recv_multipart()
            try:
                req = parse_request_untrusted(frames)
            except RpcError:
                self.h.errors["malformed_request"] += 1
                continue
            self._answer(req)

    def _answer(self, req: Request) -> None:
        try:
            with self.h._lock:
                result = self._handle(req)
        except RpcError as exc:
            reply = error_frames(req, exc.code, exc.message)
        except Exception as exc:  # the provider's bug: the node hears an error, we go on
            self.h.errors["provider"] += 1
            self.log.bind(op=req.op).exception("attached provider raised")
            reply = error_frames(req, "provider_error", type(exc).__name__)
        else:
            reply = reply_frames(req, result)
        if req.id:  # id 0 is a notification
            self.router.send_multipart(reply)

    def _handle(self, req: Request) -> Any:
        p = self.h.provider
        match req.op:
            case "apply":
                self.h._witness(req.args.get("clock"))
                states, bad = parse_states_untrusted(req.args.get("states"))
                result = self.h._apply(states)
                return {**result, "rejected": result["rejected"] + bad}
            case "clock":
                self.h._witness(req.args.get("clock"))
                return {}
            case "sync_state":
                return [syncable_state_to_map(s) for s in p.get_sync_state()]
            case "digest":
                return [[t, k, v] for (t, k), v in p.get_state_digest().items()]
            case "node_failed":
                self._node_failed(req.args.get("node_id"))
                return {}
        raise RpcError("unknown_op", f"an attached provider has no operation {req.op!r}")

    def _on_event(self) -> None:
        while self.sub.poll(0, zmq.POLLIN):
            try:
                event = unpack_untrusted(self.sub.recv_multipart()[-1])
            except DecodeError:
                event = None
            if not isinstance(event, dict) or not isinstance(event.get("node_id"), str):
                self.h.errors["malformed_event"] += 1
                continue
            if event.get("type") == "node.failed":
                try:
                    with self.h._lock:
                        self._node_failed(event["node_id"])
                except Exception:
                    self.h.errors["provider"] += 1
                    self.log.exception("attached provider raised")

    def _node_failed(self, node_id: Any) -> None:
        if not isinstance(node_id, str):
            raise RpcError("bad_request", "node_failed needs a node_id")
        self.h.provider.on_node_failure(node_id)
        self.h.counters["node_failures"] += 1
        self._send_local(self.h._drain())  # e.g. it took over the dead node's work
