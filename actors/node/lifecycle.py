"""Actor lifecycles: spawn through the zygote, reap, restart, liveness checks.

The table here is the supervisor's view of each actor: its pid, whether it
said it is ready, the counters and status its last heartbeat carried, and
its `RestartBook` (actors.node.restart decides restarts and giving up). An
actor that stops heartbeating is killed and then handled like any dead one.
Giving up on an essential actor stops the node (`stop` callback); any other
is given up alone, its requests answered "unavailable" until its retry.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actors import logs
from actors.node.config import SupervisorSection
from actors.node.liveness import Stamps, liveness_timeout, liveness_verdict
from actors.node.restart import GiveUp, RestartBook, RestartPolicy
from actors.node.usage import process_of, usage_of
from actors.node.zygote import Zygote
from transport.rpc import AsyncClient

if TYPE_CHECKING:  # imported at the first status call (actors.node.usage)
    import psutil

Emit = Callable[[str, dict[str, Any]], None]
EXIT_ERROR = 1


@dataclass
class ActorState:
    name: str
    book: RestartBook
    pid: int | None = None
    ready: bool = False
    exited_at: float | None = None
    last_heartbeat: float = 0.0
    counters: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    proc: psutil.Process | None = None  # cached for cpu_percent between status calls

    @property
    def state(self) -> str:
        """ready, starting, restarting or degraded (given up, waiting for its retry)."""
        if self.ready:
            return "ready"
        if self.book.given_up:
            return "degraded"
        return "starting" if self.pid else "restarting"


class Lifecycle:
    def __init__(self, names: Iterable[str], essential: Callable[[str], bool],
                 cfg: SupervisorSection, emit: Emit, stop: Callable[[int], None],
                 counters: dict[str, int], log: logs.Log | None = None) -> None:
        self.cfg = cfg
        self.log = log or logs.get(actor="supervisor")
        self.policy = RestartPolicy(cfg.max_restarts, cfg.max_restarts_window_s)
        self.actors = {n: ActorState(n, RestartBook(None if essential(n) else cfg.provider_retry_s))
                       for n in names}
        self.emit, self.stop, self.counters = emit, stop, counters
        self.stopping = False
        self.last_check = 0.0
        # Before the zygote forks: every actor inherits the same shared page.
        self.stamps = Stamps(list(self.actors))
        self.zygote: Zygote | None = None
        self.clients: dict[str, AsyncClient] = {}

    def start(self, zygote: Zygote, clients: dict[str, AsyncClient], now: float) -> None:
        self.zygote, self.clients, self.last_check = zygote, clients, now
        for state in self.actors.values():
            self._spawn(state, now)

    def _spawn(self, state: ActorState, now: float) -> None:
        assert self.zygote is not None
        state.ready = False
        state.pid, state.counters, state.status = None, {}, {}
        self.zygote.spawn(state.name)

    # -- reports from the zygote and the actors ----------------------------------------
    def on_zygote(self, now: float) -> None:
        assert self.zygote is not None
        for msg in self.zygote.events.read():
            match msg.get("op"):
                case "spawned":
                    state = self.actors[msg["name"]]
                    state.pid, state.last_heartbeat, state.proc = msg["pid"], now, None
                case "spawn_failed":
                    self.log.bind(actor=msg["name"], error=msg["error"]).error("fork failed")
                    self._died(self.actors[msg["name"]], None, None, now)
                case "exited":
                    dead = next((a for a in self.actors.values() if a.pid == msg["pid"]), None)
                    if dead is not None:
                        self._died(dead, msg["code"], msg["signal"], now)
        if self.zygote.events.eof and not self.stopping:
            self.log.error("zygote died; every actor died with it; stopping")
            self.stop(EXIT_ERROR)

    def _died(self, state: ActorState, code: int | None, sig: int | None, now: float) -> None:
        pid, state.pid, state.ready, state.exited_at = state.pid, None, False, now
        # Requests it was serving died with it: say so now rather than at their timeout.
        self.clients[state.name].fail_all("unavailable", f"{state.name} restarted; retry")
        book = state.book
        self.emit("actor.exited", {"actor": state.name, "pid": pid, "exit_code": code,
                                   "signal": sig, "restarts": book.restarts})
        if self.stopping:
            return
        self.log.bind(actor=state.name, pid=pid, code=code, signal=sig).warning("actor exited")
        verdict = book.died(self.policy, now)
        if not isinstance(verdict, GiveUp):
            return
        data: dict[str, Any] = {"actor": state.name, "restarts": book.restarts,
                                "window_s": self.policy.window_s}
        if book.retry_s is None:
            self.emit("actor.gave_up", data)
            self.log.bind(actor=state.name, restarts=verdict.restarts_in_window).error(
                "actor keeps dying; giving up and stopping the node")
            self.stop(EXIT_ERROR)
            return
        self.emit("actor.gave_up", {**data, "retry_in_s": book.retry_s, "retries": book.retries})
        self.log.bind(actor=state.name, retry_in_s=book.retry_s).error(
            "actor keeps dying; given up alone, will retry")

    def on_ready(self, msg: dict[str, Any], now: float) -> None:
        state = self.actors.get(str(msg.get("name")))
        if state is None or state.pid != msg.get("pid"):
            return
        state.ready, state.last_heartbeat = True, now
        data = {"actor": state.name, "pid": state.pid, "restarts": state.book.restarts}
        self.emit("actor.started", data)
        if state.book.restarts and state.exited_at is not None:
            self.emit("actor.restarted",
                      {**data, "downtime_ms": round((now - state.exited_at) * 1000, 2)})

    def on_heartbeat(self, msg: dict[str, Any], now: float) -> None:
        state = self.actors.get(str(msg.get("name")))
        if state is not None and state.pid == msg.get("pid"):
            state.last_heartbeat = now
            state.counters = msg.get("counters") or {}
            state.status = msg.get("status") or {}
            if not state.ready:
                # Its "ready" beat the zygote's "spawned" report here and was
                # dropped for an unknown pid; heartbeats only start after setup.
                self.on_ready(msg, now)

    # -- periodic checks ---------------------------------------------------------------
    def check(self, now: float) -> None:
        """Start the restarts that are due; kill actors whose liveness lapsed."""
        timeout = self.cfg.heartbeat_timeout_s
        if now - self.last_check > timeout / 2:
            # We were paused (SIGSTOP, a stalled VM): the actors were too, so
            # their silence says nothing. Start their heartbeat clocks afresh.
            for state in self.actors.values():
                state.last_heartbeat = now
        self.last_check = now
        for state in self.actors.values():
            if state.book.due(now) and not self.stopping:
                state.book.respawned(self.policy, now)
                self._spawn(state, now)
            elif state.pid:
                verdict = liveness_verdict(now, state.last_heartbeat,
                                           self.stamps.read(state.name),
                                           liveness_timeout(state.ready, timeout))
                if verdict is not None:
                    self.log.bind(actor=state.name, pid=state.pid).warning(
                        f"actor {verdict}; killing it")
                    self.counters[f"actors_{verdict}"] += 1
                    kill(state.pid, signal.SIGKILL)
                    state.last_heartbeat = now  # one kill per timeout; the exit report follows

    def next_deadline(self) -> float | None:
        due = [s.book.restart_at for s in self.actors.values() if s.book.restart_at is not None]
        return min(due, default=None)

    def unavailable(self, name: str, now: float) -> str | None:
        """Why requests to `name` cannot be served now, or None."""
        book = self.actors[name].book
        if not book.given_up or book.restart_at is None:
            return None
        return (f"{name} keeps dying and was given up after {book.restarts} restarts; "
                f"next retry in {max(0.0, book.restart_at - now):.0f} s")

    # -- views -------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        return [{"name": a.name, "pid": a.pid, "ready": a.ready, "restarts": a.book.restarts,
                 "state": a.state} for a in self.actors.values()]

    def status_rows(self, now: float) -> list[dict[str, Any]]:
        """Each actor with its counters, status and psutil usage (`lbcluster status`)."""
        rows = []
        for a, row in zip(self.actors.values(), self.rows(), strict=True):
            last = max(a.last_heartbeat, self.stamps.read(a.name))
            row.update(counters=a.counters, status=a.status,
                       heartbeat_age_s=round(now - last, 3) if a.pid else None)
            if a.book.given_up and a.book.restart_at is not None:
                row["retry_in_s"] = round(max(0.0, a.book.restart_at - now), 3)
            if a.pid and (a.proc is None or a.proc.pid != a.pid):
                a.proc = process_of(a.pid)
            row.update(usage_of(a.proc if a.pid else None))
            rows.append(row)
        return rows

    def degraded(self) -> list[str]:
        return [a.name for a in self.actors.values() if a.book.given_up]

    # -- signals and shutdown ----------------------------------------------------------
    def signal_all(self, sig: int) -> None:
        for state in self.actors.values():
            if state.pid:
                kill(state.pid, sig)

    def shutdown(self, first: str, grace_s: float) -> None:
        """`first` (membership: it says goodbye) then the rest; TERM, grace, KILL."""
        self.stopping = True
        head = [a for a in self.actors.values() if a.name == first]
        rest = [a for a in self.actors.values() if a.name != first]
        for group, wait_s in ((head, min(1.0, grace_s)), (rest, grace_s)):
            for state in group:
                if state.pid:
                    kill(state.pid, signal.SIGTERM)
            self._await_exits(group, wait_s)
        self.signal_all(signal.SIGKILL)
        self._await_exits(list(self.actors.values()), 1.0)

    def _await_exits(self, group: list[ActorState], wait_s: float) -> None:
        assert self.zygote is not None
        deadline = time.monotonic() + wait_s
        while any(a.pid for a in group) and time.monotonic() < deadline:
            if not self.zygote.events.eof:
                with contextlib.suppress(InterruptedError, OSError):
                    select.select([self.zygote.event_fd], [], [], 0.05)
            self.on_zygote(time.monotonic())
            if self.zygote.events.eof:
                break


def kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
