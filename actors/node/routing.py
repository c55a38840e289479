"""Which actor serves a control op: a table built from the actor plan (pure).

Each actor kind declares what it serves (`actors.node.plan.plan_routes`):
an entry ending in ``.`` is a prefix (``metadata.`` serves ``metadata.set``),
any other is one op. A route may *strip* its prefix: a provider's commands
are named without it (``provider.kv.set`` and its short name ``kv.set``
both reach the kv provider as ``set``). The longest matching prefix wins, an
exact op beats any prefix, and two actors declaring the same entry is a
configuration error, found at startup.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Answered by the supervisor itself; no actor may claim them.
SUPERVISOR_OPS = frozenset({"ping", "status", "snapshot", "stop", "leave"})


@dataclass(frozen=True)
class Route:
    """`pattern` (an op, or a prefix ending in "."), served by `actor`; `strip` says
    whether the actor is sent the op without the prefix."""

    pattern: str
    actor: str
    strip: bool = False


class RouteConflict(ValueError):
    def __init__(self, route: Route, holder: str) -> None:
        super().__init__(f"{route.actor} declares {route.pattern!r}, "
                         f"which {holder} already serves")
        self.route, self.holder = route, holder


class RoutingTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.exact: dict[str, Route] = {}
        self.prefixes: dict[str, Route] = {}
        for route in routes:
            table = self.prefixes if route.pattern.endswith(".") else self.exact
            if route.pattern in SUPERVISOR_OPS:
                raise RouteConflict(route, "the supervisor")
            held = table.get(route.pattern)
            if held is not None:
                raise RouteConflict(route, held.actor)
            table[route.pattern] = route
        # Longest first, so "provider.kv." is tried before a shorter "provider.".
        self._ordered = sorted(self.prefixes.values(), key=lambda r: -len(r.pattern))

    def resolve(self, op: str) -> tuple[str, str] | None:
        """The actor serving `op` and the op as that actor names it; None if nobody does."""
        route = self.exact.get(op)
        if route is not None:
            return route.actor, op
        for route in self._ordered:
            if op.startswith(route.pattern) and len(op) > len(route.pattern):
                return route.actor, op[len(route.pattern):] if route.strip else op
        return None
