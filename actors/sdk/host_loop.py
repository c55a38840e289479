"""The host thread of an attached provider: its sockets, its registration, its requests.

Everything it does to the provider goes through the `ProviderAdapter`, under
the lock the user's threads share (see `HostedProvider`). It owns its sockets
and never raises into the user's program: an error is counted and logged
through the standard `logging` module (logger ``lbcluster.sdk``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from actors.node.wakeup import WakeupPipe
from actors.providers.adapter import ProviderAdapter, own_writes
from transport.codec import DecodeError, unpack_untrusted
from transport.protocol import SyncableState, state_key, syncable_state_to_map
from transport.rpc import (
    AsyncClient,
    Request,
    RpcError,
    error_frames,
    parse_request_untrusted,
    recv_frames,
    reply_frames,
    send_frames,
)
from transport.sockets import bind, make_socket
from transport.views import parse_states_untrusted

if TYPE_CHECKING:
    from actors.sdk.client import NodeClient

LOCAL_BATCH = 500  # states per "local" request, well under the codec's message bound
# Requests from the node during which a provider may write (a rate provider flushes
# its counts whenever a drain finds them due).
_MAY_WRITE = frozenset({"apply", "clock", "node_failed"})
LOCALS_IN_FLIGHT = 4  # "local" requests waiting on the node; more changes wait queued
IDLE_WAKE_S = 0.5  # the loop checks its stop flag at least this often

log = logging.getLogger("lbcluster.sdk")


class ChangeQueue:
    """Changes from the user's threads to the host thread, with a pipe to wake it."""

    def __init__(self) -> None:
        self._items: list[SyncableState] = []
        self._lock = threading.Lock()
        self._pipe = WakeupPipe()
        self.wake_fd = self._pipe.fd

    def put(self, states: list[SyncableState], wake: bool = True) -> None:
        with self._lock:
            self._items.extend(states)
        if wake:
            self.wake()

    def take(self, limit: int) -> list[SyncableState]:
        """Up to `limit` of the oldest changes; the rest stay. The wake-ups are the
        host thread's to drain (`drain_wakeups`), once per wake-up."""
        with self._lock:
            items = self._items[:limit]
            del self._items[:limit]
        return items

    def drain_wakeups(self) -> None:
        """Forget the wake-ups (so a poll does not spin); what is queued stays."""
        self._pipe.drain()

    def __len__(self) -> int:
        return len(self._items)

    def wake(self) -> None:
        self._pipe.wake()

    def close(self) -> None:
        self._pipe.close()


