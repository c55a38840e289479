"""The public shapes of members and states: event data and `--json` output.

Wire maps (transport.protocol) use short keys to save bytes; what users and
scripts read uses full names, defined once here.
"""

from __future__ import annotations

from typing import Any

from transport.protocol import (
    NodeInfo,
    ProtocolError,
    SyncableState,
    is_tombstone,
    map_to_syncable_state,
)
from transport.rpc import RpcError


def member_row(node: NodeInfo, status: str, incarnation: int) -> dict[str, Any]:
    return {"node_id": node.node_id, "address": node.address, "metadata": dict(node.metadata),
            "status": status, "incarnation": incarnation}


def state_row(state: SyncableState) -> dict[str, Any]:
    return {"state_type": state.state_type, "key": state.key, "value": state.value,
            "version": state.version, "source_node": state.source_node,
            "deleted": is_tombstone(state)}


def changed_row(state: SyncableState) -> dict[str, Any]:
    """The data of a ``state.changed`` event: what changed, not the value (one
    `state` request away), so an event stays small whatever the value's size."""
    row = state_row(state)
    del row["value"]
    return row


def parse_states_untrusted(raw: Any) -> tuple[list[SyncableState], int]:
    """States from a request's list of state maps, and how many items were malformed."""
    if not isinstance(raw, list):
        raise RpcError("bad_request", "states must be a list")
    states, bad = [], 0
    for item in raw:
        try:
            states.append(map_to_syncable_state(item))
        except ProtocolError:
            bad += 1
    return states, bad
