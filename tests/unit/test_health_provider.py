"""The health provider with a fake clock, scripted check results and an inline executor."""

from __future__ import annotations

from collections import Counter, defaultdict
from concurrent.futures import Executor, Future
from typing import Any

import pytest

from actors.core.rendezvous import owner, owners
from actors.providers.health import (
    POLL_S,
    Backend,
    CheckResult,
    HealthProvider,
    ProviderOptionError,
    parse_options,
)
from transport.protocol import LamportClock, StateProvider, SyncableState, make_syncable_state

IDS = ["node-a", "node-b", "node-c"]
STEP_S = 1 / 32  # exact in binary, so fake times add up exactly


class FakeTime:
    """Monotonic and wall time that only move when told to."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = 1_700_000_000.0

    def advance(self, dt: float) -> None:
        assert dt >= 0
        self.now += dt
        self.wall += dt


class InlineExecutor(Executor):
    """Runs the check at submit time, so results are ready in the same tick."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


class NeverExecutor(Executor):
    """Checks that never finish (a hung backend)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        return Future()


class World:
    """Backend health as each node sees it, and who checked what."""

    def __init__(self) -> None:
        self.up: dict[str, bool] = defaultdict(lambda: True)
        self.seen_by: dict[tuple[str, str], bool] = {}  # (node, backend) overrides
        self.calls: dict[str, Counter[str]] = defaultdict(Counter)

    def checker(self, node_id: str) -> Any:
        def check(backend: Backend, timeout_s: float) -> CheckResult:
            self.calls[node_id][backend.name] += 1
            ok = self.seen_by.get((node_id, backend.name), self.up[backend.name])
            return CheckResult(ok, "connected" if ok else "refused", 1.5)
        return check


def options(names: list[str], **extra: Any) -> dict[str, Any]:
    backends = [{"name": n, "check": "tcp", "address": f"127.0.0.1:{9000 + i}"}
                for i, n in enumerate(names)]
    return {"backends": backends, "interval_ms": 1000, **extra}


class Cluster:
    """Health providers of several nodes; changes are pumped between them after each step."""

    def __init__(self, ids: list[str], names: list[str], world: World | None = None,
                 clock: FakeTime | None = None, **extra: Any) -> None:
        self.world = world or World()
        self.time = clock or FakeTime()
        self.opts = options(names, **extra)
        self.nodes: dict[str, HealthProvider] = {}
        self.writes: list[SyncableState] = []  # local writes of every node, in order
        for node_id in ids:
            self.add(node_id)
        self.members(ids)

    def add(self, node_id: str) -> HealthProvider:
        self.nodes[node_id] = HealthProvider(
            node_id, LamportClock(), self.opts, check=self.world.checker(node_id),
            executor=InlineExecutor(), now_fn=lambda: self.time.now,
            wall_fn=lambda: self.time.wall)
        if len(self.nodes) > 1:  # a joiner catches up first, as anti-entropy would do
            peer = next(iter(self.nodes.values()))
            self.nodes[node_id].apply_remote_state(peer.get_sync_state())
        return self.nodes[node_id]

    def members(self, ids: list[str]) -> None:
        for p in self.nodes.values():
            p.on_members(ids, self.time.now)
        self.spread()

    def fail(self, node_id: str) -> None:
        del self.nodes[node_id]
        for p in self.nodes.values():
            p.on_node_failure(node_id)
        self.spread()

    def spread(self) -> None:
        moved = True
        while moved:
            moved = False
            for p in self.nodes.values():
                changes = p.drain_changes()
                self.writes += [s for s in changes if s.source_node == p.node_id]
                for q in self.nodes.values():
                    if q is not p and changes:
                        moved = q.apply_remote_state(changes)["applied"] > 0 or moved

    def run(self, seconds: float) -> None:
        end = self.time.now + seconds
        while self.time.now < end - 1e-9:
            self.time.advance(STEP_S)
            self.step()

    def step(self) -> None:
        for p in self.nodes.values():
            p.tick(self.time.now)
        self.spread()

    def status(self, node_id: str, name: str) -> dict[str, Any]:
        return self.nodes[node_id].cmd_get({"name": name}, self.time.now)

    def checkers(self, name: str) -> set[str]:
        return {n for n, calls in self.world.calls.items() if calls[name]}


def single(names: list[str] | None = None, **extra: Any) -> Cluster:
    return Cluster(["node-a"], names or ["web1"], **extra)


# -- options ---------------------------------------------------------------------------


def test_defaults_follow_haproxy():
    opts = parse_options({"backends": []})
    assert (opts.interval_s, opts.fast_interval_s, opts.timeout_s) == (2.0, 0.5, 1.0)
    assert (opts.rise, opts.fall, opts.replicas) == (2, 2, 1)


def test_backends_of_both_kinds_parse():
    opts = parse_options({"backends": [
        {"name": "web1", "check": "tcp", "address": "127.0.0.1:8080"},
        {"name": "v6", "check": "tcp", "address": "[::1]:81"},
        {"name": "api", "check": "http", "url": "http://127.0.0.1:8081/health?x=1",
         "expect_status": 204},
    ]})
    web1, v6, api = opts.backends
    assert (web1.host, web1.port, v6.host, v6.port) == ("127.0.0.1", 8080, "::1", 81)
    assert (api.url, api.expect_status) == ("http://127.0.0.1:8081/health?x=1", 204)


TCP = {"name": "w", "check": "tcp", "address": "127.0.0.1:1"}


@pytest.mark.parametrize(("opts", "option"), [
    ({"interval_ms": 0}, "interval_ms"),
    ({"interval_ms": 4_000_000}, "interval_ms"),
    ({"interval_ms": "2s"}, "interval_ms"),
    ({"fast_interval_ms": 5}, "fast_interval_ms"),
    ({"fast_interval_ms": [500]}, "fast_interval_ms"),
    ({"timeout_ms": -1}, "timeout_ms"),
    ({"timeout_ms": float("nan")}, "timeout_ms"),
    ({"replicas": 65}, "replicas"),
    ({"rise": 1001}, "rise"),
    ({"fall": 0}, "fall"),
    ({"interval_ms": True}, "interval_ms"),
    ({"rise": 0}, "rise"),
    ({"fall": 1.5}, "fall"),
    ({"replicas": "2"}, "replicas"),
    ({"colour": "red"}, "colour"),
    ({"backends": "web1"}, "backends"),
    ({"backends": ["web1"]}, "backends[0]"),
    ({"backends": [{**TCP, "name": ""}]}, "backends[0].name"),
    ({"backends": [{**TCP, "check": "udp"}]}, "backends[0].check"),
    ({"backends": [{**TCP, "address": "127.0.0.1"}]}, "backends[0].address"),
    ({"backends": [{**TCP, "address": "host:99999"}]}, "backends[0].address"),
    ({"backends": [{**TCP, "url": "http://x/"}]}, "backends[0].url"),
    ({"backends": [TCP, TCP]}, "backends[1].name"),
    ({"backends": [{"name": "a", "check": "http", "url": "ftp://x/"}]}, "backends[0].url"),
    ({"backends": [{"name": "a", "check": "http", "url": "http://x:bad/"}]}, "backends[0].url"),
    ({"backends": [{"name": "a", "check": "http", "url": "http://x/", "expect_status": 99}]},
     "backends[0].expect_status"),
    ({"backends": [{"name": "a", "check": "http", "url": "http://x/", "expect_status": 600}]},
     "backends[0].expect_status"),
])
def test_bad_options_raise_a_value_error_naming_the_option(opts, option):
    with pytest.raises(ValueError, match=option.replace("[", r"\[").replace("]", r"\]")) as err:
        HealthProvider("node-a", LamportClock(), opts)
    assert isinstance(err.value, ProviderOptionError)
    assert option.endswith(err.value.option)
    with pytest.raises(ProviderOptionError):  # what the config loader calls
        HealthProvider.validate_options(opts)


def test_the_provider_satisfies_the_state_provider_protocol():
    provider = single().nodes["node-a"]
    assert isinstance(provider, StateProvider)
    assert provider.provider_type() == "health"


# -- rise / fall -------------------------------------------------------------------------


def test_one_success_is_not_enough_to_call_a_backend_up():
    c = single()
    c.step()
    assert c.status("node-a", "web1")["status"] == "unknown"
    assert c.writes == []


def test_rise_successes_mark_the_backend_up_with_one_write():
    c = single()
    c.step()
    c.run(0.25)  # the second check comes after the fast interval
    row = c.status("node-a", "web1")
    assert (row["status"], row["checked_by"], row["detail"]) == ("up", "node-a", "connected")
    assert row["since"] == c.time.wall and row["latency_ms"] == 1.5
    assert len(c.writes) == 1


def test_steady_state_writes_nothing():
    c = single(["web1", "api", "db"])
    c.run(30)
    assert len(c.writes) == 3
    assert sum(c.world.calls["node-a"].values()) > 80  # still checking all along


def test_fall_failures_mark_it_down_within_interval_plus_fast_interval():
    c = single()
    c.run(2)
    c.world.up["web1"] = False
    went_down = c.time.now
    while c.status("node-a", "web1")["status"] != "down":
        c.run(STEP_S)
    assert c.time.now - went_down <= 1.0 + 0.25 + STEP_S
    assert c.status("node-a", "web1")["detail"] == "refused"
    assert [s.value["status"] for s in c.writes] == ["up", "down"]


def test_a_single_failed_check_flips_nothing():
    c = single()
    c.run(2)
    c.world.up["web1"] = False
    calls = c.world.calls["node-a"]["web1"]
    while c.world.calls["node-a"]["web1"] == calls:
        c.run(STEP_S)
    c.world.up["web1"] = True
    c.run(5)
    assert c.status("node-a", "web1")["status"] == "up"
    assert len(c.writes) == 1


def test_rise_and_fall_are_configurable():
    c = single(rise=1, fall=3, fast_interval_ms=1000)
    c.step()
    assert c.status("node-a", "web1")["status"] == "up"
    c.world.up["web1"] = False
    c.run(2)
    assert c.status("node-a", "web1")["status"] == "up"  # two failures of three
    c.run(1)
    assert c.status("node-a", "web1")["status"] == "down"


def test_a_check_that_raises_counts_as_a_failure():
    def broken(backend: Backend, timeout_s: float) -> CheckResult:
        raise RuntimeError("boom")
    clock = FakeTime()
    p = HealthProvider("node-a", LamportClock(), options(["web1"], fall=1), check=broken,
                       executor=InlineExecutor(), now_fn=lambda: clock.now)
    p.tick(clock.now)
    row = p.cmd_get({"name": "web1"}, clock.now)
    assert (row["status"], row["detail"]) == ("down", "RuntimeError: boom")


def test_a_hung_check_is_abandoned_as_a_failure_after_its_timeout():
    clock = FakeTime()
    p = HealthProvider("node-a", LamportClock(), options(["web1"], fall=1, timeout_ms=500),
                       executor=NeverExecutor(), now_fn=lambda: clock.now)
    p.tick(clock.now)
    assert p.next_deadline() == pytest.approx(clock.now + POLL_S)  # polling for the result
    clock.advance(1.4)
    p.tick(clock.now)
    assert p.cmd_get({"name": "web1"}, clock.now)["status"] == "unknown"
    clock.advance(0.2)  # 1.6 s > timeout 0.5 s + 1 s grace
    p.tick(clock.now)
    row = p.cmd_get({"name": "web1"}, clock.now)
    assert (row["status"], row["detail"]) == ("down", "check overdue")


def test_next_deadline_is_the_earliest_due_check():
    c = single(["web1", "api"])
    p = c.nodes["node-a"]
    assert p.next_deadline() == c.time.now  # new owner: check at once
    c.run(2)
    due = p.next_deadline()
    assert due is not None and c.time.now < due <= c.time.now + 1.0
    assert Cluster(["node-a"], []).nodes["node-a"].next_deadline() is None


# -- ownership ---------------------------------------------------------------------------

NAMES = [f"backend-{i}" for i in range(12)]


def test_each_backend_is_checked_only_by_its_owner():
    c = Cluster(IDS, NAMES)
    c.run(5)
    for name in NAMES:
        assert c.checkers(name) == {owner(name, IDS)}
        for node_id in IDS:
            assert c.status(node_id, name)["checked_by"] == owner(name, IDS)
            assert c.status(node_id, name)["owners"] == [owner(name, IDS)]
    assert len(c.writes) == len(NAMES)


def test_a_backend_that_goes_down_is_seen_down_on_every_node_within_a_bound():
    c = Cluster(IDS, NAMES)
    c.run(3)
    c.world.up["backend-3"] = False
    went_down = c.time.now
    while any(c.status(n, "backend-3")["status"] != "down" for n in IDS):
        c.run(STEP_S)
    assert c.time.now - went_down <= 1.0 + 0.25 + STEP_S


def test_a_failed_owner_hands_its_backends_to_the_next_node_at_once():
    c = Cluster(IDS, NAMES)
    c.run(3)
    name = next(n for n in NAMES if owner(n, IDS) == "node-b")
    successor = owners(name, IDS, 2)[1]
    since = c.status("node-a", name)["since"]
    writes = len(c.writes)
    c.fail("node-b")
    c.step()  # the successor checks on its very next tick
    assert c.world.calls[successor][name] == 1
    c.run(0.25)
    for node_id in c.nodes:
        row = c.status(node_id, name)
        assert (row["status"], row["checked_by"], row["since"]) == ("up", successor, since)
    moved = sum(1 for n in NAMES if owner(n, IDS) == "node-b")
    assert len(c.writes) - writes == moved  # one takeover write per orphaned backend


def test_a_joining_node_takes_over_the_backends_it_now_owns():
    world, clock = World(), FakeTime()
    c = Cluster(IDS[:2], NAMES, world=world, clock=clock)
    c.run(3)
    c.add("node-c")
    c.members(IDS)
    taken = [n for n in NAMES if owner(n, IDS) == "node-c"]
    assert taken
    before = {n: world.calls[owner(n, IDS[:2]) or ""][n] for n in taken}
    c.run(3)
    for name in taken:
        old = owner(name, IDS[:2]) or ""
        assert world.calls[old][name] == before[name]  # the old owner stopped checking
        assert c.status("node-a", name)["checked_by"] == "node-c"


def test_a_stale_write_by_a_non_owner_is_corrected_at_the_next_check():
    c = single()
    c.run(2)
    p = c.nodes["node-a"]
    stale = make_syncable_state("health", "web1", {
        "status": "down", "checked_by": "node-z", "since": 1.0, "detail": "x",
        "latency_ms": 0.0}, 100, "node-z")
    assert p.apply_remote_state([stale])["applied"] == 1
    assert p.cmd_get({"name": "web1"}, c.time.now)["status"] == "down"
    c.run(1.0)
    row = p.cmd_get({"name": "web1"}, c.time.now)
    assert (row["status"], row["checked_by"]) == ("up", "node-a")


def test_replica_owners_that_disagree_settle_on_the_primary_without_ping_pong():
    c = Cluster(IDS, ["web1"], replicas=2)
    primary, secondary = owners("web1", IDS, 2)
    c.run(3)
    assert c.checkers("web1") == {primary, secondary}
    c.world.seen_by[(secondary, "web1")] = False
    c.run(3)
    assert c.status(primary, "web1")["checked_by"] == primary
    assert c.status(secondary, "web1")["status"] == "up"
    downs = [s for s in c.writes if s.value["status"] == "down"]
    assert [s.source_node for s in downs] == [secondary]  # the secondary's flip was published
    writes = len(c.writes)
    c.run(20)
    assert len(c.writes) == writes


# -- replicated state --------------------------------------------------------------------


def health_state(version: int, status: str = "up", source: str = "node-z",
                 key: str = "web1") -> SyncableState:
    value = {"status": status, "checked_by": source, "since": 5.0, "detail": "ok",
             "latency_ms": 2.0}
    return make_syncable_state("health", key, value, version, source)


@pytest.mark.parametrize("value", [
    "up", {"status": "sideways", "checked_by": "n", "since": 1.0, "detail": "", "latency_ms": 1.0},
    {"status": "up"}, {"status": "up", "checked_by": 7, "since": 1.0, "detail": "",
                       "latency_ms": 1.0},
    {"status": "up", "checked_by": "n", "since": True, "detail": "", "latency_ms": 1.0},
])
def test_malformed_remote_values_are_rejected(value):
    p = single().nodes["node-a"]
    state = make_syncable_state("health", "web1", value, 3, "node-z")
    assert p.apply_remote_state([state]) == {"applied": 0, "conflicts": 0, "rejected": 1}
    assert p.get_sync_state() == []


def test_remote_states_obey_the_version_rule_and_count():
    p = single().nodes["node-a"]
    assert p.apply_remote_state([health_state(5)])["applied"] == 1
    assert p.apply_remote_state([health_state(4, "down")])["rejected"] == 1
    assert p.apply_remote_state([health_state(5, source="node-y")])["conflicts"] == 1
    other_type = make_syncable_state("kv", "web1", 1, 9, "node-z")
    assert p.apply_remote_state([other_type])["rejected"] == 1
    assert p.get_state_digest() == {("health", "web1"): 5}


def test_a_tombstone_is_kept_and_synced_but_not_listed():
    p = single(["api"]).nodes["node-a"]
    p.apply_remote_state([health_state(5), make_syncable_state("health", "web1", None, 6, "z")])
    assert [s.value for s in p.get_sync_state()] == [None]
    assert [row["name"] for row in p.cmd_list({}, 0.0)] == ["api"]


def test_drain_changes_returns_local_and_remote_changes_once():
    clock, world = FakeTime(), World()
    p = HealthProvider("node-a", LamportClock(), options(["api"], rise=1),
                       check=world.checker("node-a"), executor=InlineExecutor(),
                       now_fn=lambda: clock.now)
    p.tick(clock.now)
    p.apply_remote_state([health_state(5)])
    changes = p.drain_changes()
    assert {(s.key, s.source_node) for s in changes} == {("api", "node-a"), ("web1", "node-z")}
    assert p.drain_changes() == []
    p.apply_remote_state([health_state(5)])  # a duplicate changes nothing
    clock.advance(1.0)
    p.tick(clock.now)  # steady state: nothing to drain
    assert p.drain_changes() == []


# -- commands ----------------------------------------------------------------------------


def test_list_shows_configured_and_replicated_backends():
    c = single(["web1", "api"])
    p = c.nodes["node-a"]
    p.apply_remote_state([health_state(5, key="elsewhere")])
    rows = {row["name"]: row for row in p.cmd_list({}, c.time.now)}
    assert sorted(rows) == ["api", "elsewhere", "web1"]
    assert (rows["api"]["status"], rows["api"]["configured"]) == ("unknown", True)
    assert (rows["elsewhere"]["status"], rows["elsewhere"]["configured"]) == ("up", False)


@pytest.mark.parametrize("args", [{}, {"name": ""}, {"name": 3}, {"name": "nope"}])
def test_get_refuses_bad_or_unknown_names(args):
    with pytest.raises(ValueError):
        single().nodes["node-a"].cmd_get(args, 0.0)
