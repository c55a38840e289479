"""The membership simulator: N pure `Membership` cores on a virtual clock and one
seeded in-memory network (drop, duplicate, delay, partition; every message through
the real codec). The test suite (tests/sim) and the scale benchmark
(bench/simulate.py, docs/simulation.md) both run it.

    sim = Sim(n, PROFILES["lan"], NetModel(loss=0.01), seed=1)   # cluster.py
    sim, log = build(Scenario("lan-20-crash", "lan", 20, seed=21,  # scenario.py
                              steps=((1.0, "crash", ("n7",)),)))
"""

from actors.testing.sim.cluster import Sim, SimNode
from actors.testing.sim.network import Meter, NetModel, Network
from actors.testing.sim.scenario import Scenario, build, expect, start
from actors.testing.sim.views import EventLog, Observation, Views

__all__ = ["EventLog", "Meter", "NetModel", "Network", "Observation", "Scenario", "Sim",
           "SimNode", "Views", "build", "expect", "start"]
