"""The node supervisor: one per node; owns every public socket, runs the actors.

Theory of operation
-------------------
* Before it creates any ZeroMQ context the supervisor binds and listens on
  the node's public TCP ports, gossip and sync, and forks the *zygote*
  (actors/node/zygote.py), which forks actor processes on request in a few
  milliseconds. Then it binds the events PUB and the control ROUTER.
* The membership and anti-entropy actors bind their ROUTERs onto the gossip
  and sync ports' listening descriptors, which they inherit
  (transport/sockets.py, `ZMQ_USE_FD`): a peer's message goes straight to
  the actor that handles it. The supervisor holds the ports for its whole
  life, so while such an actor restarts the kernel queues the peers'
  reconnections and their sockets queue their messages: to peers the node
  looks slow for a moment, never gone, and its port never refuses a
  connection until the supervisor itself dies. The membership actor's crash
  fast path relies on that.
* Actors PUSH events and heartbeats to the supervisor's bus. The event log
  (actors/node/eventlog.py) numbers each event and keeps the member table,
  so a `snapshot` is exactly consistent with a seq (the Clone pattern).
* Actor lifecycles (spawn, reap, restarts, liveness) are actors/node/lifecycle.py;
  the control socket (actors/node/control.py) forwards each op to the actor
  the plan's routing table names (actors/node/plan.py, routing.py).

This module composes those pieces and runs the poll loop.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from actors import logs
from actors.node.config import Config, ConfigError, advertised, http_address, load_config
from actors.node.control import ControlServer
from actors.node.eventlog import EventLog
from actors.node.lifecycle import Lifecycle
from actors.node.liveness import beat_interval
from actors.node.memory import Trimmer
from actors.node.plan import is_essential, make_actor, node_id_for, plan_actors, plan_routes
from actors.node.usage import process_of, usage_of
from actors.node.wakeup import WakeupPipe
from actors.node.zygote import Zygote, die_with_parent
from actors.runtime import BATCH, NodeEnv, run_actor_process
from transport.codec import LOCAL_LIMITS, DecodeError, unpack_untrusted
from transport.protocol import MemberStatus
from transport.rpc import AsyncClient, Request, RpcError, recv_frames
from transport.security import KeyPair, Keyring, load_keypair, secure_server
from transport.sockets import (
    BindError,
    Listener,
    bind,
    listen,
    make_run_folder,
    make_socket,
    private_umask,
    unix_socket_listening,
)
from transport.zap import ZapHandler

if TYPE_CHECKING:
    from actors.node.monitor import MonitorServer

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2
EVENTS_HWM = 10_000


class Supervisor:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        cfg.node.data_dir.mkdir(parents=True, exist_ok=True)
        self.node_id = node_id_for(cfg)
        self.log = logs.get(actor="supervisor", node=self.node_id)
        self.env = NodeEnv(cfg, self.node_id, f"{os.getpid()}-{os.urandom(3).hex()}")
        self.run_folder = make_run_folder(self.env.namespace)
        self.plan = plan_actors(cfg)
        self.routes = plan_routes(cfg, self.plan)
        self.stopping = False
        self.exit_code = EXIT_OK
        self.started = time.monotonic()
        self.counters: dict[str, int] = {"control_requests": 0, "bus_malformed": 0,
                                         "control_malformed": 0, "actors_hung": 0,
                                         "actors_wedged": 0}
        self.life = Lifecycle(self.plan, is_essential, cfg.supervisor,
                              lambda kind, data: self.events.emit(kind, data),
                              self.begin_stop, self.counters, self.log)
        self.reload_requested = False
        self.trimmer = Trimmer()
        self.beat_s = beat_interval(cfg.supervisor.heartbeat_timeout_s)
        self.keys: KeyPair | None = None
        self.keyring: Keyring | None = None
        sec = cfg.security
        if sec.enabled:
            public, secret, allowed = sec.key_files()
            self.keys = load_keypair(public, secret)
            self.keyring = Keyring(allowed)

    # -- startup -----------------------------------------------------------------
    def start(self) -> None:
        _refuse_if_running(self.cfg)
        self.listeners = self._listen()
        self.gossip_endpoint = self.listeners[0].endpoint
        self.sync_endpoint = self.listeners[1].endpoint
        self.env = replace(self.env, gossip_fd=self.listeners[0].fd,
                           sync_fd=self.listeners[1].fd)
        stamps = self.life.stamps
        self.zygote = Zygote(lambda name, zpid: run_actor_process(
            lambda n, env, ctx: make_actor(self.plan, n, env, ctx), self.env, name, zpid,
            stamps))
        try:
            self._bind_all()
        except BindError as exc:
            self.zygote.close()
            self._close_listeners()
            raise ConfigError(self.cfg.path, self._key_for(exc.endpoint), str(exc)) from None
        self.events = EventLog(self.node_id, (self.events_pub, self.bus_out))
        self.clients = {name: AsyncClient.connect(self.ctx, self.env.rpc_endpoint(name))
                        for name in self.plan}
        self.control = ControlServer(self.control_sock, self.routes, self.life, self.clients,
                                     self._local_ops(), self.counters)
        self.monitor = self._open_monitor()
        self.life.start(self.zygote, self.clients, time.monotonic())
        self.log.bind(gossip=self.gossip_endpoint).info("node started")

    def _listen(self) -> list[Listener]:
        """The gossip and sync ports, bound before any actor exists (a port in use is
        a config error at start) and held until the node stops."""
        opened: list[Listener] = []
        for endpoint in (self.cfg.network.gossip, self.cfg.network.sync):
            try:
                opened.append(listen(endpoint))
            except BindError as exc:
                for listener in opened:
                    listener.close()
                raise ConfigError(self.cfg.path, self._key_for(endpoint), str(exc)) from None
        return opened

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            listener.close()

    def _open_monitor(self) -> MonitorServer | None:
        """`[local] http`: /metrics and /health on their own threads; a port in use
        is a config error like any other bind. prometheus_client is imported only
        here, after the zygote forked: no actor carries it."""
        if self.cfg.local.http is None:
            return None
        from prometheus_client import CollectorRegistry

        from actors.node.metrics import NodeCollector, node_health
        from actors.node.monitor import MonitorServer

        registry = CollectorRegistry(auto_describe=False)
        registry.register(NodeCollector(self.node_id, self.events, self.life, self._counters))
        host, port = http_address(self.cfg.local.http)
        try:
            monitor = MonitorServer(host, port, registry,
                                    lambda: node_health(self.life, lambda: self.stopping))
        except OSError as exc:
            self.zygote.close()
            self._close_listeners()
            raise ConfigError(self.cfg.path, "local.http", f"cannot listen on "
                              f"{self.cfg.local.http}: {exc.strerror or exc}") from None
        monitor.start()
        return monitor

    def _counters(self) -> dict[str, int]:
        monitor = getattr(self, "monitor", None)
        return {**self.counters, "events": self.events.seq,
                **(monitor.counters if monitor is not None else {})}

    def _key_for(self, endpoint: str) -> str:
        net, loc = self.cfg.network, self.cfg.local
        keys = {net.gossip: "network.gossip", net.sync: "network.sync",
                loc.events: "local.events", loc.control: "local.control"}
        return keys.get(endpoint, "network")

    def _bind_all(self) -> None:
        self.ctx = zmq.Context()
        cfg, env = self.cfg, self.env
        # Per subscriber: one that stops reading holds at most this many events here
        # (a few MiB); past it, it misses events and resynchronises with `snapshot`.
        self.events_pub = make_socket(self.ctx, zmq.PUB, hwm=EVENTS_HWM)
        self.zap: ZapHandler | None = None
        if self.keys is not None and self.keyring is not None and \
                cfg.local.events.startswith("tcp://"):
            # ZAP for the events PUB's CURVE; the gossip and sync actors answer their own.
            self.zap = ZapHandler(self.ctx, self.keyring, self.counters)
            secure_server(self.events_pub, self.keys)
        self.bus_out = make_socket(self.ctx, zmq.PUB, hwm=100000)
        self.bus_in = make_socket(self.ctx, zmq.PULL, hwm=100000,
                                  maxmsgsize=LOCAL_LIMITS.max_message_bytes)
        self.control_sock = make_socket(self.ctx, zmq.ROUTER)
        self.control_sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        bind(self.events_pub, cfg.local.events)
        with private_umask():
            bind(self.control_sock, cfg.local.control)
        self.life_in = make_socket(self.ctx, zmq.PULL, hwm=10000,
                                   maxmsgsize=LOCAL_LIMITS.max_message_bytes)
        bind(self.bus_out, env.bus_out)
        bind(self.bus_in, env.bus_in)
        bind(self.life_in, env.life_in)

    # -- the bus -----------------------------------------------------------------
    def _on_bus(self, sock: zmq.Socket, now: float) -> None:
        for _ in range(BATCH):  # bounded: the loop must get back to its checks
            if (frames := recv_frames(sock)) is None:
                return
            try:
                msg = unpack_untrusted(frames[-1], LOCAL_LIMITS)
            except DecodeError:
                self.counters["bus_malformed"] += 1
                continue
            if not isinstance(msg, dict):
                continue
            match msg.get("kind"):
                case "event" if isinstance(msg.get("event"), dict):
                    self.events.publish(msg["event"])
                case "events.packed":
                    self.events.publish_packed_many(msg.get("events"))
                case "heartbeat":
                    self.life.on_heartbeat(msg, now)
                case "ready":
                    self.life.on_ready(msg, now)

    # -- the supervisor's own control ops ---------------------------------------------
    def _local_ops(self) -> dict[str, Any]:
        return {
            "ping": lambda req, now: {"node_id": self.node_id, "pid": os.getpid()},
            "status": lambda req, now: self.status(),
            "snapshot": lambda req, now: {"seq": self.events.seq, "node_id": self.node_id,
                                          "members": self.member_rows(),
                                          "actors": self.life.rows()},
            "stop": self._stop_op,
            "leave": self._leave,
        }

    def _stop_op(self, req: Request, now: float) -> dict[str, Any]:
        self.begin_stop(EXIT_OK)
        return {"stopping": True}

    def _leave(self, req: Request, now: float) -> None:
        def done(result: Any) -> None:
            self.control.reply(req, {"left": not isinstance(result, RpcError)})
            self.begin_stop(EXIT_OK)

        if "membership" in self.plan:
            self.control.forward("membership", "leave", {}, now, done, done)
        else:
            done({})

    def member_rows(self) -> list[dict[str, Any]]:
        membership = self.life.actors.get("membership")
        net = self.cfg.network
        return self.events.member_rows({
            "node_id": self.node_id, "address": advertised(net.gossip, net.advertise_host),
            "metadata": dict(self.cfg.node.metadata), "status": MemberStatus.ALIVE,
            "incarnation": membership.status.get("incarnation") if membership else None})

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        own = {"name": "supervisor", "pid": os.getpid(), "ready": True, "restarts": 0,
               "state": "ready", "counters": self._counters(),
               "status": {}}
        own.update(usage_of(process_of(os.getpid())))
        return {"node_id": self.node_id, "cluster": self.cfg.node.cluster,
                "gossip": self.gossip_endpoint, "sync": self.sync_endpoint,
                "events": self.cfg.local.events, "uptime_s": round(now - self.started, 3),
                "seq": self.events.seq, "degraded": self.life.degraded(),
                "actors": [own, *self.life.status_rows(now)]}

    # -- loop --------------------------------------------------------------------
    def run(self) -> int:
        wakeup = WakeupPipe(signals=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.begin_stop(EXIT_OK))
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "reload_requested", True))
        poller = zmq.Poller()
        handlers: dict[Any, Any] = {
            self.life_in: functools.partial(self._on_bus, self.life_in),
            self.bus_in: functools.partial(self._on_bus, self.bus_in),
            self.control_sock: self.control.on_readable,
            self.zygote.event_fd: self.life.on_zygote}
        if self.zap is not None:
            handlers[self.zap.sock] = self.zap.handle
        for client in self.clients.values():
            handlers[client.sock] = functools.partial(_on_readable, client)
        for sock in (*handlers, wakeup.fd):
            poller.register(sock, zmq.POLLIN)
        while not self.stopping:
            for sock, _ in poller.poll(self._wait_ms(time.monotonic())):
                if sock == wakeup.fd:
                    wakeup.drain()
                elif sock in handlers:
                    handlers[sock](time.monotonic())
            now = time.monotonic()
            if self.reload_requested:
                self._reload()
            self.life.check(now)
            for client in self.clients.values():
                client.expire(now)
            self.trimmer.tick(now)
        return self._shutdown()

    def _wait_ms(self, now: float) -> int:
        """Sleep until the next restart or request deadline, or the next liveness check
        (`beat_interval`): an idle supervisor wakes about once a second."""
        deadlines = [now + self.beat_s]
        if (due := self.life.next_deadline()) is not None:
            deadlines.append(due)
        deadlines += [d for c in self.clients.values() if (d := c.next_deadline()) is not None]
        return max(0, int((min(deadlines) - now) * 1000) + 1)

    def _reload(self) -> None:
        """SIGHUP: re-read the admitted keys here and in every actor."""
        self.reload_requested = False
        if self.keyring is not None:
            self.keyring.reload()
        self.life.signal_all(signal.SIGHUP)
        self.log.info("reloaded keys")

    def begin_stop(self, code: int) -> None:
        if not self.stopping:
            self.stopping = self.life.stopping = True
            self.exit_code = code

    def _shutdown(self) -> int:
        if self.monitor is not None:
            self.monitor.close()
        self.life.shutdown("membership", self.cfg.supervisor.stop_grace_s)
        self._on_bus(self.bus_in, time.monotonic())
        self.zygote.close()
        for client in self.clients.values():
            client.close()
        for sock in (self.events_pub, self.bus_out, self.bus_in, self.life_in,
                     self.control_sock):
            sock.close(linger=0)
        if self.zap is not None:
            self.zap.close()
        self._close_listeners()
        self.ctx.term()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.cfg.local.control[len("ipc://"):])
        shutil.rmtree(self.run_folder, ignore_errors=True)
        self.log.bind(code=self.exit_code).info("node stopped")
        return self.exit_code


def _on_readable(client: AsyncClient, now: float) -> None:
    client.on_readable()


def _refuse_if_running(cfg: Config) -> None:
    """An ipc bind silently steals a live node's socket file: check first."""
    path = cfg.local.control[len("ipc://"):]
    if not os.path.exists(path):
        return
    if unix_socket_listening(path):
        raise ConfigError(cfg.path, "local.control", f"a node is already running on {path}")
    os.unlink(path)  # stale file of a node that died


