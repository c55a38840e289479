"""The node supervisor: one per node; owns every public socket, runs the actors.

Theory of operation
-------------------
* Before it creates any ZeroMQ context the supervisor forks the *zygote*
  (actors/node/zygote.py), which forks actor processes on request in a few
  milliseconds. Then it binds the node's public face: the gossip and sync
  ROUTERs (TCP, what peers dial), the events PUB and the control ROUTER.
* The gossip and sync ROUTERs are forwarded to the actors over ipc by
  `zmq.proxy` threads (C code, no GIL). The backend is a PUSH that
  *connects* to the actor's endpoint, so while an actor restarts its
  messages wait in the queue: to peers the node looks slow for a moment,
  never gone, and its port never refuses a connection until the supervisor
  itself dies. The membership actor's crash fast path relies on that.
* Actors PUSH events and heartbeats to the supervisor's bus. The supervisor
  stamps each event with ``source`` and a per-node ``seq`` and publishes it
  both publicly and to the actors; it keeps the member and actor tables the
  events describe, so a control-socket snapshot is exactly consistent with
  a seq (the ZeroMQ guide's Clone pattern).
* Restarts are one-for-one with the policy of actors/node/restart.py; an
  actor that stops heartbeating is killed and restarted like a dead one.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import zmq
from loguru import logger

from actors.node.config import Config, ConfigError, advertised, load_config
from actors.node.gateway import open_gateway
from actors.node.liveness import Stamps, beat_interval, liveness_verdict
from actors.node.memory import Trimmer
from actors.node.plan import make_actor, node_id_for, plan_actors
from actors.node.restart import GiveUp, RestartPolicy
from actors.node.usage import process_of, usage_of
from actors.node.zygote import Zygote, die_with_parent
from actors.runtime import BATCH, NodeEnv, configure_logging, run_actor_process
from transport.codec import LOCAL_LIMITS, DecodeError, pack, unpack_untrusted
from transport.protocol import make_event
from transport.rpc import (
    AsyncClient,
    Request,
    RpcError,
    error_frames,
    parse_request_untrusted,
    reply_frames,
)
from transport.security import KeyPair, Keyring, NodeAuthenticator, load_keypair, secure_server
from transport.sockets import (
    BindError,
    bind,
    make_run_folder,
    make_socket,
    private_umask,
    unix_socket_listening,
)

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2
FORWARD_TIMEOUT_S = 5.0
EVENTS_HWM = 10_000


@dataclass
class ActorState:
    name: str
    pid: int | None = None
    ready: bool = False
    restarts: int = 0
    history: list[float] = field(default_factory=list)
    spawned_at: float = 0.0
    exited_at: float | None = None
    last_heartbeat: float = 0.0
    restart_at: float | None = None
    counters: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    proc: psutil.Process | None = None


class Supervisor:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        cfg.node.data_dir.mkdir(parents=True, exist_ok=True)
        self.node_id = node_id_for(cfg)
        self.env = NodeEnv(cfg, self.node_id, f"{os.getpid()}-{os.urandom(3).hex()}")
        self.run_folder = make_run_folder(self.env.namespace)
        self.plan = plan_actors(cfg)
        self.actors = {name: ActorState(name) for name in self.plan}
        self.policy = RestartPolicy(cfg.supervisor.max_restarts,
                                    cfg.supervisor.max_restarts_window_s)
        self.seq = 0
        self.members: dict[str, dict[str, Any]] = {}
        self.stopping = False
        self.exit_code = EXIT_OK
        self.started = time.monotonic()
        self.counters: dict[str, int] = {"events": 0, "control_requests": 0,
                                         "bus_malformed": 0, "control_malformed": 0,
                                         "actors_hung": 0, "actors_wedged": 0}
        self.last_check = time.monotonic()
        self.reload_requested = False
        self.trimmer = Trimmer()
        self.beat_s = beat_interval(cfg.supervisor.heartbeat_timeout_s)
        self.keys: KeyPair | None = None
        self.keyring: Keyring | None = None
        sec = cfg.security
        if sec.curve_public_key_file and sec.curve_secret_key_file and sec.allowed_keys_dir:
            self.keys = load_keypair(sec.curve_public_key_file, sec.curve_secret_key_file)
            self.keyring = Keyring(sec.allowed_keys_dir)

    # -- startup -----------------------------------------------------------------
    def start(self) -> None:
        _refuse_if_running(self.cfg)
        # Before the zygote forks: every actor inherits the same shared page.
        self.stamps = Stamps(list(self.actors))
        self.zygote = Zygote(lambda name, zpid: run_actor_process(
            lambda n, env, ctx: make_actor(self.plan, n, env, ctx), self.env, name, zpid,
            self.stamps))
        try:
            self._bind_all()
        except BindError as exc:
            self.zygote.close()
            raise ConfigError(self.cfg.path, self._key_for(exc.endpoint), str(exc)) from None
        for state in self.actors.values():
            self._spawn(state, time.monotonic())
        logger.bind(node=self.node_id, gossip=self.gossip_endpoint).info("node started")

    def _key_for(self, endpoint: str) -> str:
        net, loc = self.cfg.network, self.cfg.local
        keys = {net.gossip: "network.gossip", net.sync: "network.sync",
                loc.events: "local.events", loc.control: "local.control"}
        return keys.get(endpoint, "network")

    def _bind_all(self) -> None:
        self.ctx = zmq.Context()
        cfg, env = self.cfg, self.env
        self.auth: NodeAuthenticator | None = None
        if self.keyring is not None:
            self.auth = NodeAuthenticator(self.ctx, self.keyring)
            self.auth.start()
        # Per subscriber: one that stops reading holds at most this many events here
        # (a few MiB); past it, it misses events and resynchronises with `snapshot`.
        self.events = make_socket(self.ctx, zmq.PUB, hwm=EVENTS_HWM)
        if self.keys is not None and cfg.local.events.startswith("tcp://"):
            secure_server(self.events, self.keys)
        self.bus_out = make_socket(self.ctx, zmq.PUB, hwm=100000)
        self.bus_in = make_socket(self.ctx, zmq.PULL, hwm=100000,
                                  maxmsgsize=LOCAL_LIMITS.max_message_bytes)
        self.control = make_socket(self.ctx, zmq.ROUTER)
        self.control.setsockopt(zmq.ROUTER_MANDATORY, 0)
        bind(self.events, cfg.local.events)
        with private_umask():
            bind(self.control, cfg.local.control)
        self.life_in = make_socket(self.ctx, zmq.PULL, hwm=10000,
                                   maxmsgsize=LOCAL_LIMITS.max_message_bytes)
        bind(self.bus_out, env.bus_out)
        bind(self.bus_in, env.bus_in)
        bind(self.life_in, env.life_in)
        self.gossip_endpoint = open_gateway(self.ctx, cfg.network.gossip, env.gossip_in,
                                            "gossip", self.keys, self.keyring, self.counters)
        self.sync_endpoint = open_gateway(self.ctx, cfg.network.sync, env.sync_in, "sync",
                                          self.keys, self.keyring, self.counters)
        self.clients = {name: AsyncClient.connect(self.ctx, env.rpc_endpoint(name))
                        for name in self.actors}

    # -- actors ------------------------------------------------------------------
    def _spawn(self, state: ActorState, now: float) -> None:
        state.spawned_at, state.ready, state.restart_at = now, False, None
        state.pid, state.counters, state.status = None, {}, {}
        self.zygote.spawn(state.name)

    def _by_pid(self, pid: int) -> ActorState | None:
        return next((a for a in self.actors.values() if a.pid == pid), None)

    def _on_zygote(self, now: float) -> None:
        for msg in self.zygote.events.read():
            match msg.get("op"):
                case "spawned":
                    state = self.actors[msg["name"]]
                    state.pid, state.last_heartbeat = msg["pid"], now
                    state.proc = None
                case "spawn_failed":
                    logger.bind(actor=msg["name"], error=msg["error"]).error("fork failed")
                    self._actor_died(self.actors[msg["name"]], None, None, now)
                case "exited":
                    dead = self._by_pid(msg["pid"])
                    if dead is not None:
                        self._actor_died(dead, msg["code"], msg["signal"], now)
        if self.zygote.events.eof and not self.stopping:
            logger.error("zygote died; every actor died with it; stopping")
            self._begin_stop(EXIT_ERROR)

    def _actor_died(self, state: ActorState, code: int | None, sig: int | None,
                    now: float) -> None:
        pid, state.pid, state.ready, state.exited_at = state.pid, None, False, now
        # Requests it was serving died with it: say so now rather than at their timeout.
        self.clients[state.name].fail_all("unavailable", f"{state.name} restarted; retry")
        self.emit("actor.exited", {"actor": state.name, "pid": pid, "exit_code": code,
                                   "signal": sig, "restarts": state.restarts})
        if self.stopping:
            return
        logger.bind(actor=state.name, pid=pid, code=code, signal=sig).warning("actor exited")
        verdict = self.policy.decide(tuple(state.history), now)
        if isinstance(verdict, GiveUp):
            self.emit("actor.gave_up", {"actor": state.name, "restarts": state.restarts,
                                        "window_s": self.policy.window_s})
            logger.bind(actor=state.name, restarts=verdict.restarts_in_window).error(
                "actor keeps dying; giving up and stopping the node")
            self._begin_stop(EXIT_ERROR)
            return
        state.history.append(now)
        state.restart_at = now + verdict.delay_s

    def _on_ready(self, msg: dict[str, Any], now: float) -> None:
        state = self.actors.get(str(msg.get("name")))
        if state is None or state.pid != msg.get("pid"):
            return
        state.ready, state.last_heartbeat = True, now
        data = {"actor": state.name, "pid": state.pid, "restarts": state.restarts}
        self.emit("actor.started", data)
        if state.restarts and state.exited_at is not None:
            self.emit("actor.restarted",
                      {**data, "downtime_ms": round((now - state.exited_at) * 1000, 2)})

    def _check_actors(self, now: float) -> None:
        timeout = self.cfg.supervisor.heartbeat_timeout_s
        if now - self.last_check > timeout / 2:
            # We were paused (SIGSTOP, a stalled VM): the actors were too, so
            # their silence says nothing. Start their heartbeat clocks afresh.
            for state in self.actors.values():
                state.last_heartbeat = now
        self.last_check = now
        for state in self.actors.values():
            if state.restart_at is not None and now >= state.restart_at and not self.stopping:
                state.restarts += 1
                self._spawn(state, now)
            elif state.pid:
                verdict = liveness_verdict(now, state.last_heartbeat,
                                           self.stamps.read(state.name), timeout)
                if verdict is not None:
                    logger.bind(actor=state.name, pid=state.pid).warning(
                        f"actor {verdict}; killing it")
                    self.counters[f"actors_{verdict}"] += 1
                    _kill(state.pid, signal.SIGKILL)
                    state.last_heartbeat = now  # one kill per timeout; the exit report follows

    def _last_sign(self, state: ActorState) -> float:
        """When the actor was last seen alive: its heartbeat or its loop's stamp (which
        a flood cannot delay; see actors.node.liveness)."""
        return max(state.last_heartbeat, self.stamps.read(state.name))

    # -- events ------------------------------------------------------------------
    def emit(self, event_type: str, data: dict[str, Any], node_id: str | None = None) -> None:
        self.publish(make_event(event_type, node_id or self.node_id, data))

    def publish(self, event: dict[str, Any]) -> None:
        self.seq += 1
        event = {**event, "source": self.node_id, "seq": self.seq}
        self._track(event)
        frames = [str(event["type"]).encode(), pack(event)]
        for sock in (self.events, self.bus_out):
            with contextlib.suppress(zmq.Again):
                sock.send_multipart(frames, zmq.NOBLOCK)
        self.counters["events"] += 1

    def _track(self, event: dict[str, Any]) -> None:
        kind, data = str(event.get("type")), event.get("data")
        if kind.startswith("node.") and isinstance(data, dict) and "node_id" in data:
            self.members[str(data["node_id"])] = data

    def _on_life(self, now: float) -> None:
        self._on_bus(now, self.life_in)

    def _on_bus(self, now: float, sock: zmq.Socket | None = None) -> None:
        sock = sock or self.bus_in
        for _ in range(BATCH):  # bounded: the loop must get back to its checks
            if not sock.poll(0, zmq.POLLIN):
                return
            try:
                msg = unpack_untrusted(sock.recv(), LOCAL_LIMITS)
            except DecodeError:
                self.counters["bus_malformed"] += 1
                continue
            if not isinstance(msg, dict):
                continue
            match msg.get("kind"):
                case "event" if isinstance(msg.get("event"), dict):
                    self.publish(msg["event"])
                case "heartbeat":
                    self._on_heartbeat(msg, now)
                case "ready":
                    self._on_ready(msg, now)

    def _on_heartbeat(self, msg: dict[str, Any], now: float) -> None:
        state = self.actors.get(str(msg.get("name")))
        if state is not None and state.pid == msg.get("pid"):
            state.last_heartbeat = now
            state.counters = msg.get("counters") or {}
            state.status = msg.get("status") or {}
            if not state.ready:
                # Its "ready" beat the zygote's "spawned" report here and was
                # dropped for an unknown pid; heartbeats only start after setup.
                self._on_ready(msg, now)

    # -- control -----------------------------------------------------------------
    def _on_control(self, now: float) -> None:
        for _ in range(BATCH):
            if not self.control.poll(0, zmq.POLLIN):
                return
            frames = self.control.recv_multipart()
            try:
                req = parse_request_untrusted(frames)
            except RpcError:
                self.counters["control_malformed"] += 1
                continue
            self.counters["control_requests"] += 1
            try:
                result = self._control(req, now)
            except RpcError as exc:
                self.control.send_multipart(error_frames(req, exc.code, exc.message))
                continue
            if result is not None:
                self.control.send_multipart(reply_frames(req, result))

    def _control(self, req: Request, now: float) -> Any:
        match req.op:
            case "ping":
                return {"node_id": self.node_id, "pid": os.getpid()}
            case "status":
                return self.status()
            case "snapshot":
                return {"seq": self.seq, "node_id": self.node_id,
                        "members": self._member_rows(), "actors": self._actor_rows()}
            case "stop":
                self._begin_stop(EXIT_OK)
                return {"stopping": True}
            case "leave":
                return self._leave(req, now)
        return self._forward(req, now)

    def _route(self, op: str) -> tuple[str, str]:
        """The actor that serves a control op, and the op as that actor names it."""
        if op.startswith("provider."):
            kind, _, inner = op[len("provider."):].partition(".")
            if kind and inner:
                return f"provider.{kind}", inner
        if op.startswith("kv."):
            return "provider.kv", op[len("kv."):]
        if op == "members" or op.startswith("metadata."):
            return "membership", op
        if op in ("state", "attach", "local"):  # "attach"/"local": SDK-hosted providers
            return "anti_entropy", op
        raise RpcError("unknown_op", f"no such operation: {op}")

    def _forward(self, req: Request, now: float) -> None:
        target, op = self._route(req.op)
        if target not in self.actors:
            raise RpcError("unavailable", f"this node runs no {target} actor")

        def done(result: Any, error: RpcError | None) -> None:
            if error is not None:
                self.control.send_multipart(error_frames(req, error.code, error.message))
            else:
                self.control.send_multipart(reply_frames(req, result))

        self.clients[target].request(op, req.args, now, FORWARD_TIMEOUT_S, done)

    def _leave(self, req: Request, now: float) -> None:
        def done(result: Any, error: RpcError | None) -> None:
            self.control.send_multipart(reply_frames(req, {"left": error is None}))
            self._begin_stop(EXIT_OK)

        if "membership" in self.actors:
            self.clients["membership"].request("leave", {}, now, FORWARD_TIMEOUT_S, done)
        else:
            done({}, None)
        return None

    def _member_rows(self) -> list[dict[str, Any]]:
        """Members as the events told them; this node itself is never the subject of a
        join event, so it is added from what the supervisor knows of it."""
        rows = dict(self.members)
        if self.node_id not in rows:
            membership = self.actors.get("membership")
            incarnation = membership.status.get("incarnation") if membership else None
            net = self.cfg.network
            rows[self.node_id] = {
                "node_id": self.node_id, "address": advertised(net.gossip, net.advertise_host),
                "metadata": dict(self.cfg.node.metadata), "status": "alive",
                "incarnation": incarnation}
        return sorted(rows.values(), key=lambda r: str(r["node_id"]))

    def _actor_rows(self) -> list[dict[str, Any]]:
        return [{"name": a.name, "pid": a.pid, "ready": a.ready, "restarts": a.restarts}
                for a in self.actors.values()]

    def status(self) -> dict[str, Any]:
        rows = []
        for a in self.actors.values():
            row: dict[str, Any] = {**{k: v for k, v in vars(a).items()
                                      if k in ("name", "pid", "ready", "restarts")},
                                   "counters": a.counters, "status": a.status,
                                   "heartbeat_age_s": round(time.monotonic() - self._last_sign(a),
                                                            3) if a.pid else None}
            if a.pid and (a.proc is None or a.proc.pid != a.pid):
                a.proc = process_of(a.pid)
            row.update(usage_of(a.proc if a.pid else None))
            rows.append(row)
        own = {"name": "supervisor", "pid": os.getpid(), "ready": True, "restarts": 0,
               "counters": self.counters, "status": {}}
        own.update(usage_of(psutil.Process()))
        return {"node_id": self.node_id, "cluster": self.cfg.node.cluster,
                "gossip": self.gossip_endpoint, "sync": self.sync_endpoint,
                "events": self.cfg.local.events, "uptime_s": round(time.monotonic()
                                                                   - self.started, 3),
                "seq": self.seq, "actors": [own, *rows]}

    # -- loop --------------------------------------------------------------------
    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._begin_stop(EXIT_OK))
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "reload_requested", True))
        poller = zmq.Poller()
        handlers = {self.life_in: self._on_life, self.bus_in: self._on_bus,
                    self.control: self._on_control, self.zygote.event_fd: self._on_zygote}
        for client in self.clients.values():
            handlers[client.sock] = functools.partial(_on_readable, client)
        for sock in (*handlers, wake_r):
            poller.register(sock, zmq.POLLIN)
        while not self.stopping:
            for sock, _ in poller.poll(self._wait_ms(time.monotonic())):
                if sock == wake_r:
                    _drain(wake_r)
                elif sock in handlers:
                    handlers[sock](time.monotonic())
            now = time.monotonic()
            if self.reload_requested:
                self._reload()
            self._check_actors(now)
            for client in self.clients.values():
                client.expire(now)
            self.trimmer.tick(now)
        return self._shutdown()

    def _wait_ms(self, now: float) -> int:
        """Sleep until the next restart or request deadline, or the next liveness check
        (`beat_interval`): an idle supervisor wakes about once a second."""
        deadlines = [now + self.beat_s]
        deadlines += [s.restart_at for s in self.actors.values() if s.restart_at is not None]
        deadlines += [d for c in self.clients.values() if (d := c.next_deadline()) is not None]
        return max(0, int((min(deadlines) - now) * 1000) + 1)

    def _reload(self) -> None:
        """SIGHUP: re-read the admitted keys here and in every actor."""
        self.reload_requested = False
        if self.auth is not None:
            self.auth.refresh()
        for state in self.actors.values():
            if state.pid:
                _kill(state.pid, signal.SIGHUP)
        logger.bind(node=self.node_id).info("reloaded keys")

    def _begin_stop(self, code: int) -> None:
        if not self.stopping:
            self.stopping = True
            self.exit_code = code

    def _shutdown(self) -> int:
        """Membership first (it says goodbye), then the rest; TERM, grace, KILL."""
        grace = self.cfg.supervisor.stop_grace_s
        first = [a for a in self.actors.values() if a.name == "membership"]
        rest = [a for a in self.actors.values() if a.name != "membership"]
        for group, wait_s in ((first, min(1.0, grace)), (rest, grace)):
            for state in group:
                if state.pid:
                    _kill(state.pid, signal.SIGTERM)
            self._await_exits(group, wait_s)
        for state in self.actors.values():
            if state.pid:
                _kill(state.pid, signal.SIGKILL)
        self._await_exits(list(self.actors.values()), 1.0)
        self._on_bus(time.monotonic())
        self.zygote.close()
        for client in self.clients.values():
            client.close()
        for sock in (self.events, self.bus_out, self.bus_in, self.life_in, self.control):
            sock.close(linger=0)
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.cfg.local.control[len("ipc://"):])
        shutil.rmtree(self.run_folder, ignore_errors=True)
        logger.bind(node=self.node_id, code=self.exit_code).info("node stopped")
        return self.exit_code

    def _await_exits(self, group: list[ActorState], wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while any(a.pid for a in group) and time.monotonic() < deadline:
            if not self.zygote.events.eof:
                with contextlib.suppress(InterruptedError, OSError):
                    import select

                    select.select([self.zygote.event_fd], [], [], 0.05)
            self._on_zygote(time.monotonic())
            if self.zygote.events.eof:
                break


def _on_readable(client: AsyncClient, now: float) -> None:
    client.on_readable()


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass


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
        configure_logging(cfg)
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
    try:
        return sup.run()
    finally:
        logger.complete()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="supervisor.py", description="Run one lbcluster node.")
    parser.add_argument("-c", "--config", required=True, help="node config file (TOML)")
    args = parser.parse_args(argv)
    return run_node(args.config)


if __name__ == "__main__":
    sys.exit(main())
