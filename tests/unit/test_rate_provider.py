"""The rate provider: shards, the sliding window, flushing and restarts (fake clocks)."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
from lbstate_fakes import WALL0, FakeNodes
from test_config import write

from actors.node.config import ConfigError, load_config
from actors.node.plan import provider_class
from actors.providers.base import ProviderOptionError
from actors.providers.rate import (
    CARRY_MAX_S,
    MAX_RATE_KEY,
    RateProvider,
    carried,
    in_window,
    shard_key,
    split_shard_key,
    valid_value,
    windowed_sum,
)
from transport.protocol import LamportClock, StateProvider, SyncableState, make_syncable_state

IDS = ["node-a", "node-b", "node-c"]


def cluster(**options: object) -> FakeNodes[RateProvider]:
    return FakeNodes(RateProvider, IDS, {"window_s": 10, "flush_ms": 20, **options})


def flush_and_spread(c: FakeNodes[RateProvider]) -> None:
    c.advance(0.05)
    c.spread()


# --- pure rules -------------------------------------------------------------------------


@pytest.mark.parametrize(("second", "kept"), [
    (100, True), (91, True), (90, True), (89, False), (110, True), (111, False)])
def test_a_bucket_is_kept_from_the_oldest_partial_one_to_window_s_ahead(second: int,
                                                                        kept: bool) -> None:
    assert in_window(second, 100, 10) is kept


@pytest.mark.parametrize(("now", "oldest_share"), [
    (100.0, 100), (100.25, 75), (100.5, 50), (100.99, 1)])
def test_windowed_sum_counts_the_oldest_bucket_by_the_part_still_in_the_window(
        now: float, oldest_share: int) -> None:
    buckets = [(89, 1000), (90, 100), (91, 10), (100, 1), (110, 3), (111, 7)]
    assert windowed_sum(buckets, now, 10) == 14 + oldest_share


def test_a_steady_rate_reads_the_same_total_across_second_boundaries() -> None:
    # 1000 per second for 30 s: the last 10 s always hold 10,000 (no saw tooth)
    def counted_by(t: float) -> list[tuple[int, int]]:
        return [(s, 1000 if s + 1 <= t else round(1000 * (t - s))) for s in range(int(t) + 1)
                if s < t]
    for t in (20.0, 20.1, 20.5, 20.999, 21.0, 21.3):
        assert windowed_sum(counted_by(t), t, 10) == 10_000


@pytest.mark.parametrize(("now", "exact"), [(110.3, 980), (110.5, 1000), (110.8, 1000)])
def test_a_bucket_whose_counting_began_mid_second_is_spread_over_the_rest_of_it(
        now: float, exact: int) -> None:
    # 100/s from 100.5 on: second 100 holds 50 counts, all in its second half
    buckets = [(100, 50), *((s, 100) for s in range(101, 110)),
               (110, round(100 * (now - 110)))]
    assert windowed_sum(buckets, now, 10, {100: 500}) == exact
    assert windowed_sum(buckets, now, 10) != exact  # spread over the whole second: off


@pytest.mark.parametrize(("skey", "parts"), [
    ("k@node-a", ("k", "node-a")), ("user@example.com@n1", ("user@example.com", "n1")),
    ("nosep", None), ("@n", None), ("k@", None)])
def test_a_shard_key_splits_at_its_last_at_sign(skey: str,
                                                parts: tuple[str, str] | None) -> None:
    assert split_shard_key(skey) == parts


@pytest.mark.parametrize(("value", "ok"), [
    ([[1, 2]], True), ([], True), ([(1, 2), (3, 4)], True), ([[1, 0]], False),
    ([[1, -1]], False), ([[-1, 1]], False), ([[1, True]], False), ([[1.5, 1]], False),
    ([[1, 2, 3]], False), ({"1": 2}, False), ("x", False), ([[0, 1]] * 1202, False),
    ({"b": [[1, 2]], "at": 1000, "r": 5}, True), ({"b": [], "at": 0, "r": 0}, True),
    ({"b": [[1, 2]], "at": 1000}, False), ({"b": [[1, 2]], "at": 1.5, "r": 5}, False),
    ({"b": [[1, 2]], "at": 1000, "r": -1}, False), ({"b": [[1, 0]], "at": 1, "r": 1}, False),
    ({"b": [[1, 2]], "at": 1000, "r": 5, "x": 1}, False),
    ({"b": [[1, 2]], "at": 1000, "r": 5, "f": [[1, 500]]}, True),
    ({"b": [[1, 2]], "at": 1000, "r": 5, "f": []}, True),
    ({"b": [[1, 2]], "at": 1000, "r": 5, "f": [[1, 0]]}, False),
    ({"b": [[1, 2]], "at": 1000, "r": 5, "f": [[1, 1000]]}, False),
    ({"b": [[1, 2]], "at": 1000, "r": 5, "f": [[1, 1.5]]}, False),
    ({"b": [[1, 2]], "at": 1000, "r": 5, "f": [[1, 5, 6]]}, False),
    ({"b": [[1, 2]], "at": 1000, "r": 5, "f": [[0, 1]] * 1202}, False),
    ({"b": [[1, 2]], "at": 1000, "r": 5, "f": [[1, 500]], "x": 1}, False)])
def test_remote_shard_values_are_checked(value: object, ok: bool) -> None:
    assert valid_value(value) is ok


@pytest.mark.parametrize("options", [
    {"window_s": 0}, {"window_s": 601}, {"window_s": 2.5}, {"window_s": True},
    {"flush_ms": 0}, {"flush_ms": "20"}, {"interval": 1}, [1]])
def test_bad_options_are_refused_by_name(options: object) -> None:
    with pytest.raises(ProviderOptionError):
        RateProvider.validate_options(options)  # type: ignore[arg-type]


def test_it_implements_the_state_provider_protocol() -> None:
    assert isinstance(RateProvider("n", LamportClock()), StateProvider)


# --- counting, flushing, replication ----------------------------------------------------


def test_counting_that_begins_mid_second_reads_exact_on_every_node_a_window_later() -> None:
    c = cluster()
    c.advance(0.5)  # WALL0 + 0.5: counting begins half-way through a second
    for _ in range(202):  # 20 every 50 ms (400/s), the last at WALL0 + 10.55
        c["node-a"].add("api", 20)
        flush_and_spread(c)
    # A read at WALL0 + 10.6: the window (WALL0 + 0.6, WALL0 + 10.6] holds the adds
    # from 0.65 to 10.55, 3,980. The first second's 200 read as spread over its second
    # half give 4,000; spread over the whole second they gave 3,920.
    assert abs(c.wall - WALL0 - 10.6) < 1e-3
    for node in IDS:
        assert abs(c[node].total("api") - 3980) <= 20


def test_a_node_reads_its_own_adds_before_they_are_flushed() -> None:
    c = cluster()
    c["node-a"].add("api", 3)
    assert len(c["node-a"].drain_changes()) == 1  # the first flush is due at once
    c["node-a"].add("api", 2)
    assert c["node-a"].drain_changes() == []  # the next one after flush_ms
    assert c["node-a"].total("api") == 5


def test_many_adds_between_flushes_become_one_state() -> None:
    c = cluster()
    for _ in range(1000):
        c["node-a"].add("api")
    c["node-a"].add("web", 2)
    c.advance(0.0)  # the first flush is due at once
    states = c["node-a"].drain_changes()
    assert sorted(s.key for s in states) == ["api@node-a", "web@node-a"]
    assert [s.value["b"] for s in states if s.key == "api@node-a"] == [[[int(WALL0), 1000]]]


def test_the_first_add_is_due_at_a_finite_time_already_past() -> None:
    c = cluster()
    assert c["node-a"].next_deadline() is None  # idle: no wake-ups
    c["node-a"].add("api")
    deadline = c["node-a"].next_deadline()
    assert deadline is not None and 0.0 <= deadline <= c.now


def test_a_shard_is_written_at_most_once_per_flush_interval() -> None:
    c = cluster(flush_ms=100)
    c["node-a"].add("api")
    c.advance(0.0)
    assert len(c["node-a"].drain_changes()) == 1
    c["node-a"].add("api")
    c.advance(0.05)
    assert c["node-a"].drain_changes() == []
    assert c["node-a"].next_deadline() == pytest.approx(c.now + 0.05)
    c.advance(0.06)
    assert [s.value["b"] for s in c["node-a"].drain_changes()] == [[[int(WALL0), 2]]]


@pytest.mark.parametrize(("now", "expected"), [
    (100.0, 0), (100.1, 100), (100.5, 500), (101.0, 500), (200.0, 0)])
def test_a_shard_is_carried_forward_at_its_rate_for_at_most_carry_max_s(
        now: float, expected: int) -> None:
    assert CARRY_MAX_S == 0.5
    assert carried(100.0, 1000, now, 10) == expected


def test_carrying_forward_stops_at_the_window_and_for_rate_zero() -> None:
    assert carried(100.0, 1000, 110.2, 10) == 300  # (100.2, 100.5] is still in it
    assert carried(100.0, 0, 100.3, 10) == 0


def test_a_steady_count_reads_exactly_on_another_node_however_late_it_arrives() -> None:
    """While counting at a steady rate, a shard that is 0.3 s old is carried forward by
    its rate, so the other node reads the true window, not 0.3 s of counts less."""
    c = cluster()
    for _ in range(300):  # 3 s at 1,000 adds/s (advance ticks: a flush every 20 ms)
        c["node-a"].add("api", 10)
        c.advance(0.01)
    c["node-b"].apply_remote_state(c["node-a"].drain_changes())
    c.wall += 0.3  # the shard reaches node-b late, node-a goes on counting meanwhile
    late = c["node-b"].total("api")
    assert late == pytest.approx(3000 + 300, abs=10)  # 0.3 s more at 1,000/s


def test_when_counting_stops_the_next_flush_stops_the_carrying() -> None:
    c = cluster()
    for _ in range(150):
        c["node-a"].add("api", 10)
        c.advance(0.01)
    c.advance(0.02)  # the last counts leave, at the rate they were counted at
    c.advance(0.02)  # one quiet flush: perhaps a pause, so nothing is written
    assert c["node-a"].drain_changes()[-1].value["r"] > 0
    c.advance(0.02)  # two: counting stopped, and this flush says so (rate 0)
    assert c["node-a"].next_deadline() != pytest.approx(c.now + 0.02)
    states = c["node-a"].drain_changes()
    assert states[-1].value["r"] == 0
    c["node-b"].apply_remote_state(states)
    c.wall += 0.4
    assert c["node-b"].total("api") == c["node-a"].total("api") == 1500


def test_a_burst_after_a_quiet_second_is_not_carried_forward() -> None:
    c = cluster()
    c["node-a"].add("api", 1000)
    c.advance(0.0)
    (state,) = c["node-a"].drain_changes()
    assert state.value["r"] == 0
    c["node-b"].apply_remote_state([state])
    c.wall += 0.3
    assert c["node-b"].total("api") == 1000


def test_an_older_nodes_bare_bucket_list_still_counts() -> None:
    p = RateProvider("node-a", LamportClock(), wall_fn=lambda: WALL0 + 0.5)
    old = make_syncable_state("rate", "api@node-b", [[int(WALL0), 7]], 3, "node-b")
    assert p.apply_remote_state([old])["applied"] == 1
    assert p.total("api") == 7


def test_totals_are_the_sum_of_every_nodes_shard_on_every_node() -> None:
    c = cluster()
    for i, n in enumerate(IDS):
        c[n].add("api", i + 1)
    flush_and_spread(c)
    for n in IDS:
        assert c[n].cmd_get({"key": "api"}, c.now) == {
            "total": 6, "per_node": {"node-a": 1, "node-b": 2, "node-c": 3}, "window_s": 10}


def test_counts_leave_the_total_once_the_window_has_passed_them() -> None:
    c = cluster(window_s=3)
    c["node-a"].add("api", 5)  # wall second s
    flush_and_spread(c)
    c.wall = WALL0 + 1.5
    c["node-b"].add("api", 1)  # s + 1
    flush_and_spread(c)
    c.wall = WALL0 + 2.99  # still second s + 2: both count
    assert [c[n].total("api") for n in IDS] == [6, 6, 6]
    c.wall = WALL0 + 3.0  # the window (s, s + 3] still holds all of second s
    assert [c[n].total("api") for n in IDS] == [6, 6, 6]
    c.wall = WALL0 + 3.8  # a fifth of second s is left in it: 5 * 0.2 of node-a's
    assert [c[n].total("api") for n in IDS] == [2, 2, 2]
    c.wall = WALL0 + 4.0  # second s is out; node-b's s + 1 is the oldest, in full
    assert [c[n].total("api") for n in IDS] == [1, 1, 1]
    c.wall = WALL0 + 4.5  # half of it, rounded up
    assert [c[n].total("api") for n in IDS] == [1, 1, 1]
    c.wall = WALL0 + 5.0
    assert [c[n].total("api") for n in IDS] == [0, 0, 0]


def test_a_failed_nodes_shard_leaves_the_total_after_the_window() -> None:
    c = cluster(window_s=2)
    c["node-c"].add("api", 4)
    c["node-a"].add("api", 1)
    flush_and_spread(c)
    for n in ("node-a", "node-b"):
        c[n].on_node_failure("node-c")
        assert c[n].total("api") == 5  # membership is not consulted: totals stay equal
    for _ in range(3):  # node-c is gone; node-a keeps counting, one per second
        c.advance(1.0)
        c["node-a"].add("api", 1)
        c.spread(among=["node-a", "node-b"])
    c.advance(0.05)
    c.spread(among=["node-a", "node-b"])
    # at s + 3.1 the window (s + 1.1, s + 3.1] holds 0.9 of node-a's s + 1 (rounded: 1),
    # its s + 2 and s + 3, and nothing of node-c's second s
    assert c["node-a"].per_node("api") == c["node-b"].per_node("api") == {"node-a": 3}


def test_a_shard_naming_another_node_than_its_writer_is_rejected() -> None:
    p = RateProvider("node-a", LamportClock())
    forged = make_syncable_state("rate", shard_key("api", "node-b"), [[int(WALL0), 9]], 5,
                                 "node-c")
    assert p.apply_remote_state([forged])["rejected"] == 1
    assert p.total("api") == 0


def test_malformed_remote_shards_are_rejected_and_counted() -> None:
    p = RateProvider("node-a", LamportClock())
    bad = [make_syncable_state("rate", "api@node-b", [["x", 1]], 3, "node-b"),
           make_syncable_state("rate", "nosep", [[1, 1]], 3, "nosep"),
           SyncableState("kv", "k", 1, 1, "node-b")]
    assert p.apply_remote_state(bad) == {"applied": 0, "conflicts": 0, "rejected": 3}


def test_an_older_shard_version_never_replaces_a_newer_one() -> None:
    c = cluster()
    c["node-a"].add("api", 1)
    c.advance(0.05)
    old = c["node-a"].drain_changes()
    c["node-a"].add("api", 1)
    c.advance(0.05)
    new = c["node-a"].drain_changes()
    c["node-b"].apply_remote_state(new)
    assert c["node-b"].apply_remote_state(old)["rejected"] == 1
    assert c["node-b"].total("api") == 2


def test_an_idle_shard_is_deleted_by_its_owner_and_dropped_everywhere() -> None:
    c = cluster(window_s=2)
    c["node-a"].add("api", 1)
    flush_and_spread(c)
    c.advance(3.0)
    assert c.spread() == 1  # the tombstone
    assert c.sent[-1].value is None and c.sent[-1].key == "api@node-a"
    assert c["node-a"].next_deadline() is None  # nothing left to sweep: an idle node sleeps
    assert all(c[n].per_node("api") == {} for n in IDS)


def test_a_restarted_node_adds_to_the_shard_its_earlier_life_published() -> None:
    c = cluster()
    c["node-a"].add("api", 7)
    flush_and_spread(c)
    reborn = RateProvider("node-a", LamportClock(), {"window_s": 10},
                          now_fn=lambda: c.now, wall_fn=lambda: c.wall)
    reborn.add("api", 1)  # counted before it heard of its old shard
    reborn.apply_remote_state(c["node-b"].get_sync_state())  # from the cluster
    assert reborn.total("api") == 8
    reborn.tick(c.now + 1.0)
    (state,) = [s for s in reborn.drain_changes() if s.source_node == "node-a"]
    assert state.value["b"] == [[int(WALL0), 8]]
    c["node-b"].apply_remote_state([state])
    assert c["node-b"].total("api") == 8


def test_future_buckets_past_the_window_never_count() -> None:
    p = RateProvider("node-a", LamportClock(), wall_fn=lambda: WALL0)
    far = make_syncable_state("rate", "api@node-b", [[int(WALL0) + 3600, 5]], 3, "node-b")
    p.apply_remote_state([far])
    assert p.total("api") == 0


# --- commands and the fast path ---------------------------------------------------------


@pytest.mark.parametrize("args", [
    {}, {"key": ""}, {"key": 5}, {"key": "k" * (MAX_RATE_KEY + 1)}, {"key": "k", "n": -1},
    {"key": "k", "n": True}, {"key": "k", "n": 1.5}, {"key": "k", "n": 2**40}])
def test_bad_add_arguments_raise_value_error_and_count_nothing(args: dict[str, object]) -> None:
    p = RateProvider("node-a", LamportClock())
    with pytest.raises(ValueError):
        p.cmd_add(args, 0.0)
    assert p.next_deadline() is None and p.drain_changes() == []


def test_the_wakeup_is_called_when_a_clean_provider_gets_its_first_add() -> None:
    c = cluster()
    woken: list[int] = []
    c["node-a"].set_wakeup(lambda: woken.append(1))
    c["node-a"].add("a")
    c["node-a"].add("b")
    assert woken == [1]
    c.advance(0.05)
    c["node-a"].add("a")
    assert woken == [1, 1]


def test_adds_from_many_threads_while_the_host_flushes_lose_no_count() -> None:
    now = [0.0]
    p = RateProvider("node-a", LamportClock(), {"window_s": 600}, now_fn=lambda: now[0])
    observer = RateProvider("node-b", LamportClock(), {"window_s": 600})
    rng = random.Random(0)
    per_thread = [rng.randrange(1000, 3000) for _ in range(4)]
    stop = threading.Event()

    def host() -> None:
        while not stop.is_set():
            now[0] += 0.03
            p.tick(now[0])
            observer.apply_remote_state(p.drain_changes())

    workers = [threading.Thread(target=lambda k=k: [p.add("api") for _ in range(k)])
               for k in per_thread]
    flusher = threading.Thread(target=host)
    flusher.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    flusher.join()
    p.tick(now[0] + 1.0)
    observer.apply_remote_state(p.drain_changes())
    assert p.total("api") == observer.total("api") == sum(per_thread)


@pytest.mark.parametrize(("kind", "options", "ok"), [
    ("rate", "{ window_s = 5, flush_ms = 50 }", True), ("rate", "{ window_s = 0 }", False),
    ("stick_table", "{ ttl_s = 60, max_entries = 10 }", True),
    ("stick_table", "{ max_entries = -1 }", False)])
def test_both_built_ins_are_configured_by_type_and_bad_options_fail_at_startup(
        tmp_path: Path, kind: str, options: str, ok: bool) -> None:
    cfg = load_config(write(tmp_path, f'[[providers]]\ntype = "{kind}"\noptions = {options}\n'))
    if ok:
        cls = provider_class(cfg, cfg.providers[0], 0)
        assert cls("n", LamportClock(), cfg.providers[0].options).provider_type() == kind
    else:
        with pytest.raises(ConfigError, match=r"providers\[0\]\.options"):
            provider_class(cfg, cfg.providers[0], 0)
