"""Event handlers (`[[handlers]]`, in the style of Serf's): a command per matching event.

Why an actor of its own, not threads in the supervisor: handlers fork and
exec user programs, wait on them and kill them. In a separate process none
of that can stall or crash the supervisor's loop, a handler storm costs this
process (restarted and, if it keeps dying, given up alone like a provider)
and not the node, and its counters reach `status` and /metrics through the
ordinary heartbeat.

For each handler, in config order, an event whose type starts with one of
its `events` prefixes is queued; each handler runs one command at a time, in
event order, from a queue of at most `QUEUE_MAX` events (overflow is
counted as ``handlerN.dropped``). The command gets the event as one JSON
document on stdin and ``LBC_EVENT_TYPE``, ``LBC_NODE_ID`` (the node the event
is about), ``LBC_SELF`` (this node) and ``LBC_SEQ`` in its environment. It
runs in a session of its own, so a handler that overstays `timeout_s` is
killed with its whole process group. Exits other than 0 and failures to start
are logged with the end of the command's stderr and counted. A pidfd wakes
the actor's loop when a command exits; it never blocks on one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
from collections import deque
from typing import IO, Any

import zmq

from actors.node.config import HandlerSpec
from actors.runtime import Actor, NodeEnv

QUEUE_MAX = 256  # events waiting per handler
STDERR_TAIL = 400  # bytes of a failed command's stderr put in the log
POLL_S = 0.1  # how often a running command is checked where pidfds are missing


def matches(spec: HandlerSpec, event_type: str) -> bool:
    return any(event_type.startswith(prefix) for prefix in spec.events)


def handler_env(event: dict[str, Any], self_id: str) -> dict[str, str]:
    """The variables a handler reads the event's gist from (Serf's SERF_EVENT, ...)."""
    return {"LBC_EVENT_TYPE": str(event.get("type", "")),
            "LBC_NODE_ID": str(event.get("node_id", "")),
            "LBC_SELF": self_id, "LBC_SEQ": str(event.get("seq", ""))}


class Runner:
    """One handler: its queue and the command it runs now, if any."""

    def __init__(self, index: int, spec: HandlerSpec, actor: HandlersActor) -> None:
        self.index, self.spec, self.actor = index, spec, actor
        self.name = f"handler{index}"
        self.queue: deque[dict[str, Any]] = deque()
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr: IO[bytes] | None = None
        self.pidfd: int | None = None
        self.deadline = 0.0
        self.killed = False

    def offer(self, event: dict[str, Any]) -> None:
        if len(self.queue) >= QUEUE_MAX:
            self.actor.counters[f"{self.name}.dropped"] += 1
            return
        self.queue.append(event)

    def step(self, now: float) -> None:
        """Reap or kill the running command; start the next one when idle."""
        if self.proc is not None:
            code = self.proc.poll()
            if code is None and now >= self.deadline and not self.killed:
                self._kill()
            if code is None:
                return
            self._finished(code)
        while self.proc is None and self.queue:
            self._start(self.queue.popleft(), now)

    def _start(self, event: dict[str, Any], now: float) -> None:
        counters = self.actor.counters
        with tempfile.TemporaryFile() as stdin:
            stdin.write(json.dumps(event, default=str).encode())
            stdin.seek(0)
            self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - kept until the command ends
            try:
                self.proc = subprocess.Popen(
                    self.spec.command, stdin=stdin, stdout=subprocess.DEVNULL,
                    stderr=self.stderr, start_new_session=True,
                    env={**os.environ, **handler_env(event, self.actor.env.node_id)})
            except OSError as exc:
                counters[f"{self.name}.failed"] += 1
                self.actor.log.bind(handler=self.name, command=self.spec.command[0],
                                    error=str(exc)).warning("event handler cannot start")
                self._close_stderr()
                return
        counters[f"{self.name}.started"] += 1
        self.deadline, self.killed = now + self.spec.timeout_s, False
        with contextlib.suppress(OSError, AttributeError):
            self.pidfd = os.pidfd_open(self.proc.pid)
            self.actor.watch(self.pidfd, self.actor.step_all)

    def _kill(self) -> None:
        assert self.proc is not None
        self.killed = True
        self.actor.counters[f"{self.name}.timed_out"] += 1
        self.actor.log.bind(handler=self.name, command=self.spec.command[0],
                            timeout_s=self.spec.timeout_s).warning(
            "event handler timed out; killing its process group")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: pgid == pid

    def _finished(self, code: int) -> None:
        counters = self.actor.counters
        if code == 0:
            counters[f"{self.name}.succeeded"] += 1
        elif not self.killed:
            counters[f"{self.name}.failed"] += 1
            self.actor.log.bind(handler=self.name, command=self.spec.command[0], code=code,
                                stderr=self._stderr_tail()).warning("event handler failed")
        self.proc = None
        self._close_stderr()
        if self.pidfd is not None:
            self.actor.unwatch(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None

    def _stderr_tail(self) -> str:
        if self.stderr is None:
            return ""
        self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, self.stderr.tell() - STDERR_TAIL))
        return self.stderr.read().decode(errors="replace")

    def _close_stderr(self) -> None:
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None

    def next_deadline(self, now: float) -> float | None:
        if self.proc is None:
            return None
        wake = self.deadline if not self.killed else now + POLL_S
        return wake if self.pidfd is not None else min(wake, now + POLL_S)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


class HandlersActor(Actor):
    def __init__(self, name: str, env: NodeEnv, ctx: zmq.Context) -> None:
        super().__init__(name, env, ctx)
        specs = env.config.handlers
        self.runners = [Runner(i, spec, self) for i, spec in enumerate(specs)]
        # Read by the runtime when it subscribes to the node's event fan-out.
        self.subscriptions = tuple(sorted({p for spec in specs for p in spec.events}))
        self.now = 0.0

    def on_event(self, event: dict[str, Any], now: float) -> None:
        kind = str(event.get("type", ""))
        for runner in self.runners:
            if matches(runner.spec, kind):
                runner.offer(event)
        self.step_all(now)

    def step_all(self, now: float) -> None:
        self.now = now
        for runner in self.runners:
            runner.step(now)

    def tick(self, now: float) -> None:
        self.step_all(now)

    def next_deadline(self) -> float | None:
        due = [d for r in self.runners if (d := r.next_deadline(self.now)) is not None]
        return min(due, default=None)

    def shutdown(self, now: float) -> None:
        for runner in self.runners:
            runner.stop()

    def status(self) -> dict[str, Any]:
        return {"handlers": [{"command": r.spec.command[0], "queued": len(r.queue),
                              "running": r.proc is not None} for r in self.runners]}