class HostLoop:
    """The host thread: registers with the node, serves its requests, sends changes.

    Args:
        adapter: the provider, behind the shared adapter; touched only under `lock`.
        lock: the lock `HostedProvider.writing()` and `read()` hold.
        queue: changes made in the user's threads.
        node: the node's client (control endpoint, events, timeouts).
        endpoint: where this thread binds its ROUTER (the node's anti-entropy dials it).
        counters, errors: what it did and what went wrong, by kind.
    """

    def __init__(self, adapter: ProviderAdapter, lock: threading.RLock, queue: ChangeQueue,
                 node: NodeClient, endpoint: str, reattach_s: float,
                 counters: Counter[str], errors: Counter[str]) -> None:
        self.adapter, self.lock, self.queue = adapter, lock, queue
        self.node, self.endpoint, self.reattach_s = node, endpoint, reattach_s
        self.counters, self.errors = counters, errors
        self.stop = threading.Event()
        self.first = threading.Event()
        self.first_error: RpcError | None = None
        self.attached = False
        self.attaching = False
        self.next_attach = 0.0
        self.full_attach = True  # ask for the node's whole table (see _send_attach)
        self.in_flight = 0
        self.extra = {"state_type": adapter.state_type, "endpoint": endpoint}

    def run(self) -> None:
        try:
            self._open()
        except Exception as exc:
            log.exception("attached provider could not start", extra=self.extra)
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
        self.router = make_socket(self.node.ctx, zmq.ROUTER)
        bind(self.router, self.endpoint)
        self.control = AsyncClient.connect(self.node.ctx, self.node.control)
        self.sub = self.node.subscriber(("node.failed",), hwm=1000)
        self.handlers: dict[Any, Callable[[], None]] = {
            self.router: self._on_router, self.control.sock: self.control.on_readable,
            self.sub: self._on_event, self.queue.wake_fd: self._on_wake}
        self.adapter.set_wakeup(self.queue.wake)  # fast-path writes from the user's threads
        self.poller = zmq.Poller()
        for sock in self.handlers:
            self.poller.register(sock, zmq.POLLIN)

    def _serve(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= self.next_attach and not self.attaching:
                self._send_attach(now)
            with self.lock:
                provider_due = self.adapter.next_deadline()
            deadline = min(d for d in (self.next_attach, self.control.next_deadline(),
                                       provider_due, now + IDLE_WAKE_S) if d is not None)
            timeout_ms = int(max(0.0, deadline - now) * 1000) + 1
            for sock, _ in self.poller.poll(timeout_ms):
                self._guarded(self.handlers[sock])
            self._guarded(self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        self.control.expire(now)
        with self.lock:
            self.adapter.tick(now)  # e.g. a rate provider's flush every flush_ms
            changes = self.adapter.changes(now)
        self._report_faults()
        if changes:  # behind what the user's threads queued, and under the same cap
            self.queue.put(changes, wake=False)
        self._send_queued()

    def _guarded(self, fn: Callable[[], None]) -> None:
        """A bug here is logged and counted; the thread goes on."""
        try:
            fn()
        except Exception:
            self.errors["internal"] += 1
            log.exception("attached provider: unexpected error", extra=self.extra)

    def _report_faults(self) -> None:
        with self.lock:
            faults = self.adapter.take_faults()
        for fault in faults:
            log.error("attached provider raised in %s: %s\n%s", fault.method, fault.error,
                      fault.trace, extra=self.extra)

    # -- registration ------------------------------------------------------------
    def _send_attach(self, now: float) -> None:
        """Register, or renew the registration. Only a first registration, or one after
        something may have been lost (a failed request, a lost registration), asks for
        the node's whole table of this type; a renewal of a current one is a few bytes."""
        self.attaching, self.next_attach = True, now + self.reattach_s
        args = {"type": self.adapter.state_type, "endpoint": self.endpoint,
                "full": self.full_attach or not self.attached}
        self.control.request("attach", args, now, self.node.timeout_s, self._on_attached)

    def _on_attached(self, result: Any, error: RpcError | None) -> None:
        self.attaching = False
        if error is None and not (isinstance(result, dict) and isinstance(result.get("states"),
                                                                          list)):
            error = RpcError("bad_reply", "attach reply without states")
        if error is None and result.get("renewed") is True:
            self.counters["renewals"] += 1
            self.attached = True
            return
        if error is None:
            error = self._registered(result)
        if error is not None:
            self.full_attach = True
            self._attach_failed(error)
            return
        self.full_attach = False
        self.attached = True
        self.counters["attaches"] += 1
        self.first.set()

    def _registered(self, result: dict[str, Any]) -> RpcError | None:
        """Take the node's states of our type; send back what it lacks."""
        states, bad = parse_states_untrusted(result["states"])
        if bad:
            self.errors["bad_state"] += bad
        now = time.monotonic()
        try:
            with self.lock:
                self.adapter.witness(result.get("clock"))
                ours = self.adapter.reconcile(states, now)
        except RpcError as exc:  # the provider's bug: retried at the next registration
            return exc
        finally:
            self._report_faults()
        self._send_local(ours)
        if not self.attached:
            log.info("attached provider registered (%d states, %d pushed)", len(states),
                     len(ours), extra=self.extra)
        return None

    def _attach_failed(self, error: RpcError) -> None:
        self.errors[f"attach.{error.code}"] += 1
        if not self.first.is_set():
            self.first_error = error
            self.first.set()
            self.stop.set()
            return
        if self.attached:
            log.warning("attached provider lost its node (%s: %s); retrying", error.code,
                        error.message, extra=self.extra)
        self.attached = False
        if error.code == "busy":  # our own queue was full: try again soon
            self.next_attach = min(self.next_attach, time.monotonic() + 0.1)

    # -- local writes ------------------------------------------------------------
    def _on_wake(self) -> None:
        self.queue.drain_wakeups()
        self._send_queued()

    def _send_queued(self) -> None:
        """Send what the user's threads queued while fewer than LOCALS_IN_FLIGHT
        requests wait on the node. Under load the rest stays queued and leaves as
        fewer, larger requests (newest per key) when replies come back, instead of
        a deeper backlog at the node that every later change would wait behind."""
        while len(self.queue) and self.in_flight < LOCALS_IN_FLIGHT:
            taken = self.queue.take(LOCAL_BATCH * (LOCALS_IN_FLIGHT - self.in_flight))
            self._send_local(list({state_key(s): s for s in taken}.values()))

    def _send_local(self, states: list[SyncableState]) -> None:
        for i in range(0, len(states), LOCAL_BATCH):
            batch = [syncable_state_to_map(s) for s in states[i:i + LOCAL_BATCH]]
            self.in_flight += 1
            self.control.request("local", {"states": batch}, time.monotonic(),
                                 self.node.timeout_s, self._on_local_done)

    def _on_local_done(self, result: Any, error: RpcError | None) -> None:
        self.in_flight -= 1
        if error is not None:
            # Not lost: the next registration finds what the node lacks. Make it soon,
            # and a full one.
            self.errors[f"local.{error.code}"] += 1
            self.full_attach = True
            self.next_attach = min(self.next_attach, time.monotonic() + 0.2)
            return
        self.counters["local_sent"] += int(result.get("accepted", 0))
        with self.lock:
            self.adapter.witness(result.get("clock"))
        self._send_queued()

    # -- requests from the node's anti-entropy actor ----------------------------------
    def _on_router(self) -> None:
        while (frames := recv_frames(self.router)) is not None:
            try:
                req = parse_request_untrusted(frames)
            except RpcError:
                self.errors["malformed_request"] += 1
                continue
            self._answer(req)

    def _answer(self, req: Request) -> None:
        now = time.monotonic()
        own: list[SyncableState] = []
        try:
            with self.lock:
                result = self.adapter.handle(req.op, req.args, now)
                if req.op == "apply":
                    self.counters["applied"] += result["applied"]
                if req.op in _MAY_WRITE:  # what the node sent needs no sending back;
                    own = own_writes(self.adapter.changes(now),  # the provider's own
                                     self.node.node_id, req.op, req.args)  # writes do
                if req.op == "node_failed":
                    self.counters["node_failures"] += 1
        except RpcError as exc:
            reply = error_frames(req, exc.code, exc.message)
        else:
            reply = reply_frames(req, result)
        self._report_faults()
        if req.op == "node_failed":  # e.g. it took over the dead node's work
            self._tick()
        if req.id:  # id 0 is a notification
            send_frames(self.router, reply)
        if own:
            self.queue.put(own, wake=False)
            self._send_queued()

    def _on_event(self) -> None:
        while (frames := recv_frames(self.sub)) is not None:
            try:
                event = unpack_untrusted(frames[-1])
            except DecodeError:
                event = None
            if not isinstance(event, dict) or not isinstance(event.get("node_id"), str):
                self.errors["malformed_event"] += 1
                continue
            if event.get("type") == "node.failed":
                with self.lock:
                    self.adapter.node_failed(event["node_id"], time.monotonic())
                    self.counters["node_failures"] += 1
                self._tick()
