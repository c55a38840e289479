"""The built-in `circuit_breaker` provider: cluster-wide breakers per upstream.

Theory of operation:

* Each upstream has a breaker: closed (traffic allowed), open (refused) or
  half_open (one node runs the trial). The breaker's STATE is replicated
  (key = upstream, value = {state, opened_at, tripped_by}), so a breaker that
  trips on one node opens on all. Failure counting is local: each node counts
  the failures it was told about (`cmd_record`) in a sliding `window_s`, and
  the node that reaches `failure_threshold` writes "open".
* Transitions are a table (`TRANSITIONS`); events are decided first
  (`_decide`), then applied (`_transition` writes the new state):

      closed    --trip (threshold failures in window)--> open       any node
      open      --timeout (open_s after seen open)-----> half_open  owner only, in tick
      half_open --trial_failed-------------------------> open       owner only
      half_open --trial_passed (half_open_successes)---> closed     owner only

* The trial owner is the upstream's rendezvous owner over the live members
  (`actors.core.rendezvous`); only it answers allow=True in half_open, and
  only its recorded outcomes count there. `open_s` is measured on each node's
  monotonic clock from when that node saw the breaker open, so wall-clock
  skew between nodes does not matter (propagation delay adds milliseconds).
* Concurrent writes resolve by the protocol's version rule, as everywhere;
  remote states go through the `ReplicatedTable` of `actors.providers.base`
  (version rule only, no GC-horizon check; malformed values are rejected).
  Known limit: if the owner sends no traffic to a half-open upstream, the
  breaker stays half-open until the owner changes or an operator resets it.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.core.rendezvous import Ownership

# Imported from here before actors.providers.base existed (`X as X`: re-exported).
from actors.providers.base import ProviderOptionError as ProviderOptionError
from actors.providers.base import (
    ReplicatedTable,
    TableProvider,
    arg_name,
    is_number,
    read_options,
)
from transport.protocol import ApplyResult, LamportClock, SyncableState
from transport.settings import Field

STATE_TYPE = "circuit_breaker"


# --- the breaker ------------------------------------------------------------------------


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Event(enum.Enum):
    TRIP = "trip"  # failure_threshold failures within window_s (closed)
    TIMEOUT = "timeout"  # open_s passed since this node saw it open (owner)
    TRIAL_FAILED = "trial_failed"  # a failure recorded at the owner (half_open)
    TRIAL_PASSED = "trial_passed"  # half_open_successes successes at the owner (half_open)


TRANSITIONS: dict[tuple[BreakerState, Event], BreakerState] = {
    (BreakerState.CLOSED, Event.TRIP): BreakerState.OPEN,
    (BreakerState.OPEN, Event.TIMEOUT): BreakerState.HALF_OPEN,
    (BreakerState.HALF_OPEN, Event.TRIAL_FAILED): BreakerState.OPEN,
    (BreakerState.HALF_OPEN, Event.TRIAL_PASSED): BreakerState.CLOSED,
}
_STATES = {s.value: s for s in BreakerState}


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerOptions:
    failure_threshold: int = 5
    window_s: float = 10.0
    open_s: float = 30.0
    half_open_successes: int = 1


_DAY_S = 86_400
FIELDS = (
    # Each node keeps the times of up to this many failures per upstream.
    Field("failure_threshold", int, 5, low=1, high=100_000,
          why="failures within window_s that open the breaker"),
    Field("window_s", float, 10.0, low=0.001, high=_DAY_S, why="the failures' sliding window"),
    Field("open_s", float, 30.0, low=0.001, high=_DAY_S, why="open this long, then half-open"),
    Field("half_open_successes", int, 1, low=1, high=100_000,
          why="trial successes that close it again"),
)


def parse_options(options: object) -> BreakerOptions:
    """Validate the `[[providers]] options` table. Raises: ProviderOptionError."""
    return BreakerOptions(**read_options(STATE_TYPE, options, FIELDS))


def valid_value(value: object) -> bool:
    """Shape of a replicated breaker value (remote values are untrusted)."""
    if not isinstance(value, dict) or value.get("state") not in _STATES:
        return False
    opened_at, tripped_by = value.get("opened_at"), value.get("tripped_by")
    return ((opened_at is None or is_number(opened_at))
            and (tripped_by is None or isinstance(tripped_by, str)))


def state_of(value: Any) -> BreakerState:
    """The breaker state a replicated value holds; no value (or deleted) is closed."""
    return BreakerState.CLOSED if value is None else _STATES[value["state"]]


@dataclass(slots=True)
class Local:
    """What this node alone knows about one upstream."""

    # Monotonic times of recent failures while closed (the sliding window).
    failures: deque[float] = field(default_factory=deque)
    # When this node saw the current open state (monotonic); None unless open.
    open_at: float | None = None
    # Trial successes recorded here in the current half_open (owner only).
    successes: int = 0


class CircuitBreakerProvider(TableProvider):
    """StateProvider for state_type "circuit_breaker" (see the module docstring).

    `now_fn` and `wall_fn` are seams for tests; the host passes only node_id,
    clock and options.
    """

    def __init__(self, node_id: str, clock: LamportClock,
                 options: Mapping[str, Any] | None = None, *,
                 now_fn: Callable[[], float] = time.monotonic,
                 wall_fn: Callable[[], float] = time.time) -> None:
        self.options = parse_options({} if options is None else options)
        self.node_id = node_id
        self._table = ReplicatedTable(STATE_TYPE, node_id, clock, valid_value)
        self._own = Ownership(node_id)
        self._locals: dict[str, Local] = {}
        self._now_fn, self._wall_fn = now_fn, wall_fn
        self._sweep_at = 0.0
        self.ignored = 0  # records that could not count (open, or half_open off-owner)

    @staticmethod
    def validate_options(options: Mapping[str, Any]) -> None:
        """Raise ProviderOptionError (a ValueError) if `options` are invalid."""
        parse_options(options)

    # -- StateProvider (the queries and drain_changes come from TableProvider) ------------
    def apply_remote_state(self, states: list[SyncableState]) -> ApplyResult:
        now = self._now_fn()
        keys = {s.key for s in states if isinstance(s, SyncableState)}
        before = {key: self._table.value(key) for key in keys}
        result, changed = self._table.apply(states, now)
        for key in {s.key for s in changed}:
            self._replaced(key, before[key], self._table.value(key), now)
        return result

    def on_node_failure(self, node_id: str) -> None:
        """The failed node stops owning trials at once."""
        self._own.remove(node_id)

    # -- host hooks ----------------------------------------------------------------------
    def on_members(self, live: list[str], now: float) -> None:
        self._own.set_members(live)

    def tick(self, now: float) -> None:
        """Move owned open breakers whose open_s has passed to half_open."""
        for upstream in [u for u, due in self._due_times().items() if due <= now]:
            self._transition(upstream, Event.TIMEOUT, now)
        self._sweep(now)
        self._table.gc(now)

    def next_deadline(self) -> float | None:
        return min(self._due_times().values(), default=None)

    # -- commands ------------------------------------------------------------------------
    def cmd_record(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        """Record one call's outcome {upstream, ok}; returns the breaker as cmd_state."""
        upstream = arg_name(args, "upstream")
        ok = args.get("ok")
        if not isinstance(ok, bool):
            raise ValueError("argument ok must be true or false")
        event = self._decide(upstream, ok, now)
        if event is not None:
            self._transition(upstream, event, now)
        return self._row(upstream, now)

    def cmd_state(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        """{upstream, state, allow, owner, opened_at, tripped_by, failures}."""
        return self._row(arg_name(args, "upstream"), now)

    def cmd_list(self, args: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
        upstreams = sorted({*self._table.keys(), *self._locals})
        return [self._row(u, now) for u in upstreams]

    def cmd_reset(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        """Operator override: close the breaker everywhere."""
        upstream = arg_name(args, "upstream")
        if state_of(self._table.value(upstream)) is not BreakerState.CLOSED:
            self._write(upstream, BreakerState.CLOSED, now)
        return self._row(upstream, now)

    # -- internals -----------------------------------------------------------------------
    def allow(self, upstream: str) -> bool:
        """Whether this node may send traffic to `upstream` now."""
        match state_of(self._table.value(upstream)):
            case BreakerState.CLOSED:
                return True
            case BreakerState.OPEN:
                return False
            case BreakerState.HALF_OPEN:
                return self._own.is_primary(upstream)

    def _row(self, upstream: str, now: float) -> dict[str, Any]:
        value = self._table.value(upstream)
        local = self._locals.get(upstream)
        if local is not None:
            self._prune(local, now)
        return {"upstream": upstream, "state": state_of(value).value,
                "allow": self.allow(upstream), "owner": self._own.owners_of(upstream)[0],
                "opened_at": None if value is None else value["opened_at"],
                "tripped_by": None if value is None else value["tripped_by"],
                "failures": 0 if local is None else len(local.failures)}

    def _local(self, upstream: str) -> Local:
        local = self._locals.get(upstream)
        if local is None:
            local = self._locals[upstream] = Local()
        return local

    def _prune(self, local: Local, now: float) -> None:
        while local.failures and local.failures[0] <= now - self.options.window_s:
            local.failures.popleft()

    def _decide(self, upstream: str, ok: bool, now: float) -> Event | None:
        """Count one outcome; return the event it triggers, if any."""
        local = self._local(upstream)
        match state_of(self._table.value(upstream)):
            case BreakerState.CLOSED:
                if ok:
                    return None
                local.failures.append(now)
                self._prune(local, now)
                return Event.TRIP if len(local.failures) >= self.options.failure_threshold \
                    else None
            case BreakerState.HALF_OPEN if self._own.is_primary(upstream):
                if not ok:
                    return Event.TRIAL_FAILED
                local.successes += 1
                return Event.TRIAL_PASSED if local.successes >= self.options.half_open_successes \
                    else None
            case _:  # open, or a half_open trial this node does not own: not evidence
                self.ignored += 1
                return None

    def _transition(self, upstream: str, event: Event, now: float) -> None:
        current = state_of(self._table.value(upstream))
        self._write(upstream, TRANSITIONS[(current, event)], now)

    def _write(self, upstream: str, new: BreakerState, now: float) -> None:
        held = self._table.value(upstream)
        if new is BreakerState.OPEN:
            opened_at, tripped_by = self._wall_fn(), self.node_id
        elif new is BreakerState.HALF_OPEN and held is not None:  # keep who tripped it, when
            opened_at, tripped_by = held["opened_at"], held["tripped_by"]
        else:
            opened_at, tripped_by = None, None
        value = {"state": new.value, "opened_at": opened_at, "tripped_by": tripped_by}
        self._table.write(upstream, value, now)
        self._entered(upstream, new, now)

    def _replaced(self, upstream: str, old: Any, new: Any, now: float) -> None:
        """A remote state replaced `old`: restart local bookkeeping on a new state or trip."""
        new_state = state_of(new)
        reopened = new is not None and old is not None and new["opened_at"] != old["opened_at"]
        if new_state is not state_of(old) or reopened:
            self._entered(upstream, new_state, now)

    def _entered(self, upstream: str, state: BreakerState, now: float) -> None:
        local = self._local(upstream)
        local.failures.clear()  # failures seen before a transition never count after it
        local.successes = 0
        local.open_at = now if state is BreakerState.OPEN else None

    def _due_times(self) -> dict[str, float]:
        """Owned open breakers -> when they go half_open."""
        return {u: local.open_at + self.options.open_s for u, local in self._locals.items()
                if local.open_at is not None and self._own.is_primary(u)}

    def _sweep(self, now: float) -> None:
        """Forget bookkeeping of closed upstreams with no recent failures (bounded memory)."""
        if now < self._sweep_at:
            return
        self._sweep_at = now + self.options.window_s
        for upstream, local in list(self._locals.items()):
            self._prune(local, now)
            if (not local.failures and local.open_at is None
                    and state_of(self._table.value(upstream)) is BreakerState.CLOSED):
                del self._locals[upstream]
