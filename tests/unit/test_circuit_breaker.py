"""The circuit breaker provider: state machine, replication, trial ownership (fake clock)."""

from __future__ import annotations

from typing import Any

import pytest

from actors.core.rendezvous import owner
from actors.core.store import DEFAULT_TOMBSTONE_GRACE_S
from actors.providers.circuit_breaker import (
    TRANSITIONS,
    BreakerState,
    CircuitBreakerProvider,
    Event,
    ProviderOptionError,
)
from transport.protocol import LamportClock, StateProvider, SyncableState, make_syncable_state

IDS = ["node-a", "node-b", "node-c"]
OPTS = {"failure_threshold": 3, "window_s": 10, "open_s": 30}


def upstream_owned_by(node_id: str, ids: list[str] = IDS) -> str:
    return next(f"svc-{i}" for i in range(100) if owner(f"svc-{i}", ids) == node_id)


class Breakers:
    """Breaker providers of several nodes sharing one fake clock; `spread` plays gossip."""

    def __init__(self, ids: list[str], **opts: Any) -> None:
        self.now, self.wall = 1000.0, 1_700_000_000.0
        self.nodes = {n: CircuitBreakerProvider(n, LamportClock(), {**OPTS, **opts},
                                                now_fn=lambda: self.now,
                                                wall_fn=lambda: self.wall)
                      for n in ids}
        for p in self.nodes.values():
            p.on_members(ids, self.now)
        self.writes: list[SyncableState] = []

    def advance(self, dt: float) -> None:
        self.now += dt
        self.wall += dt
        for p in self.nodes.values():
            p.tick(self.now)
        self.spread()

    def spread(self) -> None:
        for p in self.nodes.values():
            changes = p.drain_changes()
            self.writes += [s for s in changes if s.source_node == p.node_id]
            for q in self.nodes.values():
                if q is not p and changes:
                    q.apply_remote_state(changes)
        for p in self.nodes.values():
            p.drain_changes()  # remote applications, already everywhere

    def record(self, node_id: str, upstream: str, ok: bool, times: int = 1) -> dict[str, Any]:
        for _ in range(times):
            row = self.nodes[node_id].cmd_record({"upstream": upstream, "ok": ok}, self.now)
        self.spread()
        return row

    def state(self, node_id: str, upstream: str) -> dict[str, Any]:
        return self.nodes[node_id].cmd_state({"upstream": upstream}, self.now)

    def states(self, upstream: str) -> set[str]:
        return {self.state(n, upstream)["state"] for n in self.nodes}


def solo(**opts: Any) -> tuple[Breakers, CircuitBreakerProvider]:
    b = Breakers(["node-a"], **opts)
    return b, b.nodes["node-a"]


# -- options and shape -------------------------------------------------------------------


def test_defaults_are_five_failures_in_ten_seconds_and_thirty_seconds_open():
    opts = CircuitBreakerProvider("n", LamportClock()).options
    assert (opts.failure_threshold, opts.window_s, opts.open_s, opts.half_open_successes) == (
        5, 10.0, 30.0, 1)


@pytest.mark.parametrize(("opts", "option"), [
    ({"failure_threshold": 0}, "failure_threshold"),
    ({"failure_threshold": 100_001}, "failure_threshold"),
    ({"failure_threshold": "5"}, "failure_threshold"),
    ({"window_s": 0}, "window_s"),
    ({"window_s": 86_401}, "window_s"),
    ({"open_s": "30"}, "open_s"),
    ({"open_s": -1}, "open_s"),
    ({"open_s": True}, "open_s"),
    ({"half_open_successes": 1.0}, "half_open_successes"),
    ({"half_open_successes": 0}, "half_open_successes"),
    ({"window_s": float("inf")}, "window_s"),
    ({"threshold": 3}, "threshold"),
])
def test_bad_options_raise_a_value_error_naming_the_option(opts, option):
    with pytest.raises(ValueError, match=option) as err:
        CircuitBreakerProvider("n", LamportClock(), opts)
    assert isinstance(err.value, ProviderOptionError) and err.value.option == option
    with pytest.raises(ProviderOptionError):  # what the config loader calls
        CircuitBreakerProvider.validate_options(opts)


