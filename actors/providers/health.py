"""The built-in `health` provider: backend checks shared by the whole cluster.

Theory of operation:

* Ownership. Each configured backend is checked only by its owner node(s):
  the `replicas` highest-weight live members by rendezvous hashing
  (`actors.core.rendezvous`), so a backend sees one checker, not N. The
  candidate set is the live membership the host reports through
  `on_members`; `on_node_failure` removes a node at once, so its backends are
  re-owned (and checked) by the next node without waiting for the list.
* Checks never block the actor's loop: `tick` submits due checks to a small
  thread pool (created lazily, inside the provider's process) and collects
  finished ones on a later tick. TCP = connect; HTTP = GET, healthy when the
  status equals `expect_status`. A check still running well past its timeout
  is abandoned and counted as a failure.
* Rise / fall (HAProxy): a backend's local verdict flips only after `rise`
  consecutive successes or `fall` consecutive failures. While a flip is
  pending the next check runs after `fast_interval_ms` (HAProxy "fastinter"),
  so a backend that goes down is reported after about
  `interval + (fall - 1) * fast_interval` plus check time and propagation.
* Replicated state, key = backend name, value = {status, checked_by, since,
  detail, latency_ms}. An owner writes only when (a) its verdict differs
  from the held status and it just flipped, or it is the primary owner
  (so a stale writer is corrected within one check), or (b) the held
  `checked_by` is no longer an owner (takeover). Steady state writes nothing.
  With replicas > 1 a secondary's flip is published at once and the primary
  confirms or overrides it at its next check; secondaries never override
  the primary, so two owners that disagree cannot ping-pong.
* Remote states are accepted by the protocol's version rule (through the
  `ReplicatedTable` of `actors.providers.base`, which does not apply the GC
  horizon); malformed values are rejected and counted.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from actors.core.rendezvous import Ownership
from actors.providers.base import (
    ProviderOptionError,
    ReplicatedTable,
    TableProvider,
    arg_name,
    is_number,
    read_options,
)
from transport.protocol import MAX_KEY_LEN, ApplyResult, LamportClock, SyncableState
from transport.settings import Field, SettingsError, value_of

STATE_TYPE = "health"
UP, DOWN = "up", "down"
MAX_WORKERS = 8
POLL_S = 0.02  # how often tick looks for finished checks while some are running
OVERDUE_GRACE_S = 1.0  # a check this far past its timeout is abandoned as failed
_EXPECT_STATUS = Field("expect_status", int, 200, low=100, high=599, why="an HTTP status")
_BACKEND_KEYS = {"tcp": frozenset({"name", "check", "address"}),
                 "http": frozenset({"name", "check", "url", "expect_status"})}


# --- options ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """One checked backend; `host`/`port` for tcp, `url`/`expect_status` for http."""

    name: str
    check: str
    host: str = ""
    port: int = 0
    url: str = ""
    expect_status: int = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthOptions:
    backends: tuple[Backend, ...]
    interval_s: float = 2.0
    fast_interval_s: float = 0.5
    timeout_s: float = 1.0
    replicas: int = 1
    rise: int = 2
    fall: int = 2


_HOUR_MS = 3_600_000
FIELDS = (
    Field("backends", list, [], why="what this node checks: tables of name, check, address/url"),
    Field("interval_ms", float, 2000, low=10, high=_HOUR_MS, attr="interval_s", scale=0.001,
          why="between two checks of a backend (HAProxy inter)"),
    Field("fast_interval_ms", float, None, low=10, high=_HOUR_MS, attr="fast_interval_s",
          scale=0.001, why="between checks while a backend changes (HAProxy fastinter; "
          "default interval / 4)"),
    Field("timeout_ms", float, 1000, low=1, high=_HOUR_MS, attr="timeout_s", scale=0.001,
          why="a check answering later fails (HAProxy timeout check)"),
    Field("replicas", int, 1, low=1, high=64, why="nodes that check each backend"),
    Field("rise", int, 2, low=1, high=1000, why="passes in a row that bring a backend up"),
    Field("fall", int, 2, low=1, high=1000, why="failures in a row that take it down"),
)


def parse_options(options: object) -> HealthOptions:
    """Validate the `[[providers]] options` table. Raises: ProviderOptionError."""
    opts = read_options(STATE_TYPE, options, FIELDS)
    fast_s = opts["fast_interval_s"] or opts["interval_s"] / 4
    return HealthOptions(**{**opts, "backends": _parse_backends(opts["backends"]),
                            "fast_interval_s": min(fast_s, opts["interval_s"])})


def _parse_backends(raw: object) -> tuple[Backend, ...]:
    if not isinstance(raw, (list, tuple)):
        raise ProviderOptionError(STATE_TYPE, "backends", "must be a list of tables")
    backends = tuple(_parse_backend(f"backends[{i}]", item) for i, item in enumerate(raw))
    names = [b.name for b in backends]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ProviderOptionError(STATE_TYPE, f"backends[{i}].name",
                                      f"duplicate backend name {name!r}")
    return backends


def _parse_backend(where: str, raw: object) -> Backend:
    if not isinstance(raw, Mapping):
        raise ProviderOptionError(STATE_TYPE, where, "must be a table")
    name, check = raw.get("name"), raw.get("check")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_KEY_LEN:
        raise ProviderOptionError(STATE_TYPE, f"{where}.name", "must be a non-empty string")
    if check not in _BACKEND_KEYS:
        raise ProviderOptionError(STATE_TYPE, f"{where}.check", "must be \"tcp\" or \"http\"")
    unknown = sorted(set(raw) - _BACKEND_KEYS[check])
    if unknown:
        raise ProviderOptionError(STATE_TYPE, f"{where}.{unknown[0]}",
                                  f"unknown key for a {check} check")
    if check == "tcp":
        host, port = _parse_address(f"{where}.address", raw.get("address"))
        return Backend(name=name, check=check, host=host, port=port)
    try:
        status = value_of(_EXPECT_STATUS, raw.get("expect_status", 200))
    except SettingsError as exc:
        raise ProviderOptionError(STATE_TYPE, f"{where}.expect_status", exc.reason) from None
    return Backend(name=name, check=check, url=_parse_url(f"{where}.url", raw.get("url")),
                   expect_status=status)


def _parse_address(where: str, value: object) -> tuple[str, int]:
    """"host:port" or "[v6]:port"."""
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProviderOptionError(STATE_TYPE, where, "must be \"host:port\"")
    return host, int(port)


def _parse_url(where: str, value: object) -> str:
    if isinstance(value, str):
        try:
            parts = urlsplit(value)
            if parts.scheme in ("http", "https") and parts.hostname and parts.port != 0:
                return value
        except ValueError:  # a port that is not a number or out of range
            pass
    raise ProviderOptionError(STATE_TYPE, where, "must be an http:// or https:// URL")


# --- checks -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    detail: str  # short, for people: "connected", "http 500", "ConnectionRefusedError: ..."
    latency_ms: float


# (backend, timeout_s) -> result. Runs in a pool thread; may block up to about timeout_s.
CheckFn = Callable[[Backend, float], CheckResult]


def run_check(backend: Backend, timeout_s: float) -> CheckResult:
    """The real check: TCP connect, or HTTP GET compared with `expect_status`."""
    start = time.perf_counter()
    try:
        ok, detail = (_tcp(backend, timeout_s) if backend.check == "tcp"
                      else _http(backend, timeout_s))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        ok, detail = False, describe(exc)
    return CheckResult(ok, detail, round((time.perf_counter() - start) * 1000, 3))


def _tcp(backend: Backend, timeout_s: float) -> tuple[bool, str]:
    with socket.create_connection((backend.host, backend.port), timeout=timeout_s):
        return True, "connected"


def _http(backend: Backend, timeout_s: float) -> tuple[bool, str]:
    parts = urlsplit(backend.url)
    conn_cls = (http.client.HTTPSConnection if parts.scheme == "https"
                else http.client.HTTPConnection)
    conn = conn_cls(parts.hostname or "", parts.port, timeout=timeout_s)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", path, headers={"User-Agent": "lbcluster-health",
                                           "Connection": "close"})
        status = conn.getresponse().status
    finally:
        conn.close()
    return status == backend.expect_status, f"http {status}"


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:160]


# --- the provider -----------------------------------------------------------------------


def valid_value(value: object) -> bool:
    """Shape of a replicated health value (remote values are untrusted)."""
    return (isinstance(value, dict) and value.get("status") in (UP, DOWN)
            and isinstance(value.get("checked_by"), str) and is_number(value.get("since"))
            and isinstance(value.get("detail"), str) and is_number(value.get("latency_ms")))


@dataclass(slots=True)
class Tracker:
    """This node's check history for one backend it owns."""

    next_at: float  # when the next check is due (monotonic)
    decided: str | None = None  # verdict after rise/fall; None until enough results
    run_status: str | None = None  # status of the current run of equal results
    run: int = 0  # length of that run
    last: CheckResult | None = None
    future: Future[CheckResult] | None = field(default=None, repr=False)
    started_at: float = 0.0

    def record(self, ok: bool, rise: int, fall: int) -> bool:
        """Count one result; return True if the verdict flipped."""
        status = UP if ok else DOWN
        self.run = self.run + 1 if status == self.run_status else 1
        self.run_status = status
        if status != self.decided and self.run >= (rise if ok else fall):
            self.decided = status
            return True
        return False

    @property
    def pending(self) -> bool:
        """A flip is under way (results disagree with the verdict)."""
        return self.run_status is not None and self.run_status != self.decided


