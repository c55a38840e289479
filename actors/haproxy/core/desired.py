"""The admin state each HAProxy server should have, from the cluster's verdicts.

Two replicated inputs, both keyed by the health backend's name:

* the `health` provider's status, ``up`` or ``down``;
* the `circuit_breaker` provider's state, ``closed``, ``open`` or ``half_open``.

Precedence, one row per outcome (first match wins): down beats open beats up.

    health down                      -> MAINT  the backend fails its checks
    breaker open                     -> DRAIN  it answers checks but fails real calls:
                                               no new sessions, persistent ones may finish
    health up, or a breaker is known -> READY
    nothing known                    -> None   no verdict yet: the server is left as it is

A half-open breaker counts as closed (READY): its trial calls are real traffic,
and a drained server would never receive the trial that closes the breaker.
A failed trial opens the breaker again and the server is drained again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from actors.haproxy.core.names import ServerRef


class AdminState(enum.Enum):
    """The states `set server <b>/<s> state` accepts."""

    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


def desired_state(health: str | None, breaker: str | None) -> AdminState | None:
    """The precedence table of the module docstring."""
    if health == "down":
        return AdminState.MAINT
    if breaker == "open":
        return AdminState.DRAIN
    if health == "up" or breaker is not None:
        return AdminState.READY
    return None


def desired_states(servers: Mapping[str, ServerRef], health: Mapping[str, str],
                   breakers: Mapping[str, str]) -> dict[ServerRef, AdminState]:
    """Every configured server that has a verdict -> the state it should have."""
    out = {}
    for name, ref in servers.items():
        state = desired_state(health.get(name), breakers.get(name))
        if state is not None:
            out[ref] = state
    return out


def health_view(rows: Any) -> dict[str, str]:
    """name -> up/down from the `state` rows of the health provider (rows are checked,
    a malformed one is skipped: they come from another process)."""
    return _view(rows, "status", ("up", "down"))


def breaker_view(rows: Any) -> dict[str, str]:
    """name -> closed/open/half_open from the `state` rows of the circuit_breaker
    provider; a deleted breaker is closed."""
    view = _view(rows, "state", ("closed", "open", "half_open"))
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("deleted") is True and isinstance(row.get("key"),
                                                                                 str):
            view[row["key"]] = "closed"
    return view


def _view(rows: Any, field: str, allowed: tuple[str, ...]) -> dict[str, str]:
    view: dict[str, str] = {}
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or row.get("deleted") is True:
            continue
        key, value = row.get("key"), row.get("value")
        if isinstance(key, str) and isinstance(value, dict) and value.get(field) in allowed:
            view[key] = value[field]
    return view