def test_the_provider_satisfies_the_state_provider_protocol():
    _, p = solo()
    assert isinstance(p, StateProvider)
    assert p.provider_type() == "circuit_breaker"


@pytest.mark.parametrize("args", [{}, {"upstream": ""}, {"upstream": "x"},
                                  {"upstream": "x", "ok": 1}, {"upstream": 5, "ok": True}])
def test_record_refuses_bad_arguments(args):
    _, p = solo()
    with pytest.raises(ValueError):
        p.cmd_record(args, 0.0)


def test_the_transition_table_has_exactly_the_four_documented_moves():
    assert TRANSITIONS == {
        (BreakerState.CLOSED, Event.TRIP): BreakerState.OPEN,
        (BreakerState.OPEN, Event.TIMEOUT): BreakerState.HALF_OPEN,
        (BreakerState.HALF_OPEN, Event.TRIAL_FAILED): BreakerState.OPEN,
        (BreakerState.HALF_OPEN, Event.TRIAL_PASSED): BreakerState.CLOSED,
    }


# -- the state machine on one node -------------------------------------------------------


def test_an_unknown_upstream_is_closed_and_allowed():
    b, _ = solo()
    assert b.state("node-a", "db") | {"opened_at": None} == {
        "upstream": "db", "state": "closed", "allow": True, "owner": "node-a",
        "opened_at": None, "tripped_by": None, "failures": 0}


def test_threshold_failures_within_the_window_open_the_breaker():
    b, _ = solo()
    assert b.record("node-a", "db", False, 2)["state"] == "closed"
    row = b.record("node-a", "db", False)
    assert (row["state"], row["allow"], row["tripped_by"]) == ("open", False, "node-a")
    assert row["opened_at"] == b.wall
    assert len(b.writes) == 1


def test_failures_spread_wider_than_the_window_do_not_open_it():
    b, _ = solo()
    for _ in range(6):
        b.record("node-a", "db", False)
        b.advance(5.0)  # only two failures are ever inside the 10 s window
    assert b.state("node-a", "db")["state"] == "closed"
    assert b.writes == []


def test_successes_write_nothing_while_closed():
    b, _ = solo()
    b.record("node-a", "db", True, 50)
    assert b.writes == []


def test_records_while_open_are_ignored():
    b, p = solo()
    b.record("node-a", "db", False, 3)
    b.record("node-a", "db", True, 5)
    assert b.state("node-a", "db")["state"] == "open"
    assert p.ignored == 5


def test_open_moves_to_half_open_after_open_s_on_the_owner():
    b, p = solo()
    b.record("node-a", "db", False, 3)
    assert p.next_deadline() == b.now + 30
    b.advance(29.9)
    assert b.state("node-a", "db")["state"] == "open"
    b.advance(0.1)
    row = b.state("node-a", "db")
    assert (row["state"], row["allow"], row["tripped_by"]) == ("half_open", True, "node-a")
    assert p.next_deadline() is None


def half_open(b: Breakers, node_id: str, upstream: str) -> None:
    b.record(node_id, upstream, False, 3)
    b.advance(30.0)
    assert b.states(upstream) == {"half_open"}


def test_a_success_in_half_open_closes_the_breaker():
    b, _ = solo()
    half_open(b, "node-a", "db")
    row = b.record("node-a", "db", True)
    assert (row["state"], row["allow"], row["opened_at"], row["tripped_by"]) == (
        "closed", True, None, None)


def test_half_open_successes_sets_how_many_trials_must_pass():
    b, _ = solo(half_open_successes=2)
    half_open(b, "node-a", "db")
    assert b.record("node-a", "db", True)["state"] == "half_open"
    assert b.record("node-a", "db", True)["state"] == "closed"


def test_a_failure_in_half_open_reopens_and_restarts_the_timer():
    b, p = solo()
    half_open(b, "node-a", "db")
    row = b.record("node-a", "db", False)
    assert (row["state"], row["opened_at"]) == ("open", b.wall)
    assert p.next_deadline() == b.now + 30


