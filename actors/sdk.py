"""The SDK: use a running node from your own program, and host a provider in it.

Theory of operation
-------------------
* `NodeClient` talks to one node through its control socket. Every call opens
  a fresh DEALER (`actors.rpc.call`) on a context the client owns, so one
  client may be shared by threads. Before sending, it checks that something
  listens on the control socket file; while nothing does (the node is
  restarting) it retries for `retry_s`, then raises `NodeUnavailable`. A
  request that was sent is never resent, since it may not be idempotent: a
  timeout raises `RpcTimeout`, or `NodeUnavailable` if the node vanished.
* `NodeClient.events` is the ZeroMQ guide's Clone pattern: subscribe, take a
  snapshot, then yield only events newer than its `seq`. A node restart
  (a new supervisor pid, or a `seq` that goes backwards) starts the seq
  count afresh, so the stream takes and yields a new snapshot.
* `attach` hosts a `StateProvider` inside the user's program. A daemon
  *host thread* binds a ROUTER on an abstract ipc endpoint and registers it
  with the node's anti-entropy actor (control op "attach"); from then on that
  actor sends the provider remote states ("apply"), its Lamport clock
  ("clock") and asks for its state ("sync_state", "digest"). Local writes go
  the other way as "local" requests. The registration is repeated every
  `reattach_s`: its reply holds the node's copy of every state of the type,
  the provider applies what it lacks and sends back what the node lacks, so
  a restarted node (or anti-entropy actor), a lost "local" or a write made
  while the node was down are all repaired within one period.
* Threads: the provider is touched only under one lock, by the host thread
  and by `writing()` / `read()` in the user's threads. `writing()` never
  waits on the network: it queues the drained changes and wakes the host
  thread through a pipe. Each socket belongs to one thread. The host thread
  never raises into the user's program: it logs with loguru and counts.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

import zmq
from loguru import logger

from actors.config import load_config
from actors.rpc import (
    AsyncClient,
    Request,
    RpcError,
    RpcTimeout,
    call,
    error_frames,
    parse_request_untrusted,
    reply_frames,
)
from transport.codec import DecodeError, unpack_untrusted
from transport.protocol import (
    LamportClock,
    ProtocolError,
    StateProvider,
    SyncableState,
    map_to_syncable_state,
    newer,
    state_key,
    syncable_state_to_map,
)
from transport.sockets import abstract_endpoint, bind, make_socket, unix_socket_listening

RETRY_POLL_S = 0.05
SUBSCRIBE_SETTLE_S = 0.2  # a new SUB needs a moment before the publisher sends it anything
RESTART_CHECK_S = 1.0  # how often an event stream asks whether the node was restarted
LOCAL_BATCH = 500  # states per "local" request, well under the codec's message bound
_serial = itertools.count(1)

__all__ = ["HostedProvider", "NodeClient", "NodeUnavailable", "RpcError", "RpcTimeout",
           "attach"]


class NodeUnavailable(RpcError):
    """Nothing answers on the node's control socket (not running, or it went away)."""

    def __init__(self, control: str, detail: str) -> None:
        super().__init__("node_unavailable", f"{detail} (control socket {control})")
        self.control = control