def _follow_parent() -> None:
    """Under a test harness (LBCLUSTER_PARENT_PID set), stop gracefully when the
    harness dies, so a killed test run leaves no node behind."""
    parent = os.environ.get("LBCLUSTER_PARENT_PID")
    if parent and parent.isdigit():
        die_with_parent(int(parent), signal.SIGTERM)


def _raise_fd_limit(want: int = 65_536) -> None:
    """Lift the soft descriptor limit toward the hard one (as Go's runtime does): each
    peer costs the membership actor a few descriptors, and a distribution's default
    soft limit of 1,024 is below what MAX_PEERS may use. Actors inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run_node(config_path: str | Path) -> int:
    """`lbcluster run -c FILE`: exit 0 after a clean stop, 1 on failure, 2 on bad config."""
    _follow_parent()
    _raise_fd_limit()
    try:
        cfg = load_config(config_path)
        logs.configure(cfg.log.level, cfg.log.json)
        sup = Supervisor(cfg)
        from actors.node.proctitle import set_title  # here: keeps this edit inside run_node
        set_title("supervisor", sup.node_id)  # before the zygote forks: it inherits the id
        sup.start()
    except ConfigError as exc:
        print(f"lbcluster: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"lbcluster: {config_path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    return sup.run()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="supervisor.py", description="Run one lbcluster node.")
    parser.add_argument("-c", "--config", required=True, help="node config file (TOML)")
    args = parser.parse_args(argv)
    return run_node(args.config)


if __name__ == "__main__":
    sys.exit(main())
