"""The bridge's state machine: what to say to HAProxy next, and what a reply means.

Theory of operation:

* Inputs: the cluster's verdicts (`set_views`) and HAProxy's replies. Output:
  one `Step` at a time, a `Read` (`show servers state`) or a `Write` (one
  line of `set server ... state ...` commands). The shell runs the step and
  reports `on_reply` or `on_failure`; one step is in flight at most.
* Reads are periodic (`interval_s`) and come first: nothing is written
  before the bridge has seen what HAProxy holds (`observed`). A restarted or
  reloaded HAProxy starts from its config file, so the next read shows the
  difference and the next write corrects it: re-applying after a restart
  is the ordinary diff, not a special case.
* A verdict that changes is written at once against the last observed
  states, without waiting for the next read.
* A write that HAProxy accepts updates `observed` to what was written; a
  write it answers with text (a missing server, a socket without the
  `admin` level) is a failure. Failures of any kind (connect, timeout,
  garbage, refused commands) back off (`core.backoff`) and drop `observed`,
  so the next step after a failure is a fresh read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from actors.haproxy.core.backoff import retry_at
from actors.haproxy.core.desired import AdminState, desired_states
from actors.haproxy.core.names import ServerRef
from actors.haproxy.core.servers_state import (
    command_errors,
    command_line,
    commands_for,
    parse_servers_state_untrusted,
)

READ_COMMAND = "show servers state"


@dataclass(frozen=True, slots=True)
class Read:
    line: str = READ_COMMAND


@dataclass(frozen=True, slots=True)
class Write:
    changes: Mapping[ServerRef, AdminState]

    @property
    def line(self) -> str:
        return command_line(self.changes)


Step = Read | Write


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a reply or failure meant, for the shell to count and log."""

    ok: bool
    reason: str = ""  # a slug on failure: connect, timeout, parse, refused
    detail: str = ""
    applied: Mapping[ServerRef, AdminState] | None = None  # a write's changes


class Bridge:
    """See the module docstring. `servers`: health backend name -> HAProxy server."""

    def __init__(self, servers: Mapping[str, ServerRef], interval_s: float) -> None:
        self.servers = dict(servers)
        self.interval_s = interval_s
        self.health: dict[str, str] = {}
        self.breakers: dict[str, str] = {}
        # What HAProxy holds, as of the last read plus our accepted writes; None: read first.
        self.observed: dict[ServerRef, AdminState] | None = None
        self.read_at = 0.0  # when the next periodic read is due
        self.failures = 0  # consecutive; reset by any success
        self.retry_after = 0.0  # no step starts before this (backoff)
        self.in_flight: Step | None = None

    # -- inputs ------------------------------------------------------------------------
    def set_views(self, health: Mapping[str, str], breakers: Mapping[str, str]) -> None:
        self.health, self.breakers = dict(health), dict(breakers)

    # -- decide ------------------------------------------------------------------------
    def desired(self) -> dict[ServerRef, AdminState]:
        return desired_states(self.servers, self.health, self.breakers)

    def missing(self) -> list[ServerRef]:
        """Configured servers the last read did not list (a typo, or another config)."""
        if self.observed is None:
            return []
        return sorted(ref for ref in self.servers.values() if ref not in self.observed)

    def next_step(self, now: float) -> Step | None:
        """The step to start now, if any (read-only: `begin` starts it)."""
        if self.in_flight is not None or now < self.retry_after:
            return None
        if self.observed is None or now >= self.read_at:
            return Read()
        changes = commands_for(self.desired(), self.observed)
        return Write(changes) if changes else None

    def next_deadline(self) -> float | None:
        """When `next_step` may return a step; None while one is in flight."""
        if self.in_flight is not None:
            return None
        due = self.read_at
        if self.observed is None or commands_for(self.desired(), self.observed):
            due = 0.0
        return max(due, self.retry_after)

    # -- apply -------------------------------------------------------------------------
    def begin(self, step: Step) -> None:
        self.in_flight = step

    def on_reply(self, reply: str, now: float) -> Outcome:
        """HAProxy answered the step in flight."""
        step, self.in_flight = self.in_flight, None
        match step:
            case Read():
                try:
                    self.observed = parse_servers_state_untrusted(reply)
                except ValueError as exc:
                    return self._failed("parse", str(exc), now)
                self.read_at = now + self.interval_s
                return self._succeeded()
            case Write(changes=changes):
                errors = command_errors(reply)
                if errors:
                    return self._failed("refused", errors[0][:160], now)
                if self.observed is not None:
                    self.observed.update(changes)
                return self._succeeded(changes)
            case None:
                raise RuntimeError("a reply with no step in flight")  # a shell bug

    def on_failure(self, reason: str, detail: str, now: float) -> Outcome:
        """The step in flight could not be run (no connection, timeout)."""
        self.in_flight = None
        return self._failed(reason, detail, now)

    def _succeeded(self, applied: Mapping[ServerRef, AdminState] | None = None) -> Outcome:
        self.failures = 0
        self.retry_after = 0.0
        return Outcome(ok=True, applied=applied)

    def _failed(self, reason: str, detail: str, now: float) -> Outcome:
        self.failures += 1
        self.retry_after = retry_at(self.failures, now)
        self.observed = None  # HAProxy may be another process by the time we retry
        return Outcome(ok=False, reason=reason, detail=detail)
