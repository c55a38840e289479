"""Whole-cluster behaviour of the membership core in the simulator (virtual time).

Scenarios are data: a profile, a cluster size, a network, a seed and timed
fault steps. Every failure message names the scenario and its seed, so a
failing run can be replayed exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from simnet import NetConfig, SimNet

from actors.membership.core.suspicion import suspicion_bounds


@dataclass(frozen=True)
class Scenario:
    name: str
    profile: str
    nodes: int
    seed: int
    net: NetConfig = field(default_factory=NetConfig)
    settle_s: float = 5.0  # virtual time to join and settle before the faults
    # (seconds after settling, operation, arguments)
    steps: tuple[tuple[float, str, tuple[str, ...]], ...] = ()


def build(sc: Scenario) -> tuple[SimNet, list[str]]:
    sim = SimNet(sc.seed, sc.profile, sc.net)
    ids = sim.add_cluster(sc.nodes, stagger_s=0.01)
    sim.run_until(sc.settle_s)
    start = sim.now
    for after, op, args in sc.steps:
        sim.schedule(start + after, _step(sim, op, args))
    return sim, ids


def _step(sim: SimNet, op: str, args: tuple[str, ...]) -> Callable[[], None]:
    def run() -> None:
        match op:
            case "crash" | "pause" | "resume":
                getattr(sim, op)(args[0])
            case "isolate":
                sim.partition([n for n in sim.nodes if n != args[0]], [args[0]])
            case "split":
                half = len(sim.nodes) // 2
                names = list(sim.nodes)
                sim.partition(names[:half], names[half:])
            case "heal":
                sim.heal()
            case _:
                raise ValueError(op)
    return run


def expect(sc: Scenario, condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(f"{what} [scenario={sc.name} seed={sc.seed}]")


def all_alive(sim: SimNet, ids: list[str]) -> bool:
    return all(
        sum(1 for status in sim.view(i).values() if status == "alive") == len(ids) for i in ids
    )


def failures(sim: SimNet) -> list[tuple[float, str, str]]:
    return [(o.time, o.observer, o.event.node.node_id) for o in sim.observations
            if o.event.kind == "node.failed"]


CONVERGE = [
    # (scenario, virtual seconds allowed): "local" retransmits each item only 4 times at
    # this size, so a few members wait for a probe or a push-pull (15 s) to learn the last ones.
    (Scenario("lan-60-lossy", "lan", 60, seed=11, net=NetConfig(loss=0.02, duplicate=0.02)), 10.0),
    (Scenario("local-50", "local", 50, seed=12), 20.0),
    (Scenario("test-50-lossy", "test", 50, seed=13, net=NetConfig(loss=0.05)), 10.0),
]


@pytest.mark.parametrize(("sc", "budget_s"), CONVERGE, ids=lambda s: getattr(s, "name", ""))
def test_fifty_and_more_nodes_joining_through_one_seed_converge(
    sc: Scenario, budget_s: float
) -> None:
    sim = SimNet(sc.seed, sc.profile, sc.net)
    ids = sim.add_cluster(sc.nodes, stagger_s=0.01)
    converged = sim.run_until(budget_s, lambda: all_alive(sim, ids))
    expect(sc, converged, f"not converged after {budget_s} s: {_missing(sim, ids)}")
    expect(sc, not failures(sim), f"false failures while joining: {failures(sim)[:5]}")


def _missing(sim: SimNet, ids: list[str]) -> dict[str, list[str]]:
    views = {i: sim.view(i) for i in ids}
    return {i: [j for j in ids if v.get(j) != "alive"] for i, v in views.items()
            if any(v.get(j) != "alive" for j in ids)}


CRASHES = [
    Scenario("lan-20-crash", "lan", 20, seed=21, steps=((1.0, "crash", ("n7",)),)),
    Scenario("lan-40-crash-lossy", "lan", 40, seed=22, net=NetConfig(loss=0.02),
             steps=((1.0, "crash", ("n13",)),)),
    Scenario("local-20-crash", "local", 20, seed=23, steps=((1.0, "crash", ("n3",)),)),
]


@pytest.mark.parametrize("sc", CRASHES, ids=lambda s: s.name)
def test_a_crashed_node_is_failed_on_every_survivor_in_well_under_a_second(sc: Scenario) -> None:
    sim, ids = build(sc)
    crash_at = sim.now + sc.steps[0][0]
    victim = sc.steps[0][2][0]
    sim.run_until(crash_at + 3.0)
    survivors = [i for i in ids if i != victim]
    detected = {i: sim.first_event(i, "node.failed", victim) for i in survivors}
    missing = [i for i, t in detected.items() if t is None]
    expect(sc, not missing, f"{victim} never failed on {missing}")
    worst = max(t for t in detected.values() if t is not None) - crash_at
    budget = sim.timing.refused_timeout_s + 0.25
    expect(sc, worst < min(budget, 1.0), f"slowest detection {worst:.3f} s")
    others = [f for f in failures(sim) if f[2] != victim]
    expect(sc, not others, f"false failures: {others[:5]}")


SILENT = Scenario("lan-10-silent", "lan", 10, seed=31, steps=((1.0, "isolate", ("n4",)),))


def test_a_silent_node_is_failed_only_after_the_suspicion_timeout() -> None:
    sc = SILENT
    sim, ids = build(sc)
    cut_at = sim.now + 1.0
    sim.run_until(cut_at + 40.0)
    survivors = [i for i in ids if i != "n4"]
    min_s, max_s = suspicion_bounds(4, 6, len(ids), 1.0)
    for node in survivors:
        suspected = sim.first_event(node, "node.suspect", "n4")
        failed = sim.first_event(node, "node.failed", "n4")
        expect(sc, suspected is not None and failed is not None, f"{node} never failed n4")
        assert suspected is not None and failed is not None
        first_suspicion = min(t for t, obs, about in _suspicions(sim) if about == "n4")
        expect(sc, failed - first_suspicion >= min_s - 1e-6, f"{node} failed n4 too early")
        expect(sc, failed - cut_at <= max_s + 3.0, f"{node} failed n4 too late")
    expect(sc, sum(sim.nodes[i].core.counters.get("refused", 0) for i in survivors) == 0,
           "a partition produced a refusal")


def _suspicions(sim: SimNet) -> list[tuple[float, str, str]]:
    return [(o.time, o.observer, o.event.node.node_id) for o in sim.observations
            if o.event.kind == "node.suspect"]


PAUSES = [
    Scenario(f"lan-10-pause-{seed}", "lan", 10, seed=seed,
             steps=((1.0, "pause", ("n4",)), (4.0, "resume", ("n4",))))
    for seed in (41, 42, 43)
] + [
    Scenario("lan-30-pause-lossy", "lan", 30, seed=44, net=NetConfig(loss=0.02),
             steps=((1.0, "pause", ("n9",)), (4.0, "resume", ("n9",)))),
]


@pytest.mark.parametrize("sc", PAUSES, ids=lambda s: s.name)
def test_a_node_paused_for_three_seconds_under_lan_is_never_failed(sc: Scenario) -> None:
    sim, ids = build(sc)
    sim.run_until(sim.now + 35.0)
    expect(sc, not failures(sim), f"failures: {failures(sim)[:5]}")
    expect(sc, all_alive(sim, ids), "the cluster did not settle back to all alive")


PARTITIONS = [
    Scenario("test-12-split", "test", 12, seed=51, settle_s=3.0,
             steps=((0.5, "split", ()), (6.5, "heal", ()))),
    Scenario("test-20-split-lossy", "test", 20, seed=52, settle_s=3.0,
             net=NetConfig(loss=0.03, duplicate=0.01),
             steps=((0.5, "split", ()), (6.5, "heal", ()))),
]


@pytest.mark.parametrize("sc", PARTITIONS, ids=lambda s: s.name)
def test_a_two_way_partition_fails_the_other_side_then_merges_back_after_healing(
    sc: Scenario
) -> None:
    sim, ids = build(sc)
    heal_at = sim.now + 6.5
    sim.run_until(heal_at - 0.01)
    half = len(ids) // 2
    for node in ids:
        other_side = ids[half:] if ids.index(node) < half else ids[:half]
        view = sim.view(node)
        expect(sc, all(view[o] == "dead" for o in other_side), f"{node} still sees the other side")
    merged = sim.run_until(heal_at + 15.0, lambda: all_alive(sim, ids))
    expect(sc, merged, f"not merged 15 s after healing: {sim.view(ids[0])}")
