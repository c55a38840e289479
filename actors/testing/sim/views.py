"""Listeners on a `Sim`'s membership events: what each node believes, and when it learnt it.

Both are built from the events the cores emit (`drain_events`), as a
subscriber to a real node's event socket would see them, so a check costs
nothing per core call.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.membership.core.swim import MemberEvent
from actors.testing.sim.cluster import Sim
from transport.protocol import MemberStatus


class Views:
    """What every node believes, kept incrementally from the cores' events.

    `alive[i]` is how many other nodes observer i holds alive; `not_alive[i]`
    maps the others it knows in another status to that status. O(1) per
    event, so convergence can be checked often at any N.
    """

    def __init__(self, sim: Sim) -> None:
        n = len(sim.nodes)
        self._index = sim.index
        self.alive = [0] * n
        self.not_alive: list[dict[int, str]] = [{} for _ in range(n)]
        sim.listeners.append(self.on_event)

    def on_event(self, now: float, observer: int, event: MemberEvent) -> None:
        subject = self._index.get(event.node.node_id)
        if subject is None or subject == observer:
            return
        others = self.not_alive[observer]
        was_counted = event.kind != "node.joined" and subject not in others
        if event.status == MemberStatus.ALIVE:
            if not was_counted:
                self.alive[observer] += 1
                others.pop(subject, None)
        else:
            if was_counted:
                self.alive[observer] -= 1
            others[subject] = event.status

    def reset(self, i: int) -> None:
        """Node i restarted with an empty table."""
        self.alive[i] = 0
        self.not_alive[i] = {}

    def converged(self, members: list[int]) -> None:
        """`members` started converged (no events): each sees the others alive."""
        for i in members:
            self.alive[i] = len(members) - 1
            self.not_alive[i] = {}

    def sees_all_alive(self, observer: int, others: int) -> bool:
        return self.alive[observer] == others and not self.not_alive[observer]


@dataclass(frozen=True)
class Observation:
    time: float
    observer: str
    event: MemberEvent


class EventLog:
    """Every event of every core, in order, for tests to ask when something happened."""

    def __init__(self, sim: Sim) -> None:
        self._nodes = sim.nodes
        self.observations: list[Observation] = []
        sim.listeners.append(self.on_event)

    def on_event(self, now: float, observer: int, event: MemberEvent) -> None:
        self.observations.append(Observation(now, self._nodes[observer].info.node_id, event))

    def of_kind(self, kind: str) -> list[tuple[float, str, str]]:
        """(time, observer, subject) of every `kind` event (e.g. "node.failed")."""
        return [(o.time, o.observer, o.event.node.node_id) for o in self.observations
                if o.event.kind == kind]

    def first(self, observer: str, kind: str, about: str) -> float | None:
        """When `observer` first emitted a `kind` event about `about`; None if never."""
        for o in self.observations:
            if o.observer == observer and o.event.kind == kind and \
                    o.event.node.node_id == about:
                return o.time
        return None