class NodeClient:
    """Calls to one running node. Safe to share between threads (see module doc).

    Args:
        config: the node's config file; its `[local]` section names the sockets.
        control: the control endpoint (``ipc://...``) when there is no config file.
        events: the events endpoint; by default from the config, else asked of the node.
        timeout_s: how long a sent request may wait for its reply.
        retry_s: how long a call waits for a node that is not (yet) listening.

    Raises:
        actors.config.ConfigError: the config file is unreadable or invalid.
    """

    def __init__(self, config: str | Path | None = None, *, control: str | None = None,
                 events: str | None = None, timeout_s: float = 5.0,
                 retry_s: float = 2.0) -> None:
        if config is not None:
            cfg = load_config(config)
            control, events = cfg.local.control, events or cfg.local.events
        if control is None:
            raise ValueError("NodeClient needs a config file or a control endpoint")
        self.control = control
        self._events = events
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.ctx = zmq.Context()
        self._node_id: str | None = None

    # -- calls -------------------------------------------------------------------
    def call(self, op: str, args: dict[str, Any] | None = None,
             timeout_s: float | None = None) -> Any:
        """Any control operation; returns its result.

        Raises:
            NodeUnavailable: nothing listened within `retry_s`, or the node went
                away while the request was out.
            RpcTimeout: the node is up but did not answer within `timeout_s`.
            RpcError: the node refused the request (`.code`, `.message`).
        """
        self.wait_listening()
        try:
            return call(self.ctx, self.control, op, args, timeout_s or self.timeout_s)
        except RpcTimeout:
            if not self.listening():
                raise NodeUnavailable(self.control, "node stopped answering") from None
            raise

    def listening(self) -> bool:
        """True when a process accepts connections on the control socket."""
        if not self.control.startswith("ipc://"):
            return True  # not a socket file: nothing to check before sending
        return unix_socket_listening(self.control[len("ipc://"):])

    def wait_listening(self, retry_s: float | None = None) -> None:
        """Return once the node listens; raise NodeUnavailable after `retry_s`."""
        deadline = time.monotonic() + (self.retry_s if retry_s is None else retry_s)
        while not self.listening():
            if time.monotonic() >= deadline:
                raise NodeUnavailable(self.control, "node is not running")
            time.sleep(RETRY_POLL_S)

    def kv_set(self, key: str, value: Any) -> int:
        """Write a key of the built-in kv provider; returns its new version."""
        return int(self.call("kv.set", {"key": key, "value": value})["version"])

    def kv_get(self, key: str) -> Any | None:
        """The value of `key`, or None when it is not set (or deleted)."""
        result = self.call("kv.get", {"key": key})
        return result.get("value") if result.get("found") else None

    def kv_delete(self, key: str) -> bool:
        """Delete `key`; True when it existed."""
        return bool(self.call("kv.del", {"key": key}).get("existed"))

    def members(self) -> list[dict[str, Any]]:
        """Every known member: node_id, address, status, incarnation, metadata."""
        return list(self.call("members"))

    def state(self, type: str | None = None) -> list[dict[str, Any]]:
        """The replicated state this node holds (every type, or one), without tombstones."""
        return list(self.call("state", {"type": type} if type else {}))

    def status(self) -> dict[str, Any]:
        return dict(self.call("status"))

    def snapshot(self) -> dict[str, Any]:
        """Members and actors, with the event `seq` they are consistent with."""
        return dict(self.call("snapshot"))

    @property
    def node_id(self) -> str:
        if self._node_id is None:
            self._node_id = str(self.call("ping")["node_id"])
        return self._node_id

    @property
    def events_endpoint(self) -> str:
        if self._events is None:
            self._events = str(self.status()["events"])
        return connectable(self._events)

    # -- events ------------------------------------------------------------------
    def events(self, prefixes: tuple[str, ...] = ("",), snapshot: bool = False,
               timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
        """Cluster events as maps {type, node_id, data, timestamp, source, seq}.

        With `snapshot`, the first item (and the first after a node restart) is
        ``{"type": "snapshot", "seq": ..., "data": {"members", "actors"}, ...}``
        and only events with a higher seq follow. Stops after `timeout_s`
        (None: never). Raises NodeUnavailable if the node is not running when
        the stream starts; later outages are waited out.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        sub = make_socket(self.ctx, zmq.SUB, hwm=100000)
        try:
            for prefix in prefixes:
                sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
            sub.connect(self.events_endpoint)
            yield from _EventStream(self, sub, snapshot).run(deadline)
        finally:
            sub.close(linger=0)

    def close(self) -> None:
        self.ctx.destroy(linger=0)

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _EventStream:
    """The Clone-pattern filter of `NodeClient.events` over one SUB socket."""

    def __init__(self, node: NodeClient, sub: zmq.Socket, snapshot: bool) -> None:
        self.node, self.sub, self.snapshot = node, sub, snapshot
        self.after = -1  # events up to this seq are covered by the snapshot
        self.last = -1  # seq of the last event yielded
        self.pid: int | None = None  # the supervisor the snapshot came from

    def run(self, deadline: float | None) -> Iterator[dict[str, Any]]:
        if self.snapshot:
            self.node.wait_listening()
            yield self._take_snapshot()
        next_check = time.monotonic() + RESTART_CHECK_S
        while deadline is None or time.monotonic() < deadline:
            wait_s = RESTART_CHECK_S if deadline is None else min(
                RESTART_CHECK_S, max(0.0, deadline - time.monotonic()))
            event = self._receive(wait_s)
            # The PUB keeps order, so once past the snapshot a seq never repeats or
            # falls, unless a new supervisor counts from 1 again.
            restarted = (event is not None and self.after < self.last
                         and 0 <= event["seq"] <= self.last)
            if self.snapshot and (restarted or time.monotonic() >= next_check):
                next_check = time.monotonic() + RESTART_CHECK_S
                if restarted or self._restarted():
                    snap = self._retake_snapshot()
                    if snap is not None:
                        yield snap
                    continue
            if event is not None and event["seq"] > self.after:
                self.last = event["seq"]
                yield event

    def _receive(self, wait_s: float) -> dict[str, Any] | None:
        if not self.sub.poll(int(wait_s * 1000), zmq.POLLIN):
            return None
        try:
            event = unpack_untrusted(self.sub.recv_multipart()[-1])
        except DecodeError:
            return None
        if not isinstance(event, dict):
            return None
        seq = event.get("seq")
        return {**event, "seq": seq if isinstance(seq, int) else -1}

    def _take_snapshot(self) -> dict[str, Any]:
        time.sleep(SUBSCRIBE_SETTLE_S)  # (re)subscribed before the snapshot, or we miss events
        snap = self.node.snapshot()
        self.pid = self._pid()
        self.after = self.last = int(snap["seq"])
        return {"type": "snapshot", "node_id": snap["node_id"], "source": snap["node_id"],
                "seq": snap["seq"], "timestamp": time.time(),
                "data": {"members": snap["members"], "actors": snap["actors"]}}

    def _retake_snapshot(self) -> dict[str, Any] | None:
        try:
            return self._take_snapshot()
        except RpcError:  # the node went away again: the next check retries
            return None

    def _pid(self) -> int | None:
        if not self.node.listening():
            return None
        try:
            return int(self.node.call("ping", timeout_s=1.0)["pid"])
        except RpcError:
            return None

    def _restarted(self) -> bool:
        pid = self._pid()
        return pid is not None and pid != self.pid


def connectable(endpoint: str) -> str:
    """A bind address made dialable: tcp://0.0.0.0:P and tcp://*:P become loopback."""
    for wildcard in ("tcp://0.0.0.0:", "tcp://*:"):
        if endpoint.startswith(wildcard):
            return "tcp://127.0.0.1:" + endpoint[len(wildcard):]
    return endpoint


# -- hosting a provider in the user's program -------------------------------------------
P = TypeVar("P", bound=StateProvider)
T = TypeVar("T")


@overload
def attach(provider: type[P], config: str | Path | None = None, *, control: str | None = None,
           options: Mapping[str, Any] | None = None, timeout_s: float = 5.0,
           retry_s: float = 2.0, reattach_s: float = 2.0) -> HostedProvider[P]: ...


@overload
def attach(provider: P, config: str | Path | None = None, *, control: str | None = None,
           options: Mapping[str, Any] | None = None, timeout_s: float = 5.0,
           retry_s: float = 2.0, reattach_s: float = 2.0) -> HostedProvider[P]: ...


def attach(provider: Any, config: str | Path | None = None, *, control: str | None = None,
           options: Mapping[str, Any] | None = None, timeout_s: float = 5.0,
           retry_s: float = 2.0, reattach_s: float = 2.0) -> HostedProvider[Any]:
    """Host `provider` in this program and join it to a running node's replication.

    Args:
        provider: a provider instance, or its class: a class is built as
            ``cls(node_id=<the node's id>, clock=<a clock the SDK keeps above the
            node's>, options=options)``, the same call as for ``[[providers]]``.
        config, control: the node, as for `NodeClient`.
        reattach_s: how often the registration is renewed (see module doc).

    Returns:
        The running `HostedProvider` (a context manager) once the node has
        registered it and the provider holds the node's states of its type.

    Raises:
        NodeUnavailable: the node is not running. RpcError: the node refused
        (for example it runs a provider of the same type itself).
    """
    node = NodeClient(config, control=control, timeout_s=timeout_s, retry_s=retry_s)
    try:
        clock = LamportClock()
        if isinstance(provider, type):
            provider = provider(node_id=node.node_id, clock=clock, options=dict(options or {}))
        if not isinstance(provider, StateProvider):
            raise TypeError(f"{type(provider).__name__} does not implement StateProvider")
        held_clock = getattr(provider, "clock", None)  # witness on the provider's own clock
        hosted = HostedProvider(provider, node,
                                held_clock if isinstance(held_clock, LamportClock) else clock,
                                reattach_s)
        hosted.start(timeout_s + retry_s + 1.0)
    except BaseException:
        node.close()
        raise
    return hosted


class HostedProvider(Generic[P]):
    """A provider served to a node by a daemon thread of this program (see `attach`).

    Attributes:
        provider: the provider; touch it only inside `writing()` or `read()`.
        node: a `NodeClient` for the same node.
        counters, errors: what the host thread did and what went wrong, by kind.
    """

    def __init__(self, provider: P, node: NodeClient, clock: LamportClock,
                 reattach_s: float) -> None:
        self.provider = provider
        self.node = node
        self.clock = clock
        self.state_type = provider.provider_type()
        self.endpoint = abstract_endpoint(
            "sdk", f"{os.getpid()}.{next(_serial)}.{secrets.token_hex(4)}/{self.state_type[:40]}")
        self.counters: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._seen: dict[tuple[str, str], tuple[int, str]] = {}
        self._outbox: list[SyncableState] = []
        self._outbox_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._closed = False
        self._loop = _HostLoop(self, reattach_s)
        self._thread = threading.Thread(target=self._loop.run, daemon=True,
                                        name=f"lbcluster-attach-{self.state_type}")

    @property
    def node_id(self) -> str:
        return self.node.node_id

    @property
    def attached(self) -> bool:
        """Whether the last registration succeeded."""
        return self._loop.attached

    def start(self, wait_s: float) -> None:
        """Start the host thread; return after the first registration, or raise its error."""
        self._thread.start()
        if not self._loop.first.wait(wait_s):
            self.close()
            raise RpcTimeout("attach", wait_s)
        if self._loop.first_error is not None:
            self.close()
            raise self._loop.first_error

    @contextlib.contextmanager
    def writing(self) -> Iterator[P]:
        """Hold the provider's lock; on exit its changes are sent to the node."""
        with self._lock:
            try:
                yield self.provider
            finally:
                changes = self._drain()
        if changes:
            with self._outbox_lock:
                self._outbox.extend(changes)
            self._wake()

    def read(self, fn: Callable[[P], T]) -> T:
        """`fn(provider)` under the provider's lock."""
        with self._lock:
            return fn(self.provider)

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait until every change from `writing()` was accepted by the node; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._outbox or self._loop.in_flight:
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            time.sleep(0.01)
        return True

    def close(self, flush_s: float = 1.0) -> None:
        """Send what is queued (up to `flush_s`), stop the host thread, close the sockets."""
        if self._thread.is_alive():
            self.flush(flush_s)
            self._loop.stop.set()
            self._wake()
            self._thread.join(5.0)
        if not self._thread.is_alive() and not self._closed:
            # (A thread stuck in a provider call keeps its sockets: leak, never hang.)
            self._closed = True
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.node.close()

    def __enter__(self) -> HostedProvider[P]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- used by the host thread, always under self._lock -----------------------------
    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _take_outbox(self) -> list[SyncableState]:
        with self._outbox_lock:
            out, self._outbox = self._outbox, []
        return out

    def _drain(self) -> list[SyncableState]:
        """The provider's changes since the last drain (its drain_changes, or a diff)."""
        drain = getattr(self.provider, "drain_changes", None)
        if drain is not None:
            changed: list[SyncableState] = list(drain())
        else:
            changed = [s for s in self.provider.get_sync_state()
                       if self._seen.get(state_key(s)) != (s.version, s.source_node)]
        for s in changed:
            self._seen[state_key(s)] = (s.version, s.source_node)
        return changed

    def _witness(self, clock: Any) -> None:
        if isinstance(clock, int) and not isinstance(clock, bool) and clock >= 0:
            with contextlib.suppress(ProtocolError):
                self.clock.update(clock)

    def _apply(self, states: list[SyncableState]) -> dict[str, int]:
        for s in states:
            self._witness(s.version)
        result = self.provider.apply_remote_state(states)
        self._drain()  # what it applied came from the node: nothing to send back
        self.counters["applied"] += result["applied"]
        return {"applied": int(result["applied"]), "conflicts": int(result["conflicts"]),
                "rejected": int(result["rejected"])}

    def _reconcile(self, mirror: list[SyncableState]) -> list[SyncableState]:
        """Apply what the node holds newer; return what this provider holds newer."""
        held = {state_key(s): s for s in self.provider.get_sync_state()}
        theirs = {state_key(s): s for s in mirror}
        missing = [s for k, s in theirs.items() if k not in held or newer(s, held[k])]
        if missing:
            self._apply(missing)
        return [s for k, s in held.items() if k not in theirs or newer(s, theirs[k])]


def parse_states_untrusted(raw: Any) -> tuple[list[SyncableState], int]:
    """States from a request's list of maps, and how many items were malformed."""
    if not isinstance(raw, list):
        raise RpcError("bad_request", "states must be a list")
    states, bad = [], 0
    for item in raw:
        try:
            states.append(map_to_syncable_state(item))
        except ProtocolError:
            bad += 1
    return states, bad


class _HostLoop:
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
        self.sub = make_socket(ctx, zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"node.failed")
        self.sub.connect(node.events_endpoint)
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
        if error is not None:
            self._attach_failed(error)
            return
        states, bad = parse_states_untrusted(result["states"])
        if bad:
            self.h.errors["bad_state"] += bad
        with self.h._lock:
            self.h._witness(result.get("clock"))
            ours = self.h._reconcile(states)
        self._send_local(ours)
        if not self.attached:
            self.log.bind(states=len(states), pushed=len(ours)).info("attached provider registered")
        self.attached = True
        self.h.counters["attaches"] += 1
        self.first.set()

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
                self.h.errors["malformed_event"] += 1
                continue
            if isinstance(event, dict) and event.get("type") == "node.failed":
                with self.h._lock:
                    self._node_failed(event.get("node_id"))

    def _node_failed(self, node_id: Any) -> None:
        if not isinstance(node_id, str):
            raise RpcError("bad_request", "node_failed needs a node_id")
        self.h.provider.on_node_failure(node_id)
        self.h.counters["node_failures"] += 1
        self._send_local(self.h._drain())  # e.g. it took over the dead node's work
