"""The one place a `StateProvider` is called: request dispatch and the fault rules.

Both hosts use it: the provider actor (a provider listed in ``[[providers]]``,
in its own process) and the SDK's `attach` (a provider in the user's program).
The adapter owns what they share: the operations the anti-entropy actor sends
(``sync_state``, ``digest``, ``apply``, ``clock``, ``node_failed``, ``state``)
and the provider's commands (``cmd_<op>``), change detection
(``drain_changes``, or a diff of versions for a provider without it), Lamport
clock witnessing, and what happens when the user's code raises.

Fault rules (an exception in a provider is a bug in one state type; it must
never take the node's membership or the other types down with it):

* Every call into the provider is caught. It is counted (``errors.<method>``),
  kept as the last error, and reported once per distinct error through
  `take_faults` (the host logs it with its traceback and publishes
  ``provider.error``); the same error again within `FAULT_REPEAT_S` is only
  counted.
* ``apply_remote_state`` raising: the batch is retried state by state so the
  good ones apply. A state that still makes it raise is *quarantined*: kept
  here, counted, listed by `quarantine_rows`, and reported in the provider's
  digest as held, so the anti-entropy actor does not offer it again in a loop
  (its mirror keeps relaying the state to nodes whose provider can take it).
  A quarantined state is retried alone with a growing backoff, so a fault
  that was passing heals; a newer version of its key replaces it.
* A command raising ValueError, TypeError or KeyError is the caller's mistake:
  ``bad_request``. Any other exception is ``provider_error`` with the
  exception's type and message.

Not thread-safe: the SDK calls it under its provider lock.
"""

from __future__ import annotations

import contextlib
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from actors.core.store import bucket_of
from transport.protocol import (
    LamportClock,
    ProtocolError,
    StateProvider,
    SyncableState,
    is_tombstone,
    newer,
    state_key,
    syncable_state_to_map,
)
from transport.rpc import RpcError
from transport.views import parse_states_untrusted, state_row

FAULT_REPEAT_S = 60.0  # the same error is reported again at most this often
QUARANTINE_RETRY_S = (30.0, 60.0, 120.0, 300.0, 600.0)  # backoff of a quarantined state
QUARANTINE_ROWS = 100  # how many quarantined states `status` lists
CALLER_ERRORS = (ValueError, TypeError, KeyError)


@dataclass(frozen=True, slots=True)
class Fault:
    """One distinct error raised by the provider, to log and publish."""

    method: str
    error: str  # "TypeName: message"
    trace: str


@dataclass(slots=True)
class _Quarantined:
    state: SyncableState
    error: str
    tries: int
    retry_at: float


Key = tuple[str, str]


