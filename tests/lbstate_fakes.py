"""Fake nodes for the `rate` and `stick_table` provider tests: one fake clock, gossip by hand."""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from transport.protocol import LamportClock, SyncableState

WALL0 = 1_700_000_000.0  # a whole second, so bucket arithmetic in tests is exact


class Ticking(Protocol):
    node_id: str

    def tick(self, now: float) -> None: ...

    def drain_changes(self) -> list[SyncableState]: ...

    def apply_remote_state(self, states: list[SyncableState]) -> Any: ...


P = TypeVar("P", bound=Ticking)


class FakeNodes(Generic[P]):
    """Providers of several nodes sharing a fake monotonic (`now`) and wall clock (`wall`)."""

    def __init__(self, cls: Any, ids: list[str], options: dict[str, Any] | None = None) -> None:
        self.now, self.wall = 1000.0, WALL0
        self.nodes: dict[str, P] = {
            n: cls(n, LamportClock(), options or {}, now_fn=lambda: self.now,
                   wall_fn=lambda: self.wall)
            for n in ids}
        self.sent: list[SyncableState] = []  # every state a node wrote itself, in order

    def __getitem__(self, node_id: str) -> P:
        return self.nodes[node_id]

    def advance(self, dt: float) -> None:
        """Move both clocks and tick every node (nothing is spread)."""
        self.now += dt
        self.wall += dt
        for p in self.nodes.values():
            p.tick(self.now)

    def spread(self, among: list[str] | None = None) -> int:
        """Deliver every node's changes to the other nodes in `among`; how many were sent."""
        ids = list(self.nodes) if among is None else among
        sent = 0
        for n in ids:
            changes = self.nodes[n].drain_changes()
            own = [s for s in changes if s.source_node == n]
            self.sent += own
            sent += len(own)
            for m in ids:
                if m != n and own:
                    self.nodes[m].apply_remote_state(own)
        for n in ids:
            self.nodes[n].drain_changes()  # remote applications: already everywhere
        return sent
