"""The stick_table provider: replication, wall-clock expiry, coalescing, capacity (fake clocks)."""

from __future__ import annotations

import pytest
from lbstate_fakes import WALL0, FakeNodes

from actors.providers.base import ProviderOptionError
from actors.providers.stick_table import StickTableProvider, valid_value
from transport.protocol import LamportClock, StateProvider, make_syncable_state

IDS = ["node-a", "node-b", "node-c"]


def cluster(**options: object) -> FakeNodes[StickTableProvider]:
    return FakeNodes(StickTableProvider, IDS, {"ttl_s": 60, **options})


def get(p: StickTableProvider, key: str) -> dict[str, object]:
    return p.cmd_get({"key": key}, 0.0)


# --- pure rules and options -------------------------------------------------------------


@pytest.mark.parametrize(("value", "ok"), [
    ({"v": "b1", "exp": 1.5}, True), ({"v": [1], "exp": 2}, True), ({"v": None, "exp": 1}, False),
    ({"exp": 1}, False), ({"v": "b", "exp": "1"}, False), ({"v": "b", "exp": True}, False),
    ({"v": "b", "exp": float("nan")}, False), ({"v": "b", "exp": float("inf")}, False),
    ("b1", False)])
def test_remote_entry_values_are_checked(value: object, ok: bool) -> None:
    assert valid_value(value) is ok


@pytest.mark.parametrize("options", [
    {"ttl_s": 0}, {"ttl_s": -1}, {"ttl_s": "1"}, {"ttl_s": float("inf")}, {"max_entries": 0},
    {"max_entries": 1.5}, {"size": 3}, "ttl_s=1"])
def test_bad_options_are_refused_by_name(options: object) -> None:
    with pytest.raises(ProviderOptionError):
        StickTableProvider.validate_options(options)  # type: ignore[arg-type]


def test_it_implements_the_state_provider_protocol() -> None:
    assert isinstance(StickTableProvider("n", LamportClock()), StateProvider)


# --- replication and expiry -------------------------------------------------------------


def test_an_entry_put_on_one_node_is_found_on_every_node() -> None:
    c = cluster()
    c["node-a"].cmd_put({"key": "client-1", "value": "backend-2", "ttl_s": 30}, c.now)
    c.spread()
    c.wall += 10
    for n in IDS:
        assert get(c[n], "client-1") == {"found": True, "value": "backend-2",
                                          "expires_in_s": 20.0}


def test_the_default_ttl_is_the_ttl_option() -> None:
    c = cluster(ttl_s=5)
    c["node-a"].put("k", "v")
    assert c["node-a"].entry("k") == ("v", 5.0)


def test_an_entry_expires_at_the_same_wall_time_on_every_node_without_traffic() -> None:
    c = cluster()
    c["node-a"].put("client-1", "backend-2", ttl_s=30)
    c.spread()
    c.advance(29.999)
    assert all(c[n].lookup("client-1") == "backend-2" for n in IDS)
    c.advance(0.001)
    assert all(get(c[n], "client-1") == {"found": False, "value": None, "expires_in_s": None}
               for n in IDS)
    c.advance(100.0)
    assert c.spread() == 0  # expiry sends nothing


def test_a_put_after_expiry_brings_the_key_back() -> None:
    c = cluster()
    c["node-a"].put("k", "old", ttl_s=1)
    c.spread()
    c.advance(2.0)
    c["node-b"].put("k", "new", ttl_s=1)
    c.spread()
    assert [c[n].lookup("k") for n in IDS] == ["new"] * 3


def test_a_delete_is_replicated() -> None:
    c = cluster()
    c["node-a"].put("k", "v")
    c.spread()
    c["node-c"].cmd_del({"key": "k"}, c.now)
    assert c.spread() == 1
    assert [c[n].lookup("k") for n in IDS] == [None] * 3


def test_deleting_a_key_nobody_holds_sends_nothing() -> None:
    c = cluster()
    c["node-a"].delete("never")
    assert c.spread() == 0


def test_concurrent_puts_of_one_key_converge_on_one_value() -> None:
    c = cluster()
    c["node-a"].put("k", "from-a")
    c["node-b"].put("k", "from-b")
    c.spread()
    values = {c[n].lookup("k") for n in IDS}
    assert len(values) == 1 and values <= {"from-a", "from-b"}


# --- the fast path ----------------------------------------------------------------------


def test_many_puts_of_one_key_between_drains_become_one_state() -> None:
    c = cluster()
    for i in range(100):
        c["node-a"].put("client-1", f"backend-{i}")
    (state,) = c["node-a"].drain_changes()
    assert state.value == {"v": "backend-99", "exp": WALL0 + 60}


def test_lookup_sees_pending_puts_and_deletes() -> None:
    c = cluster()
    c["node-a"].put("k", "v")
    assert c["node-a"].lookup("k") == "v"
    c["node-a"].drain_changes()
    c["node-a"].delete("k")
    assert c["node-a"].lookup("k") is None


def test_pending_writes_are_due_at_once_and_written_by_tick() -> None:
    c = cluster()
    woken: list[int] = []
    c["node-a"].set_wakeup(lambda: woken.append(1))
    assert c["node-a"].next_deadline() is None
    c["node-a"].put("k", "v")
    c["node-a"].put("j", "v")
    assert woken == [1] and c["node-a"].next_deadline() == 0.0
    c["node-a"].tick(c.now)
    assert c["node-a"].next_deadline() is not None  # a sweep, now that entries are held
    assert len(c["node-a"].get_sync_state()) == 2


@pytest.mark.parametrize("args", [
    {"value": "v"}, {"key": "", "value": "v"}, {"key": "k"}, {"key": "k", "value": None},
    {"key": "k", "value": "v", "ttl_s": 0}, {"key": "k", "value": "v", "ttl_s": "5"},
    {"key": "k", "value": "v", "ttl_s": float("nan")}, {"key": "k", "value": {1: 2}},
    {"key": "k", "value": "x" * 70_000}])
def test_bad_put_arguments_raise_value_error_and_write_nothing(args: dict[str, object]) -> None:
    p = StickTableProvider("node-a", LamportClock())
    with pytest.raises(ValueError):
        p.cmd_put(args, 0.0)
    assert p.drain_changes() == []


# --- capacity ---------------------------------------------------------------------------


def test_past_max_entries_the_entries_expiring_soonest_are_deleted_expired_first() -> None:
    c = cluster(max_entries=3)
    a = c["node-a"]
    a.put("expired", "v", ttl_s=1)
    a.put("soon", "v", ttl_s=10)
    a.put("late", "v", ttl_s=100)
    a.drain_changes()
    c.advance(2.0)
    a.put("new", "v", ttl_s=50)
    a.put("newer", "v", ttl_s=60)
    tombstones = sorted(s.key for s in a.drain_changes() if s.value is None)
    assert tombstones == ["expired", "soon"]
    assert len(a) == 3 and a.evicted == 2


def test_a_node_over_capacity_from_remote_puts_evicts_at_its_sweep() -> None:
    c = cluster(max_entries=2)
    c["node-b"].apply_remote_state([
        make_syncable_state("stick_table", f"k{i}", {"v": "b", "exp": WALL0 + i}, i + 1, "node-a")
        for i in range(1, 5)])
    c["node-b"].drain_changes()
    c["node-b"].tick(c.now)
    assert sorted(s.key for s in c["node-b"].drain_changes()) == ["k1", "k2"]
    assert len(c["node-b"]) == 2