class ProviderAdapter:
    """Hosts one provider: dispatch, change detection, clock, fault rules.

    Args:
        provider: the user's or a built-in provider.
        clock: the Lamport clock the provider writes with (witnessed here).
        counters: where ``errors.*`` and ``quarantined`` are counted (the host's).
    """

    def __init__(self, provider: StateProvider, clock: LamportClock,
                 counters: Counter[str] | None = None) -> None:
        self.provider = provider
        self.clock = clock
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.state_type = provider.provider_type()
        # Optional hooks, resolved once: a provider either has them or not.
        self._drain: Callable[[], Iterable[SyncableState]] | None = _hook(provider,
                                                                          "drain_changes")
        self._tick: Callable[[float], Any] | None = _hook(provider, "tick")
        self._deadline: Callable[[], float | None] | None = _hook(provider, "next_deadline")
        self._on_members: Callable[[list[str], float], Any] | None = _hook(provider,
                                                                          "on_members")
        self._close: Callable[[], Any] | None = _hook(provider, "close")
        self._len: Callable[[], int] | None = _hook(provider, "__len__")
        self._set_wakeup: Callable[[Callable[[], None]], Any] | None = _hook(provider,
                                                                             "set_wakeup")
        # Versions last reported, for a provider without drain_changes (diffed instead).
        self._seen: dict[Key, tuple[int, str]] = {}
        self._quarantine: dict[Key, _Quarantined] = {}
        self._faults: list[Fault] = []
        self._reported: dict[tuple[str, str], float] = {}  # (method, error) -> when
        self.last_error: dict[str, str] | None = None
        self._now = 0.0  # the latest `now` a caller gave (for calls that are given none)

    # -- requests from the anti-entropy actor and the control socket -------------------
    def handle(self, op: str, args: Mapping[str, Any], now: float) -> Any:
        """Serve one request. Raises: RpcError only (bad_request, provider_error, unknown_op)."""
        self._now = now
        match op:
            case "sync_state":
                return [syncable_state_to_map(s) for s in self.sync_state(now)]
            case "digest":
                buckets = args.get("buckets")
                wanted = set(buckets) if isinstance(buckets, list) else None
                return [[t, k, v] for (t, k), v in self.digest(now, wanted).items()]
            case "apply":
                self.witness(args.get("clock"))
                states, malformed = parse_states_untrusted(args.get("states"))
                result = self.apply(states, now)
                return {**result, "rejected": result["rejected"] + malformed}
            case "clock":
                self.witness(args.get("clock"))
                return {}
            case "node_failed":
                node_id = args.get("node_id")
                if not isinstance(node_id, str):
                    raise RpcError("bad_request", "node_failed needs a node_id")
                self.node_failed(node_id, now)
                return {}
            case "state":
                return [state_row(s) for s in self.sync_state(now)
                        if not is_tombstone(s) or args.get("tombstones")]
            case "quarantine":
                return self.quarantine_rows()
        return self.command(op, args, now)

    def command(self, op: str, args: Mapping[str, Any], now: float) -> Any:
        """``cmd_<op>(args, now)``. Raises: RpcError (unknown_op, bad_request, provider_error)."""
        method = getattr(self.provider, f"cmd_{op}", None)
        if method is None or op.startswith("_"):
            raise RpcError("unknown_op", f"provider {self.state_type} has no command {op!r}")
        try:
            return method(args, now)
        except RpcError:
            raise
        except CALLER_ERRORS as exc:
            raise RpcError("bad_request", str(exc).strip("'\"")) from None
        except Exception as exc:
            self._fault("command", exc, now)
            raise RpcError("provider_error", _describe(exc)) from None

    def sync_state(self, now: float) -> list[SyncableState]:
        """The provider's states. Raises: RpcError provider_error."""
        states = self._call("sync_state", now, self.provider.get_sync_state)
        if not isinstance(states, list):
            states = list(states)
        return states

    def digest(self, now: float, buckets: set[int] | None = None) -> dict[Key, int]:
        """The provider's digest, with quarantined states reported as held (see module doc);
        only keys in summary `buckets` if given (the anti-entropy actor asks a slice at a
        time: `get_state_digest_in(buckets)` if the provider has it, else filtered here)."""
        by_bucket = _hook(self.provider, "get_state_digest_in")
        if buckets is None:
            held = dict(self._call("digest", now, self.provider.get_state_digest))
        elif by_bucket is not None:
            held = dict(self._call("digest", now, by_bucket, buckets))
        else:
            held = {k: v for k, v in self._call("digest", now, self.provider.get_state_digest)
                    .items() if bucket_of(*k) in buckets}
        for key, q in self._quarantine.items():
            if buckets is not None and bucket_of(*key) not in buckets:
                continue
            if held.get(key, -1) < q.state.version:
                held[key] = q.state.version
        return held

    def witness(self, clock: Any) -> None:
        """Lamport receive rule for a clock value from the node (ignored if malformed)."""
        if isinstance(clock, int) and not isinstance(clock, bool) and clock >= 0:
            # Beyond the version range: the codec would refuse such a state anyway.
            with contextlib.suppress(ProtocolError):
                self.clock.update(clock)

    # -- applying remote states --------------------------------------------------------
    def apply(self, states: list[SyncableState], now: float) -> dict[str, int]:
        """Apply remote states; a state the provider raises on is quarantined.

        Returns: ``{applied, conflicts, rejected, quarantined}``.
        """
        for s in states:
            self.witness(s.version)
        fresh = [s for s in states if not self._already_quarantined(s)]
        skipped = len(states) - len(fresh)
        for s in fresh:  # a newer version replaces a quarantined one (it may well apply)
            self._quarantine.pop(state_key(s), None)
        total = {"applied": 0, "conflicts": 0, "rejected": 0, "quarantined": skipped}
        if not fresh:
            return total
        try:
            _add(total, self._apply_call(fresh))
            return total
        except Exception as exc:
            self._fault("apply", exc, now)
        for s in fresh:  # one by one, so one poisoned state does not hold the rest back
            try:
                _add(total, self._apply_call([s]))
            except Exception as exc:
                self._hold(s, _describe(exc), now, tries=0)
                total["quarantined"] += 1
        return total

    def reconcile(self, theirs: list[SyncableState], now: float) -> list[SyncableState]:
        """Apply what `theirs` (the node's copy) holds newer; return what we hold newer.

        Raises: RpcError provider_error if the provider cannot list its states.
        """
        held = {state_key(s): s for s in self.sync_state(now)}
        mirror = {state_key(s): s for s in theirs}
        missing = [s for k, s in mirror.items() if k not in held or newer(s, held[k])]
        if missing:
            self.apply(missing, now)
            self.changes(now)  # they came from the node: nothing to send back
        return [s for k, s in held.items() if k not in mirror or newer(s, mirror[k])]

    def replay(self, states: list[SyncableState], now: float) -> dict[str, int]:
        """Journal replay at start: the same rules as `apply` (never a crash loop)."""
        result = self.apply(states, now)
        self.changes(now)  # replayed states are on disk and were published already
        return result

    def _apply_call(self, states: list[SyncableState]) -> dict[str, int]:
        result = self.provider.apply_remote_state(states)
        return {k: int(result[k]) for k in ("applied", "conflicts", "rejected")}

    def _already_quarantined(self, s: SyncableState) -> bool:
        q = self._quarantine.get(state_key(s))
        return q is not None and (q.state.version, q.state.source_node) >= (s.version,
                                                                              s.source_node)

    def _hold(self, s: SyncableState, error: str, now: float, tries: int) -> None:
        held = self._quarantine.get(state_key(s))
        if held is not None and (held.state.version, held.state.source_node) > (
                s.version, s.source_node):
            return  # one batch held two versions of a key: keep the newer waiting
        delay = QUARANTINE_RETRY_S[min(tries, len(QUARANTINE_RETRY_S) - 1)]
        self._quarantine[state_key(s)] = _Quarantined(s, error, tries + 1, now + delay)
        self.counters["quarantined"] += 1

    def _retry_quarantined(self, now: float) -> None:
        due = [q for q in self._quarantine.values() if q.retry_at <= now]
        for q in due:
            key = state_key(q.state)
            try:
                self._apply_call([q.state])
            except Exception as exc:
                self._hold(q.state, _describe(exc), now, q.tries)
                continue
            del self._quarantine[key]
            self.counters["unquarantined"] += 1

    def quarantine_rows(self) -> list[dict[str, Any]]:
        """The quarantined states (at most QUARANTINE_ROWS), for `status --json`."""
        rows = []
        for q in list(self._quarantine.values())[:QUARANTINE_ROWS]:
            rows.append({"key": q.state.key, "version": q.state.version,
                         "source_node": q.state.source_node, "error": q.error,
                         "tries": q.tries})
        return rows

    def key_count(self) -> int | None:
        """How many states the provider holds, if it can say cheaply (``__len__``)."""
        if self._len is None:
            return None
        count = self._call("len", self._now, self._len, default=None)
        return count if isinstance(count, int) else None

    @property
    def last_now(self) -> float:
        """The latest `now` a caller gave (for work done outside any call)."""
        return self._now

    @property
    def quarantined(self) -> int:
        return len(self._quarantine)

    # -- membership and time ---------------------------------------------------------
    def node_failed(self, node_id: str, now: float) -> None:
        self._call("node_failure", now, self.provider.on_node_failure, node_id, default=None)

    def members(self, live: list[str], now: float) -> None:
        if self._on_members is not None:
            self._call("members", now, self._on_members, live, now, default=None)

    def tick(self, now: float) -> None:
        self._now = now
        if self._tick is not None:
            self._call("tick", now, self._tick, now, default=None)
        if self._quarantine:
            self._retry_quarantined(now)

    def next_deadline(self) -> float | None:
        deadline: float | None = None
        if self._deadline is not None:
            deadline = self._call("next_deadline", self._now, self._deadline, default=None)
        if self._quarantine:
            soonest = min(q.retry_at for q in self._quarantine.values())
            deadline = soonest if deadline is None else min(deadline, soonest)
        return deadline

    def set_wakeup(self, wake: Callable[[], None]) -> None:
        """Give a provider with thread-safe fast-path writes a way to wake its host thread,
        so a flush due at `next_deadline()` is not missed while the host sleeps."""
        if self._set_wakeup is not None:
            self._call("set_wakeup", self._now, self._set_wakeup, wake, default=None)

    def close(self, now: float) -> None:
        if self._close is not None:
            self._call("close", now, self._close, default=None)

    # -- change detection ------------------------------------------------------------
    def changes(self, now: float) -> list[SyncableState]:
        """What the provider changed since the last call (its drain_changes, or a diff)."""
        if self._drain is not None:
            changed = list(self._call("drain_changes", now, self._drain, default=[]))
        else:
            changed = [s for s in self._call("sync_state", now, self.provider.get_sync_state,
                                             default=[])
                       if self._seen.get(state_key(s)) != (s.version, s.source_node)]
            for s in changed:
                self._seen[state_key(s)] = (s.version, s.source_node)
        return [s for s in changed if isinstance(s, SyncableState)]

    # -- faults ------------------------------------------------------------------------
    def take_faults(self) -> list[Fault]:
        """Distinct errors since the last call, for the host to log and publish."""
        faults, self._faults = self._faults, []
        return faults

    def _call(self, method: str, now: float, fn: Callable[..., Any], *args: Any,
              default: Any = ...) -> Any:
        """Call the provider; on an exception count and report it, then return `default`,
        or raise RpcError provider_error when there is none."""
        try:
            return fn(*args)
        except Exception as exc:
            self._fault(method, exc, now)
            if default is ...:
                raise RpcError("provider_error", _describe(exc)) from None
            return default

    def _fault(self, method: str, exc: BaseException, now: float) -> None:
        self._now = max(self._now, now)
        error = _describe(exc)
        self.counters[f"errors.{method}"] += 1
        self.last_error = {"method": method, "error": error}
        last = self._reported.get((method, error))
        if last is not None and now - last < FAULT_REPEAT_S:
            return
        self._reported[(method, error)] = now
        self._faults.append(Fault(method, error, "".join(traceback.format_exception(exc))))


def own_writes(changed: Iterable[SyncableState], node_id: str, op: str,
               args: Mapping[str, Any]) -> list[SyncableState]:
    """Of what a provider changed while it handled a request from the node (an apply,
    a clock, a node failure), the writes of its own that must leave like any local
    write: states this node wrote that the request did not deliver. A provider may
    write during any call (a rate provider flushes counts a drain finds due), and
    taking those for remote states would keep them from every other node."""
    mine = [s for s in changed if s.source_node == node_id]
    rows = args.get("states") if op == "apply" else None
    if not mine or not isinstance(rows, list):  # the usual apply: only others' states
        return mine
    delivered = {(r.get("k"), r.get("ver")) for r in rows if isinstance(r, dict)}
    return [s for s in mine if (s.key, s.version) not in delivered]


def _hook(provider: object, name: str) -> Any:
    hook = getattr(provider, name, None)
    return hook if callable(hook) else None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _add(total: dict[str, int], result: Mapping[str, int]) -> None:
    for key, n in result.items():
        total[key] += n
