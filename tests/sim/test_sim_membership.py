"""Whole-cluster behaviour of the membership core in the simulator (virtual time).

Scenarios are data (`actors.testing.sim.Scenario`): a profile, a cluster size, a
network, a seed and timed fault steps. Every failure message names the scenario
and its seed, so a failing run can be replayed exactly.
"""

from __future__ import annotations

import pytest

from actors.membership.core.suspicion import suspicion_bounds
from actors.membership.core.swim import Membership
from actors.testing.sim import NetModel, Scenario, Sim, build, expect, start


def ids(sim: Sim) -> list[str]:
    return [node.info.node_id for node in sim.nodes]


def all_alive(sim: Sim) -> bool:
    n = len(sim.nodes)
    return all(sum(status == "alive" for status in sim.view(i).values()) == n for i in range(n))


def view(sim: Sim, node_id: str) -> dict[str, str]:
    return sim.view(sim.index[node_id])


CONVERGE = [
    # (scenario, virtual seconds allowed): "local" retransmits each item only 4 times at
    # this size, so a few members wait for a probe or a push-pull (15 s) to learn the last ones.
    (Scenario("lan-60-lossy", "lan", 60, seed=11, net=NetModel(loss=0.02, duplicate=0.02)), 10.0),
    (Scenario("local-50", "local", 50, seed=12), 20.0),
    (Scenario("test-50-lossy", "test", 50, seed=13, net=NetModel(loss=0.05)), 10.0),
]


@pytest.mark.parametrize(("sc", "budget_s"), CONVERGE, ids=lambda s: getattr(s, "name", ""))
def test_fifty_and_more_nodes_joining_through_one_seed_converge(
    sc: Scenario, budget_s: float
) -> None:
    sim, log = start(sc)
    converged = sim.run_until(budget_s, lambda: all_alive(sim))
    expect(sc, converged, f"not converged after {budget_s} s: {_missing(sim)}")
    failures = log.of_kind("node.failed")
    expect(sc, not failures, f"false failures while joining: {failures[:5]}")


def _missing(sim: Sim) -> dict[str, list[str]]:
    views = {i: view(sim, i) for i in ids(sim)}
    return {i: [j for j in ids(sim) if v.get(j) != "alive"] for i, v in views.items()
            if any(v.get(j) != "alive" for j in ids(sim))}


CRASHES = [
    Scenario("lan-20-crash", "lan", 20, seed=21, steps=((1.0, "crash", ("n7",)),)),
    Scenario("lan-40-crash-lossy", "lan", 40, seed=22, net=NetModel(loss=0.02),
             steps=((1.0, "crash", ("n13",)),)),
    Scenario("local-20-crash", "local", 20, seed=23, steps=((1.0, "crash", ("n3",)),)),
]


@pytest.mark.parametrize("sc", CRASHES, ids=lambda s: s.name)
def test_a_crashed_node_is_failed_on_every_survivor_in_well_under_a_second(sc: Scenario) -> None:
    sim, log = build(sc)
    crash_at = sim.now + sc.steps[0][0]
    victim = sc.steps[0][2][0]
    sim.run_until(crash_at + 3.0)
    survivors = [i for i in ids(sim) if i != victim]
    detected = {i: log.first(i, "node.failed", victim) for i in survivors}
    missing = [i for i, t in detected.items() if t is None]
    expect(sc, not missing, f"{victim} never failed on {missing}")
    worst = max(t for t in detected.values() if t is not None) - crash_at
    budget = sim.timing.refused_timeout_s + 0.25
    expect(sc, worst < min(budget, 1.0), f"slowest detection {worst:.3f} s")
    others = [f for f in log.of_kind("node.failed") if f[2] != victim]
    expect(sc, not others, f"false failures: {others[:5]}")


SILENT = Scenario("lan-10-silent", "lan", 10, seed=31, steps=((1.0, "isolate", ("n4",)),))


def test_a_silent_node_is_failed_only_after_the_suspicion_timeout() -> None:
    sc = SILENT
    sim, log = build(sc)
    cut_at = sim.now + 1.0
    sim.run_until(cut_at + 40.0)
    survivors = [i for i in ids(sim) if i != "n4"]
    min_s, max_s = suspicion_bounds(4, 6, len(sim.nodes), 1.0)
    first_suspicion = min(t for t, _, about in log.of_kind("node.suspect") if about == "n4")
    for node in survivors:
        suspected = log.first(node, "node.suspect", "n4")
        failed = log.first(node, "node.failed", "n4")
        expect(sc, suspected is not None and failed is not None, f"{node} never failed n4")
        assert suspected is not None and failed is not None
        expect(sc, failed - first_suspicion >= min_s - 1e-6, f"{node} failed n4 too early")
        expect(sc, failed - cut_at <= max_s + 3.0, f"{node} failed n4 too late")
    refusals = sum(core.counters.get("refused", 0) for core in _cores(sim, survivors))
    expect(sc, refusals == 0, "a partition produced a refusal")


def _cores(sim: Sim, names: list[str]) -> list[Membership]:
    cores = [sim.nodes[sim.index[name]].core for name in names]
    return [core for core in cores if core is not None]


PAUSES = [
    Scenario(f"lan-10-pause-{seed}", "lan", 10, seed=seed,
             steps=((1.0, "pause", ("n4",)), (4.0, "resume", ("n4",))))
    for seed in (41, 42, 43)
] + [
    Scenario("lan-30-pause-lossy", "lan", 30, seed=44, net=NetModel(loss=0.02),
             steps=((1.0, "pause", ("n9",)), (4.0, "resume", ("n9",)))),
]


@pytest.mark.parametrize("sc", PAUSES, ids=lambda s: s.name)
def test_a_node_paused_for_three_seconds_under_lan_is_suspected_but_never_failed(
    sc: Scenario
) -> None:
    sim, log = build(sc)
    sim.run_until(sim.now + 35.0)
    paused = sc.steps[0][2][0]
    suspected = [s for s in log.of_kind("node.suspect") if s[2] == paused]
    expect(sc, bool(suspected), f"{paused} was never suspected: the pause went unnoticed")
    failures = log.of_kind("node.failed")
    expect(sc, not failures, f"failures: {failures[:5]}")
    expect(sc, all_alive(sim), "the cluster did not settle back to all alive")


PARTITIONS = [
    Scenario("test-12-split", "test", 12, seed=51, settle_s=3.0,
             steps=((0.5, "split", ()), (6.5, "heal", ()))),
    Scenario("test-20-split-lossy", "test", 20, seed=52, settle_s=3.0,
             net=NetModel(loss=0.03, duplicate=0.01),
             steps=((0.5, "split", ()), (6.5, "heal", ()))),
]


@pytest.mark.parametrize("sc", PARTITIONS, ids=lambda s: s.name)
def test_a_two_way_partition_fails_the_other_side_then_merges_back_after_healing(
    sc: Scenario
) -> None:
    sim, _ = build(sc)
    heal_at = sim.now + 6.5
    sim.run_until(heal_at - 0.01)
    names, half = ids(sim), len(sim.nodes) // 2
    for i, node in enumerate(names):
        other_side = names[half:] if i < half else names[:half]
        held = view(sim, node)
        expect(sc, all(held[o] == "dead" for o in other_side), f"{node} still sees the other side")
    merged = sim.run_until(heal_at + 15.0, lambda: all_alive(sim))
    expect(sc, merged, f"not merged 15 s after healing: {sim.view(0)}")
