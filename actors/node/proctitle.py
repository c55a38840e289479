"""Process titles for ps and top: `lbcluster[node-a] membership`.

The node id is remembered on the first call (in the supervisor) so that
processes forked later, which inherit it, can name just their role.
"""

from __future__ import annotations

import setproctitle

_node_id = ""


def set_title(role: str, node_id: str | None = None) -> str:
    """Retitle this process `lbcluster[NODE] ROLE`; returns the title."""
    global _node_id
    if node_id is not None:
        _node_id = node_id
    title = f"lbcluster[{_node_id}] {role}"
    setproctitle.setproctitle(title)
    return title
