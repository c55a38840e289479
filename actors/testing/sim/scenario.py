"""Scenarios as data: a cluster, a network, a seed and timed fault steps.

A `Scenario` is built into a running `Sim`: nodes n0..n{N-1} start
`stagger_s` apart and join through n0, the cluster runs `settle_s` of
virtual time, then each step is scheduled that many seconds after settling.
`expect` names the scenario and its seed in every failure, so a failing run
can be replayed exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from actors.membership.core.timing import PROFILES
from actors.testing.sim.cluster import Sim
from actors.testing.sim.network import NetModel
from actors.testing.sim.views import EventLog

# (seconds after settling, operation, node ids)
Step = tuple[float, str, tuple[str, ...]]
# crash (with refusals), pause, resume: one node; isolate: one node from the rest;
# split: in halves, n0.. against ..n{N-1}; heal: every partition
OPERATIONS = frozenset({"crash", "pause", "resume", "isolate", "split", "heal"})


@dataclass(frozen=True)
class Scenario:
    name: str
    profile: str
    nodes: int
    seed: int
    net: NetModel = field(default_factory=NetModel)
    stagger_s: float = 0.01  # between two nodes' starts
    settle_s: float = 5.0  # virtual time to join and settle before the faults
    steps: tuple[Step, ...] = ()


def start(sc: Scenario) -> tuple[Sim, EventLog]:
    """The scenario's cluster, its nodes scheduled to start and join n0; not yet run.

    The network model is copied: a scenario is data and stays as written.
    """
    sim = Sim(sc.nodes, PROFILES[sc.profile], replace(sc.net), sc.seed)
    log = EventLog(sim)
    for i in range(sc.nodes):
        sim.start(i, i * sc.stagger_s, [0])
    return sim, log


def build(sc: Scenario) -> tuple[Sim, EventLog]:
    """The scenario's cluster after `settle_s`, with its steps scheduled from then."""
    sim, log = start(sc)
    sim.run_until(sc.settle_s)
    for after, op, args in sc.steps:
        sim.schedule(sim.now + after, _step(sim, op, args))
    return sim, log


def _step(sim: Sim, op: str, args: tuple[str, ...]) -> Callable[[], None]:
    if op not in OPERATIONS:
        raise ValueError(f"unknown scenario step {op!r}; known: {sorted(OPERATIONS)}")
    n = len(sim.nodes)
    targets = [sim.index[a] for a in args]

    def run() -> None:
        match op:
            case "crash":
                sim.crash(targets[0], refusals=True)
            case "pause":
                sim.pause(targets[0])
            case "resume":
                sim.resume(targets[0])
            case "isolate":
                sim.partition([1 if i == targets[0] else 0 for i in range(n)])
            case "split":
                sim.partition([0 if i < n // 2 else 1 for i in range(n)])
            case "heal":
                sim.partition(None)
    return run


def expect(sc: Scenario, condition: bool, what: str) -> None:
    """Raises:
        AssertionError: `condition` is false; the message names the scenario and seed.
    """
    if not condition:
        raise AssertionError(f"{what} [scenario={sc.name} seed={sc.seed}]")