class HealthProvider(TableProvider):
    """StateProvider for state_type "health" (see the module docstring).

    `check`, `executor`, `now_fn` and `wall_fn` are seams for tests; the host
    passes only node_id, clock and options.
    """

    def __init__(self, node_id: str, clock: LamportClock,
                 options: Mapping[str, Any] | None = None, *,
                 check: CheckFn = run_check, executor: Executor | None = None,
                 now_fn: Callable[[], float] = time.monotonic,
                 wall_fn: Callable[[], float] = time.time) -> None:
        self.options = parse_options({} if options is None else options)
        self.node_id = node_id
        self._backends = {b.name: b for b in self.options.backends}
        self._table = ReplicatedTable(STATE_TYPE, node_id, clock, valid_value)
        self._own = Ownership(node_id, self.options.replicas)
        self._trackers: dict[str, Tracker] = {}
        self._check, self._executor, self._own_pool = check, executor, False
        self._now_fn, self._wall_fn = now_fn, wall_fn
        self._last_now = now_fn()
        self._reown(self._last_now)

    @staticmethod
    def validate_options(options: Mapping[str, Any]) -> None:
        """Raise ProviderOptionError (a ValueError) if `options` are invalid."""
        parse_options(options)

    # -- StateProvider (the queries and drain_changes come from TableProvider) ------------
    def apply_remote_state(self, states: list[SyncableState]) -> ApplyResult:
        # Owners reconcile against remote states at their next check, not here:
        # reacting to every remote write is how two disagreeing owners ping-pong.
        result, _ = self._table.apply(states, self._now_fn())
        return result

    def on_node_failure(self, node_id: str) -> None:
        """Re-own the failed node's backends now, without waiting for on_members."""
        if self._own.remove(node_id):
            self._reown(self._now_fn())

    # -- host hooks ----------------------------------------------------------------------
    def on_members(self, live: list[str], now: float) -> None:
        self._last_now = now
        if self._own.set_members(live):
            self._reown(now)

    def tick(self, now: float) -> None:
        """Submit due checks, fold in finished ones; never blocks."""
        self._last_now = now
        self._submit_due(now)
        self._collect(now)
        self._table.gc(now)

    def next_deadline(self) -> float | None:
        due = [t.next_at for t in self._trackers.values() if t.future is None]
        if len(due) < len(self._trackers):  # checks running: look for results soon
            due.append(self._last_now + POLL_S)
        return min(due, default=None)

    def close(self) -> None:
        """Stop the pool this provider created (running checks finish on their own)."""
        if self._own_pool and self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- commands ------------------------------------------------------------------------
    def cmd_list(self, args: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
        """Every configured or replicated backend with its status, by name."""
        names = sorted({*self._backends, *self._table.keys()})
        return [self._row(name) for name in names]

    def cmd_get(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        name = arg_name(args, "name")
        if name not in self._backends and self._table.value(name) is None:
            raise ValueError(f"unknown backend {name!r}")
        return self._row(name)

    # -- internals -----------------------------------------------------------------------
    def _row(self, name: str) -> dict[str, Any]:
        row: dict[str, Any] = {"name": name, "status": "unknown", "checked_by": None,
                               "since": None, "detail": "", "latency_ms": None}
        held = self._table.value(name)
        if held is not None:
            row.update({k: held[k] for k in ("status", "checked_by", "since", "detail",
                                             "latency_ms")})
        row["owners"] = self._own.owners_of(name)
        row["configured"] = name in self._backends
        return row

    def _reown(self, now: float) -> None:
        """Start tracking newly owned backends, drop lost ones, take over where due."""
        for name in self._backends:
            owned = self._own.is_owner(name)
            tracker = self._trackers.get(name)
            if owned and tracker is None:
                self._trackers[name] = Tracker(next_at=now)
            elif not owned and tracker is not None:
                if tracker.future is not None:
                    tracker.future.cancel()  # no effect if running: its result is ignored
                del self._trackers[name]
            elif tracker is not None and tracker.last is not None:
                self._maybe_write(name, tracker, tracker.last, False, now)

    def _pool(self) -> Executor:
        if self._executor is None:  # lazily: threads must start in the provider's process
            workers = min(MAX_WORKERS, max(1, len(self._backends)))
            self._executor = ThreadPoolExecutor(workers, thread_name_prefix="health-check")
            self._own_pool = True
        return self._executor

    def _submit_due(self, now: float) -> None:
        for name, tracker in self._trackers.items():
            if tracker.future is None and tracker.next_at <= now:
                backend, timeout_s = self._backends[name], self.options.timeout_s
                tracker.started_at, tracker.next_at = now, now + self.options.interval_s
                tracker.future = self._pool().submit(self._check, backend, timeout_s)

    def _collect(self, now: float) -> None:
        overdue_s = self.options.timeout_s + OVERDUE_GRACE_S
        for name, tracker in self._trackers.items():
            future = tracker.future
            if future is None:
                continue
            if future.done():
                tracker.future = None
                self._on_result(name, tracker, _outcome(future), now)
            elif now - tracker.started_at > overdue_s:
                tracker.future = None  # abandoned: the thread ends by itself, unheard
                late = CheckResult(False, "check overdue", (now - tracker.started_at) * 1000)
                self._on_result(name, tracker, late, now)

    def _on_result(self, name: str, tracker: Tracker, result: CheckResult, now: float) -> None:
        flipped = tracker.record(result.ok, self.options.rise, self.options.fall)
        tracker.last = result
        if tracker.pending:  # confirm a flip sooner (HAProxy fastinter)
            tracker.next_at = min(tracker.next_at, now + self.options.fast_interval_s)
        self._maybe_write(name, tracker, result, flipped, now)

    def _should_write(self, name: str, decided: str | None, flipped: bool) -> bool:
        """Decide whether this owner's verdict must be written (module docstring)."""
        if decided is None:
            return False
        held = self._table.value(name)
        if held is None:
            return True
        owners = self._own.owners_of(name)
        if held["checked_by"] not in owners:
            return True  # the previous checker left the owner set: take over
        if held["status"] == decided:
            return False
        return flipped or owners[0] == self.node_id

    def _maybe_write(self, name: str, tracker: Tracker, result: CheckResult, flipped: bool,
                     now: float) -> None:
        if not self._should_write(name, tracker.decided, flipped):
            return
        held = self._table.value(name)
        same = held is not None and held["status"] == tracker.decided
        self._table.write(name, {
            "status": tracker.decided, "checked_by": self.node_id,
            "since": held["since"] if same and held is not None else self._wall_fn(),
            "detail": result.detail, "latency_ms": float(result.latency_ms),
        }, now)


def _outcome(future: Future[CheckResult]) -> CheckResult:
    """A finished check's result; a check that raised counts as a failure."""
    if future.cancelled():
        return CheckResult(False, "check cancelled", 0.0)
    exc = future.exception()
    return future.result() if exc is None else CheckResult(False, describe(exc), 0.0)
