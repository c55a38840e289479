"""What the built-in providers share: a replicated table, option and argument checks.

Theory of operation:

* A provider's replicated states live in a `ReplicatedTable`: a `Store`
  holding its one state type (so version order, conflicts and tombstone GC
  are the store's), a check of remote values, and a change log. Local
  writes and accepted remote states both land in the log that `drain`
  empties (latest state per key), which is what the provider host publishes.
* Remote states are applied by version only, WITHOUT the store's GC-horizon
  check: the node's anti-entropy mirror is the one gate against
  resurrection (it offers a provider only what it accepted itself). A second
  gate here, collecting tombstones on its own schedule, would now and then
  refuse what the mirror just accepted, and the two would stay different.
* Every remote state of the table's type is witnessed on the provider's
  Lamport clock (receive rule), so later local writes are newer.
* `TableProvider` answers the StateProvider queries and `drain_changes` from
  the table, the same way for every provider built on one.
* Options (`[[providers]] options`) are declared as `transport.settings`
  Fields and checked once, when the config loads (`validate_options`), and
  again at start; a bad one raises `ProviderOptionError` naming it. Command
  arguments raise ValueError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from actors.core.store import DEFAULT_TOMBSTONE_GRACE_S, Store
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
from transport.settings import Field, SettingsError, known_keys, read

# --- options and arguments --------------------------------------------------------------


class ProviderOptionError(ValueError):
    """A bad `[[providers]] options` entry; `.option` names it, `.reason` says why."""

    def __init__(self, provider: str, option: str, reason: str) -> None:
        super().__init__(f"{provider} option {option}: {reason}")
        self.provider, self.option, self.reason = provider, option, reason


def read_options(provider: str, options: object, fields: Sequence[Field]) -> dict[str, Any]:
    """The `options` table checked against `fields` (`transport.settings`), defaults
    filled in, by attribute name. Raises: ProviderOptionError naming the option."""
    try:
        return read(fields, known_keys(options, [f.key for f in fields], "option"))
    except SettingsError as exc:
        raise _option_error(provider, exc) from None


def _option_error(provider: str, exc: SettingsError) -> ProviderOptionError:
    return ProviderOptionError(provider, exc.key or "options", exc.reason)


def arg_name(args: object, name: str) -> str:
    """A command argument that names a key. Raises: ValueError."""
    value = args.get(name) if isinstance(args, Mapping) else None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_KEY_LEN:
        raise ValueError(f"argument {name} must be a non-empty string "
                         f"of at most {MAX_KEY_LEN} characters")
    return value


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- the replicated table ---------------------------------------------------------------


class ReplicatedTable:
    """One provider's replicated states: a Store of one type, value checks, a change log.

    `valid_value` vets remote values (tombstones always pass); None accepts any.
    """

    def __init__(self, state_type: str, node_id: str, clock: LamportClock,
                 valid_value: Callable[[Any], bool] | None = None,
                 tombstone_grace_s: float = DEFAULT_TOMBSTONE_GRACE_S) -> None:
        self.state_type, self.node_id, self.clock = state_type, node_id, clock
        self._valid_value = valid_value
        self._store = Store(tombstone_grace_s, summarised=False)
        self._changes: dict[tuple[str, str], SyncableState] = {}

    def get(self, key: str) -> SyncableState | None:
        """The held state of `key`, a tombstone included."""
        return self._store.get(self.state_type, key)

    def value(self, key: str) -> Any | None:
        """The live value of `key`; None if absent or deleted."""
        state = self._store.get(self.state_type, key)
        return None if state is None else state.value

    def keys(self) -> list[str]:
        """Keys with a live (non-tombstone) value."""
        return [s.key for s in self._store.items(self.state_type) if not is_tombstone(s)]

    def __len__(self) -> int:
        """States held, tombstones included."""
        return len(self._store)

    def states(self) -> list[SyncableState]:
        return self._store.items(self.state_type)

    def digest(self) -> dict[tuple[str, str], int]:
        return self._store.digest(self.state_type)

    def digest_in(self, buckets: Iterable[int]) -> dict[tuple[str, str], int]:
        """`digest()` of the keys in summary `buckets` only (O(keys in them))."""
        return self._store.digest_in(buckets, self.state_type)

    def write(self, key: str, value: Any, now: float) -> SyncableState:
        state = self._store.write(self.state_type, key, value, self.clock, self.node_id, now)
        self._changes[state_key(state)] = state
        return state

    def apply(self, states: Sequence[SyncableState], now: float
              ) -> tuple[ApplyResult, list[SyncableState]]:
        """Apply remote states by version (no horizon check: see the module docstring).

        Not a state, another type or a malformed value counts as rejected.
        """
        ours = [s for s in states if isinstance(s, SyncableState)
                and s.state_type == self.state_type
                and (s.value is None or self._valid_value is None or self._valid_value(s.value))]
        for state in ours:
            try:  # Lamport receive rule, so later local writes are newer
                self.clock.update(check_u63(state.version, "version"))
            except ProtocolError:
                continue  # the store rejects and counts it
        result, changed = self._store.apply(ours, now, enforce_horizon=False)
        result["rejected"] += len(states) - len(ours)
        for state in changed:
            self._changes[state_key(state)] = state
        return result, changed

    def drain(self) -> list[SyncableState]:
        changes, self._changes = list(self._changes.values()), {}
        return changes

    def gc(self, now: float) -> int:
        return self._store.gc(now)


class TableProvider:
    """StateProvider queries and the host's `drain_changes`, answered from `_table`."""

    _table: ReplicatedTable

    def provider_type(self) -> str:
        return self._table.state_type

    def __len__(self) -> int:
        """How many states it holds: for `status` and the metrics, in O(1)."""
        return len(self._table)

    def get_sync_state(self) -> list[SyncableState]:
        return self._table.states()

    def get_state_digest(self) -> dict[tuple[str, str], int]:
        return self._table.digest()

    def get_state_digest_in(self, buckets: Iterable[int]) -> dict[tuple[str, str], int]:
        return self._table.digest_in(buckets)

    def drain_changes(self) -> list[SyncableState]:
        """States changed (locally or remotely) since the last call, latest per key."""
        return self._table.drain()
