"""The shell every actor process runs: sockets, poll loop, heartbeats.

An actor is an OS process forked by the zygote. Its runtime owns:

- ``rpc``: a ROUTER bound at the actor's abstract ipc endpoint; requests
  from the supervisor (forwarded CLI commands) and from other actors;
- ``bus``: a PUSH to the supervisor's bus; events and heartbeats. PUSH, not
  PUB, so nothing is lost while the connection is being made;
- ``sub``: a SUB to the supervisor's event fan-out, for actors that react
  to cluster events (membership changes drive anti-entropy and providers).

The loop sleeps in ``poller.poll`` until a socket is ready or the actor's
next deadline, so an idle actor costs nothing but a heartbeat every 2 s
(``actor_beat_interval``), run at another wake-up when one falls near it.
The heartbeat carries the actor's counters; a supervisor that hears none for
``heartbeat_timeout_s`` treats the actor as hung. If the zygote (and so the
supervisor) is gone, the actor exits at its next wake-up even if the kernel's
parent-death signal did not reach it.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import zmq

from actors import logs
from actors.node.config import Config
from actors.node.liveness import BEAT_SLACK, Stamps, actor_beat_interval, wake_at
from actors.node.memory import Freezer, Trimmer
from actors.node.proctitle import set_title
from actors.node.wakeup import WakeupPipe
from transport.codec import LOCAL_LIMITS, pack, unpack_untrusted
from transport.peerpool import MAX_PEERS, sockets_for
from transport.protocol import SyncableState, make_event
from transport.rpc import (
    Request,
    RpcError,
    error_frames,
    parse_request_untrusted,
    recv_frames,
    reply_frames,
    send_frames,
)
from transport.sockets import bind, make_socket, private_endpoint
from transport.views import changed_row

BATCH = 500  # messages read from one socket per wake-up
EVENTS_PER_MESSAGE = 500  # events per bus message (about 100 KiB)


@dataclass(frozen=True)
class NodeEnv:
    """What every process of one node shares; fixed before the zygote forks."""

    config: Config
    node_id: str
    namespace: str
    # The public ports' listening descriptors, which the supervisor holds and the
    # membership (gossip) and anti-entropy (sync) actors bind onto: transport/sockets.py.
    gossip_fd: int = -1
    sync_fd: int = -1

    @property
    def bus_in(self) -> str:
        return private_endpoint(self.namespace, "bus-in")

    @property
    def bus_out(self) -> str:
        return private_endpoint(self.namespace, "bus-out")

    @property
    def life_in(self) -> str:
        """Ready and heartbeat reports: their own pipe, never queued behind events."""
        return private_endpoint(self.namespace, "life-in")

    def rpc_endpoint(self, actor: str) -> str:
        return private_endpoint(self.namespace, f"rpc/{actor}")


class Deferred:
    """Returned by `handle_request` when the reply comes later via `reply()`."""


DEFER = Deferred()


class Actor:
    """Base class: override the hooks; the runtime calls them from one thread."""

    # Event type prefixes this actor wants from the node's event fan-out.
    subscriptions: tuple[str, ...] = ()

    def __init__(self, name: str, env: NodeEnv, ctx: zmq.Context) -> None:
        self.name = name
        self.env = env
        self.ctx = ctx
        self.log = logs.get(actor=name, node=env.node_id, pid=os.getpid())
        self.counters: Counter[str] = Counter()
        self._rt: _Runtime | None = None

    # -- hooks ---------------------------------------------------------------
    def setup(self, now: float) -> None:
        """Create sockets (register them with `watch`) and restore state."""

    def handle_request(self, req: Request, now: float) -> Any:
        raise RpcError("unknown_op", f"{self.name} has no operation {req.op!r}")

    def on_event(self, event: dict[str, Any], now: float) -> None:
        """A cluster event from the bus (only types in `subscriptions`)."""

    def tick(self, now: float) -> None:
        """Run whatever is due; called after every wake-up."""

    def next_deadline(self) -> float | None:
        return None

    def shutdown(self, now: float) -> None:
        """Graceful stop: say goodbye, write snapshots."""

    def status(self) -> dict[str, Any]:
        """Extra fields for `lbcluster status`."""
        return {}

    def reload(self) -> None:
        """SIGHUP: re-read what may change at run time (the admitted keys)."""

    # -- services ------------------------------------------------------------
    @property
    def rt(self) -> _Runtime:
        assert self._rt is not None, "runtime not attached"
        return self._rt

    def watch(self, sock: zmq.Socket | int, handler: Callable[[float], None]) -> None:
        self.rt.handlers[sock] = handler
        self.rt.poller.register(sock, zmq.POLLIN)

    def unwatch(self, sock: zmq.Socket | int) -> None:
        self.rt.handlers.pop(sock, None)
        self.rt.poller.unregister(sock)

    def publish(self, event_type: str, node_id: str, data: dict[str, Any]) -> None:
        self.rt.push({"kind": "event", "event": make_event(event_type, node_id, data)})

    def publish_changed(self, states: Iterable[SyncableState]) -> None:
        """A `state.changed` event per state (validated states: their ids and rows are
        not walked again), as few bus messages as fit. Each event travels packed, so
        the supervisor stamps and publishes it without decoding and packing it again
        (`EventLog.publish_packed`)."""
        now = time.time()
        batch = [["state.changed", pack(make_event("state.changed", s.source_node,
                                                   changed_row(s), timestamp=now,
                                                   checked=True))]
                 for s in states]
        for start in range(0, len(batch), EVENTS_PER_MESSAGE):
            self.rt.push({"kind": "events.packed",
                          "events": batch[start:start + EVENTS_PER_MESSAGE]})

    def reply(self, req: Request, result: Any) -> None:
        send_frames(self.rt.rpc, reply_frames(req, result))

    def fail(self, req: Request, code: str, message: str) -> None:
        send_frames(self.rt.rpc, error_frames(req, code, message))

    def stop(self) -> None:
        """Ask the loop to finish (graceful: `shutdown` still runs)."""
        self.rt.running = False


class _Runtime:
    def __init__(self, actor: Actor, zygote_pid: int, stamps: Stamps | None = None) -> None:
        self.actor = actor
        self.zygote_pid = zygote_pid
        self.stamps = stamps
        self.running = True
        self.reload_requested = False
        self.poller = zmq.Poller()
        self.handlers: dict[Any, Callable[[float], None]] = {}
        ctx, env = actor.ctx, actor.env
        # The actor's own endpoint is abstract ipc: only processes of this machine reach
        # it (the node's own, and the SDK), so whole-state replies may be large.
        self.rpc = make_socket(ctx, zmq.ROUTER, maxmsgsize=LOCAL_LIMITS.max_message_bytes)
        bind(self.rpc, env.rpc_endpoint(actor.name))
        self.bus = make_socket(ctx, zmq.PUSH, hwm=10000, local=True)
        self.bus.connect(env.bus_in)
        # A burst of thousands of events must not delay the heartbeat behind it past
        # the supervisor's timeout (it would kill a busy, healthy actor as hung).
        self.life = make_socket(ctx, zmq.PUSH, hwm=100, local=True)
        self.life.connect(env.life_in)
        self.sub: zmq.Socket | None = None
        if actor.subscriptions:
            self.sub = make_socket(ctx, zmq.SUB, hwm=100000, local=True)
            for prefix in actor.subscriptions:
                self.sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
            self.sub.connect(env.bus_out)
        self.next_heartbeat = 0.0
        self.beat_s = actor_beat_interval(env.config.supervisor.heartbeat_timeout_s)
        self.beat_slack_s = self.beat_s * BEAT_SLACK
        self.trimmer = Trimmer()
        self.freezer = Freezer()

    def watch_signals(self) -> None:
        """A signal must wake the poll: pyzmq resumes polling after a handler runs."""
        wakeup = WakeupPipe(signals=True)
        self.poller.register(wakeup.fd, zmq.POLLIN)
        self.handlers[wakeup.fd] = lambda now: wakeup.drain()

    def push(self, body: dict[str, Any], sock: zmq.Socket | None = None) -> None:
        try:
            (sock or self.bus).send(pack(body), zmq.NOBLOCK)
        except zmq.Again:
            self.actor.counters["bus_dropped"] += 1

    def heartbeat(self, now: float) -> None:
        if now < self.next_heartbeat - self.beat_slack_s:  # early at a wake-up it had anyway
            return
        self.next_heartbeat = now + self.beat_s
        self.push({"kind": "heartbeat", "name": self.actor.name, "pid": os.getpid(),
                   "counters": dict(self.actor.counters), "status": self.actor.status()},
                  self.life)
        if os.getppid() != self.zygote_pid:
            self.actor.log.warning("supervisor gone; exiting")
            os._exit(1)
        self.trimmer.tick(now)

    def serve_rpc(self, now: float) -> None:
        # Bounded batches: a stream of requests must not starve heartbeats and timers.
        for _ in range(BATCH):
            frames = recv_frames(self.rpc)
            if frames is None:
                return
            try:
                req = parse_request_untrusted(frames, LOCAL_LIMITS)
            except RpcError as exc:
                self.actor.counters["rpc_malformed"] += 1
                self.actor.log.bind(reason=exc.code).debug("dropped malformed request")
                continue
            self.dispatch(req, now)

    def dispatch(self, req: Request, now: float) -> None:
        actor = self.actor
        try:
            match req.op:
                case "ping":
                    result: Any = {"name": actor.name, "pid": os.getpid()}
                case "counters":
                    result = dict(actor.counters)
                case _:
                    result = actor.handle_request(req, now)
        except RpcError as exc:
            if req.id:
                actor.fail(req, exc.code, exc.message)
            return
        except (ValueError, TypeError, KeyError) as exc:
            if req.id:
                actor.fail(req, "bad_request", str(exc))
            return
        if req.id and result is not DEFER:
            actor.reply(req, result)

    def read_events(self, now: float) -> None:
        assert self.sub is not None
        for _ in range(BATCH):
            frames = recv_frames(self.sub)
            if frames is None:
                return
            try:
                event = unpack_untrusted(frames[-1])
            except Exception:  # the bus is ours, but a bug must not kill the actor
                self.actor.counters["bus_malformed"] += 1
                continue
            if isinstance(event, dict):
                self.actor.on_event(event, now)

    def run(self) -> int:
        actor = self.actor
        self.poller.register(self.rpc, zmq.POLLIN)
        self.handlers[self.rpc] = self.serve_rpc
        if self.sub is not None:
            self.poller.register(self.sub, zmq.POLLIN)
            self.handlers[self.sub] = self.read_events
        actor.setup(time.monotonic())
        self.push({"kind": "ready", "name": actor.name, "pid": os.getpid()}, self.life)
        while self.running:
            now = time.monotonic()
            if self.stamps is not None:
                self.stamps.stamp(actor.name, now)
            self.heartbeat(now)
            deadline = wake_at(actor.next_deadline(), self.next_heartbeat, self.beat_slack_s)
            timeout_ms = max(0, int((deadline - now) * 1000) + 1)
            for sock, _ in self.poller.poll(timeout_ms):
                handler = self.handlers.get(sock)
                if handler is not None:
                    handler(time.monotonic())
            if self.reload_requested:
                self.reload_requested = False
                actor.reload()
            if self.freezer.tick():
                actor.counters["gc_freezes"] += 1
            actor.tick(time.monotonic())
        actor.shutdown(time.monotonic())
        return 0


def run_actor_process(actor_factory: Callable[[str, NodeEnv, zmq.Context], Actor],
                      env: NodeEnv, name: str, zygote_pid: int,
                      stamps: Stamps | None = None) -> int:
    """Entry point inside a freshly forked actor process."""
    logs.configure(env.config.log.level, env.config.log.json)
    set_title(name, env.node_id)
    ctx = zmq.Context()
    # Before any socket exists, or never: room for a peer pool, which dials through
    # this context rather than open another (see transport/peerpool.py).
    ctx.set(zmq.MAX_SOCKETS, sockets_for(MAX_PEERS))
    actor = actor_factory(name, env, ctx)
    runtime = _Runtime(actor, zygote_pid, stamps)
    actor._rt = runtime

    def on_term(signum: int, frame: Any) -> None:
        runtime.running = False

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, lambda *_: setattr(runtime, "reload_requested", True))
    runtime.watch_signals()
    try:
        return runtime.run()
    except Exception:
        actor.log.exception("actor crashed")
        return 1
    finally:
        ctx.destroy(linger=0)