def test_failures_from_before_a_close_do_not_count_after_it():
    b, _ = solo()
    half_open(b, "node-a", "db")
    b.record("node-a", "db", True)
    assert b.record("node-a", "db", False, 2)["state"] == "closed"


def test_reset_closes_an_open_breaker():
    b, p = solo()
    b.record("node-a", "db", False, 3)
    row = p.cmd_reset({"upstream": "db"}, b.now)
    assert (row["state"], row["allow"]) == ("closed", True)
    assert p.next_deadline() is None


def test_list_shows_replicated_breakers_and_local_failure_counts():
    b, p = solo()
    b.record("node-a", "db", False, 3)
    b.record("node-a", "cache", False)
    rows = {row["upstream"]: row for row in p.cmd_list({}, b.now)}
    assert (rows["db"]["state"], rows["cache"]["state"], rows["cache"]["failures"]) == (
        "open", "closed", 1)


# -- across nodes ------------------------------------------------------------------------


def test_a_breaker_that_trips_on_one_node_opens_on_all():
    b = Breakers(IDS)
    b.record("node-a", "db", False, 3)
    for node_id in IDS:
        row = b.state(node_id, "db")
        assert (row["state"], row["allow"], row["tripped_by"]) == ("open", False, "node-a")


def test_failure_counting_is_local_to_each_node():
    b = Breakers(IDS)
    for node_id in IDS:
        b.record(node_id, "db", False, 2)
    assert b.states("db") == {"closed"}


def test_only_the_owner_moves_open_to_half_open_and_runs_the_trial():
    b = Breakers(IDS)
    name = upstream_owned_by("node-b")
    b.record("node-a", name, False, 3)
    b.advance(30.0)
    half_opens = [s for s in b.writes if s.value["state"] == "half_open"]
    assert [s.source_node for s in half_opens] == ["node-b"]
    assert {n: b.state(n, name)["allow"] for n in IDS} == {
        "node-a": False, "node-b": True, "node-c": False}


def test_trial_results_from_non_owners_are_ignored():
    b = Breakers(IDS)
    name = upstream_owned_by("node-b")
    half_open(b, "node-a", name)
    b.record("node-a", name, True)
    b.record("node-c", name, False)
    assert b.states(name) == {"half_open"}
    b.record("node-b", name, True)
    assert b.states(name) == {"closed"}


def test_the_trial_of_a_failed_owner_passes_to_the_next_node():
    b = Breakers(IDS)
    name = upstream_owned_by("node-b")
    b.record("node-a", name, False, 3)
    del b.nodes["node-b"]
    for p in b.nodes.values():
        p.on_node_failure("node-b")
    b.advance(30.0)
    heir = owner(name, ["node-a", "node-c"])
    assert {n: b.state(n, name)["allow"] for n in b.nodes} == {
        n: n == heir for n in b.nodes}


def test_on_members_moves_the_trial_to_the_new_owner():
    b = Breakers(IDS)
    name = upstream_owned_by("node-b")
    half_open(b, "node-a", name)
    del b.nodes["node-b"]  # partitioned away: the others see it leave
    for p in b.nodes.values():
        p.on_members(["node-a", "node-c"], b.now)
    heir = owner(name, ["node-a", "node-c"])
    assert {n: b.state(n, name)["allow"] for n in b.nodes} == {n: n == heir for n in b.nodes}


def test_open_s_is_measured_from_when_each_node_saw_the_breaker_open():
    b = Breakers(IDS)
    name = upstream_owned_by("node-b")
    trip = b.nodes["node-a"]
    for _ in range(3):
        trip.cmd_record({"upstream": name, "ok": False}, b.now)
    held = trip.drain_changes()
    b.advance(10.0)  # node-b hears of it 10 s late
    b.nodes["node-b"].apply_remote_state(held)
    assert b.nodes["node-b"].next_deadline() == b.now + 30


