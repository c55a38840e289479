"""The public shapes of members and states: event data and `--json` output.

Wire maps (transport.protocol) use short keys to save bytes; what users and
scripts read uses full names, defined once here.
"""

from __future__ import annotations

from typing import Any

from transport.protocol import NodeInfo, SyncableState, is_tombstone


def member_row(node: NodeInfo, status: str, incarnation: int) -> dict[str, Any]:
    return {"node_id": node.node_id, "address": node.address, "metadata": dict(node.metadata),
            "status": status, "incarnation": incarnation}


def state_row(state: SyncableState) -> dict[str, Any]:
    return {"state_type": state.state_type, "key": state.key, "value": state.value,
            "version": state.version, "source_node": state.source_node,
            "deleted": is_tombstone(state)}
