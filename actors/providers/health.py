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
* Remote states are accepted by the protocol's version rule (through
  `ReplicatedTable`, which the circuit breaker shares); malformed values are
  rejected and counted.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from actors.core.rendezvous import Ownership
from actors.core.store import Store
from transport.protocol import (
    MAX_KEY_LEN,
    ApplyResult,
    LamportClock,
    ProtocolError,
    SyncableState,
    check_u63,
    is_tombstone,
    state_key,
)

STATE_TYPE = "health"
UP, DOWN = "up", "down"
MAX_WORKERS = 8
POLL_S = 0.02  # how often tick looks for finished checks while some are running
OVERDUE_GRACE_S = 1.0  # a check this far past its timeout is abandoned as failed
_OPTIONS = frozenset({"backends", "interval_ms", "fast_interval_ms", "timeout_ms", "replicas",
                      "rise", "fall"})
_BACKEND_KEYS = {"tcp": frozenset({"name", "check", "address"}),
                 "http": frozenset({"name", "check", "url", "expect_status"})}


# --- shared with actors.providers.circuit_breaker -------------------------------------


class ProviderOptionError(ValueError):
    """A bad `[[providers]] options` entry; `.option` names it, `.reason` says why."""

    def __init__(self, provider: str, option: str, reason: str) -> None:
        super().__init__(f"{provider} option {option}: {reason}")
        self.provider, self.option, self.reason = provider, option, reason


def check_known(provider: str, options: object, known: frozenset[str]) -> dict[str, Any]:
    """Copy `options` into a dict; raise ProviderOptionError on an unknown key."""
    if not isinstance(options, Mapping):
        raise ProviderOptionError(provider, "options", "must be a table")
    unknown = sorted(set(options) - known)
    if unknown:
        raise ProviderOptionError(provider, str(unknown[0]),
                                  f"unknown option (known: {', '.join(sorted(known))})")
    return dict(options)


def option_int(provider: str, opts: Mapping[str, Any], name: str, default: int,
               minimum: int) -> int:
    """An integer option >= `minimum` (bool refused)."""
    value = opts.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProviderOptionError(provider, name,
                                  f"must be an integer >= {minimum} (got {value!r})")
    return value


def option_num(provider: str, opts: Mapping[str, Any], name: str, default: float) -> float:
    """A finite number option > 0 (bool refused)."""
    value = opts.get(name, default)
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 < value < float("inf")):
        raise ProviderOptionError(provider, name, f"must be a positive number (got {value!r})")
    return float(value)


def arg_name(args: object, name: str) -> str:
    """A command argument that names a key. Raises: ValueError."""
    value = args.get(name) if isinstance(args, Mapping) else None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_KEY_LEN:
        raise ValueError(f"argument {name} must be a non-empty string "
                         f"of at most {MAX_KEY_LEN} characters")
    return value


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ReplicatedTable:
    """One provider's replicated states: a Store of one type, value checks, a change log.

    Local writes and accepted remote states both land in the change log that
    `drain` empties (latest state per key), which is what the host publishes.
    """

    def __init__(self, state_type: str, node_id: str, clock: LamportClock,
                 valid_value: Callable[[Any], bool]) -> None:
        self.state_type, self.node_id, self.clock = state_type, node_id, clock
        self._valid_value = valid_value
        self._store = Store()
        self._changes: dict[tuple[str, str], SyncableState] = {}

    def value(self, key: str) -> Any | None:
        """The live value of `key`; None if absent or deleted."""
        state = self._store.get(self.state_type, key)
        return None if state is None else state.value

    def keys(self) -> list[str]:
        """Keys with a live (non-tombstone) value."""
        return [s.key for s in self._store.items(self.state_type) if not is_tombstone(s)]

    def states(self) -> list[SyncableState]:
        return self._store.items(self.state_type)

    def digest(self) -> dict[tuple[str, str], int]:
        return self._store.digest(self.state_type)

    def write(self, key: str, value: Any, now: float) -> SyncableState:
        state = self._store.write(self.state_type, key, value, self.clock, self.node_id, now)
        self._changes[state_key(state)] = state
        return state

    def apply(self, states: Sequence[SyncableState], now: float
              ) -> tuple[ApplyResult, list[SyncableState]]:
        """Apply remote states; wrong type or a malformed value counts as rejected."""
        ours = [s for s in states if isinstance(s, SyncableState)
                and s.state_type == self.state_type
                and (s.value is None or self._valid_value(s.value))]
        for state in ours:
            try:  # Lamport receive rule, so later local writes are newer
                self.clock.update(check_u63(state.version, "version"))
            except ProtocolError:
                continue  # the store rejects and counts it
        result, changed = self._store.apply(ours, now)
        result["rejected"] += len(states) - len(ours)
        for state in changed:
            self._changes[state_key(state)] = state
        return result, changed

    def drain(self) -> list[SyncableState]:
        changes, self._changes = list(self._changes.values()), {}
        return changes

    def gc(self, now: float) -> int:
        return self._store.gc(now)


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


def parse_options(options: object) -> HealthOptions:
    """Validate the `[[providers]] options` table. Raises: ProviderOptionError."""
    opts = check_known(STATE_TYPE, options, _OPTIONS)
    interval_ms = option_num(STATE_TYPE, opts, "interval_ms", 2000)
    fast_ms = option_num(STATE_TYPE, opts, "fast_interval_ms", interval_ms / 4)
    return HealthOptions(
        backends=_parse_backends(opts.get("backends", [])),
        interval_s=interval_ms / 1000,
        fast_interval_s=min(fast_ms, interval_ms) / 1000,
        timeout_s=option_num(STATE_TYPE, opts, "timeout_ms", 1000) / 1000,
        replicas=option_int(STATE_TYPE, opts, "replicas", 1, 1),
        rise=option_int(STATE_TYPE, opts, "rise", 2, 1),
        fall=option_int(STATE_TYPE, opts, "fall", 2, 1),
    )


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
    status = option_int(STATE_TYPE, raw, "expect_status", 200, 100)
    if status > 599:
        raise ProviderOptionError(STATE_TYPE, f"{where}.expect_status", "must be 100..599")
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
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
        ok = parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)
        ok = ok and parts is not None and (parts.port is None or parts.port > 0)
    except ValueError:  # a port that is not a number or out of range
        ok = False
    if not ok or not isinstance(value, str):
        raise ProviderOptionError(STATE_TYPE, where, "must be an http:// or https:// URL")
    return value


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