def test_concurrent_trips_converge_on_one_winner():
    b = Breakers(["node-a", "node-b"])
    for node_id in ("node-a", "node-b"):
        for _ in range(3):
            b.nodes[node_id].cmd_record({"upstream": "db", "ok": False}, b.now)
    a, c = (b.nodes[n].drain_changes()[0] for n in ("node-a", "node-b"))
    assert a.version == c.version  # same Lamport version: a conflict
    assert b.nodes["node-a"].apply_remote_state([c])["conflicts"] == 1
    assert b.nodes["node-b"].apply_remote_state([a])["conflicts"] == 1
    assert {b.state(n, "db")["tripped_by"] for n in b.nodes} == {"node-b"}


# -- replicated state --------------------------------------------------------------------


def breaker_state(version: int, state: str = "open", key: str = "db") -> SyncableState:
    value = {"state": state, "opened_at": 5.0, "tripped_by": "node-z"}
    return make_syncable_state("circuit_breaker", key, value, version, "node-z")


def test_a_remote_open_state_opens_the_breaker_locally_and_clears_failures():
    b, p = solo()
    b.record("node-a", "db", False, 2)
    assert p.apply_remote_state([breaker_state(9)])["applied"] == 1
    row = b.state("node-a", "db")
    assert (row["state"], row["allow"], row["failures"]) == ("open", False, 0)
    assert p.next_deadline() == b.now + 30


def test_a_remote_close_drops_the_local_failure_window():
    b, p = solo()
    p.apply_remote_state([breaker_state(9)])
    p.apply_remote_state([breaker_state(10, "closed")])
    assert b.record("node-a", "db", False, 2)["state"] == "closed"
    assert p.next_deadline() is None


@pytest.mark.parametrize("value", [
    "open", {"state": "ajar", "opened_at": None, "tripped_by": None},
    {"state": "open", "opened_at": "noon", "tripped_by": None},
    {"state": "open", "opened_at": 1.0, "tripped_by": 3},
])
def test_malformed_remote_values_are_rejected(value):
    _, p = solo()
    state = make_syncable_state("circuit_breaker", "db", value, 3, "node-z")
    assert p.apply_remote_state([state]) == {"applied": 0, "conflicts": 0, "rejected": 1}
    assert p.get_sync_state() == []


def test_remote_states_obey_the_version_rule():
    _, p = solo()
    assert p.apply_remote_state([breaker_state(9)])["applied"] == 1
    assert p.apply_remote_state([breaker_state(8, "closed")])["rejected"] == 1
    assert p.get_state_digest() == {("circuit_breaker", "db"): 9}


def test_a_tombstone_reads_as_closed():
    b, p = solo()
    p.apply_remote_state([breaker_state(9)])
    p.apply_remote_state([make_syncable_state("circuit_breaker", "db", None, 10, "node-z")])
    assert b.state("node-a", "db")["state"] == "closed"
    assert [s.value for s in p.get_sync_state()] == [None]


def test_a_remote_state_below_the_gc_horizon_is_still_applied():
    # The anti-entropy mirror is the one horizon gate; a provider applies what it is offered.
    b, p = solo()
    p.apply_remote_state([make_syncable_state("circuit_breaker", "cache", None, 10, "node-z")])
    b.advance(DEFAULT_TOMBSTONE_GRACE_S + 1)  # tick collects the tombstone: horizon 10
    assert p.get_sync_state() == []
    assert p.apply_remote_state([breaker_state(5)]) == {"applied": 1, "conflicts": 0,
                                                        "rejected": 0}
    assert b.state("node-a", "db")["state"] == "open"
    assert p.get_state_digest() == {("circuit_breaker", "db"): 5}


def test_drain_changes_returns_local_and_remote_changes_once():
    _, p = solo()
    for _ in range(3):
        p.cmd_record({"upstream": "db", "ok": False}, 1000.0)
    p.apply_remote_state([breaker_state(50, key="cache")])
    assert {(s.key, s.source_node) for s in p.drain_changes()} == {
        ("db", "node-a"), ("cache", "node-z")}
    assert p.drain_changes() == []
    p.apply_remote_state([breaker_state(50, key="cache")])
    p.cmd_record({"upstream": "db", "ok": True}, 1000.0)
    assert p.drain_changes() == []
