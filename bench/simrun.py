"""The scale benchmark's harness around the simulator (`actors.testing.sim`): one
cluster with its views, the CPU and memory budget, progress lines, false-alarm
counting and summary statistics. bench/simulate.py's phases use it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from actors.membership.core.swim import MemberEvent
from actors.testing.sim import Sim, Views


class OverBudget(Exception):
    """A run went past its CPU-time or memory budget."""


def rss_gb() -> float:
    """Resident memory of this process now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e9


class Run:
    """One simulated cluster plus the helpers scenario phases share."""

    def __init__(self, sim: Sim, label: str, seed: int, budget_s: float,
                 max_rss_gb: float) -> None:
        self.sim, self.label, self.phase = sim, label, "boot"
        self.n = len(sim.nodes)
        self.views = Views(sim)
        self.rng = random.Random(seed)  # scenario choices, apart from the network's
        self.seeds = list(range(min(3, self.n)))
        self.budget_s, self.max_rss_gb = budget_s, max_rss_gb
        self.wall0, self.cpu0 = time.monotonic(), time.process_time()

    def advance(self, end: float, until: Callable[[], bool] | None = None,
                every: float = 0.05) -> bool:
        """`Sim.run_until` with progress lines and the budget check.

        Raises:
            OverBudget: the CPU budget or the memory cap was exceeded.
        """
        return self.sim.run_until(end, until, every, self._progress)

    def _progress(self, sim: Sim) -> None:
        wall, cpu, rss = time.monotonic() - self.wall0, time.process_time() - self.cpu0, rss_gb()
        print(f"  [{self.label} {self.phase}] t={sim.now:.1f}s calls={sim.handled} "
              f"cpu={cpu:.0f}s wall={wall:.0f}s rss={rss:.2f}GB", flush=True)
        # CPU, not wall-clock: the machine is shared, and a slice of it should not abort a size.
        if cpu > self.budget_s:
            raise OverBudget(f"CPU budget {self.budget_s:.0f} s exceeded")
        if rss > self.max_rss_gb:
            raise OverBudget(f"memory cap {self.max_rss_gb} GB exceeded")

    def all_see_all(self) -> bool:
        up = self.sim.up()
        return all(self.views.sees_all_alive(i, len(up) - 1) for i in up)

    def counter(self, name: str) -> int:
        """A core counter summed over every node, restarted ones' earlier lives included."""
        live = sum(node.core.counters.get(name, 0) for node in self.sim.nodes if node.core)
        return live + self.sim.retired_counters.get(name, 0)

    def pick(self, k: int = 1) -> list[int]:
        """k random live non-seed nodes (victims, broadcasters, slow members)."""
        return self.rng.sample([i for i in self.sim.up() if i not in self.seeds], k)


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    v = sorted(values)
    return {"count": len(v), "mean": sum(v) / len(v), "median": v[len(v) // 2],
            "p90": v[min(len(v) - 1, int(0.9 * len(v)))], "max": v[-1], "min": v[0]}


class Alarms:
    """Suspicions and failures of members that are in fact up: every one is false.

    An episode is one (member, incarnation) accusation, however many
    observers report it; events count every observer's report.
    """

    def __init__(self, run: Run) -> None:
        self.nodes, self.index, self.listeners = run.sim.nodes, run.sim.index, run.sim.listeners
        self.events = {"suspect": {"healthy": 0, "slow": 0}, "failed": {"healthy": 0, "slow": 0}}
        self.episodes: dict[str, set[tuple[int, int, str]]] = {"suspect": set(), "failed": set()}
        self.listeners.append(self.on_event)

    def on_event(self, now: float, observer: int, ev: MemberEvent) -> None:
        kind = {"node.suspect": "suspect", "node.failed": "failed"}.get(ev.kind)
        subject = self.index.get(ev.node.node_id)
        if kind is None or subject is None or not self.nodes[subject].up:
            return
        group = "slow" if self.nodes[subject].slow else "healthy"
        self.events[kind][group] += 1
        self.episodes[kind].add((subject, ev.incarnation, group))

    def summary(self, seconds: float) -> dict[str, Any]:
        """Counts so far, over `seconds` of virtual time; stops listening."""
        if self.on_event in self.listeners:
            self.listeners.remove(self.on_event)

        def count(kind: str, group: str) -> int:
            return sum(1 for e in self.episodes[kind] if e[2] == group)

        healthy = sum(1 for node in self.nodes if node.up and not node.slow)
        return {"suspect_events": self.events["suspect"], "failed_events": self.events["failed"],
                "suspect_episodes": count("suspect", "healthy"),
                "failed_episodes": count("failed", "healthy"),
                "slow_suspect_episodes": count("suspect", "slow"),
                "slow_failed_episodes": count("failed", "slow"),
                "healthy_member_hours": healthy * seconds / 3600.0}
