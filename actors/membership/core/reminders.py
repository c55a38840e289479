"""Suspicion reminders: the Lifeguard buddy system, repeated until the suspect hears.

Why: a suspect that missed both the gossip and the buddy-system item (it was
behind a partition when they went round) never refutes, and a live member is
declared dead at the longest suspicion timeout (docs/design-notes.md).

Rule: once per probe interval, a node that holds suspects sends one of them
its alive message, which carries the suspect item. A suspect is reminded
only once its suspicion is `gap_s` old (gossip usually tells it sooner) and
at most once every `gap_s`; suspects take turns, oldest suspicion first.
Cost: at most one small message per probe interval per node, and only while
it holds a suspicion older than `gap_s`.
"""

from __future__ import annotations

import math

from actors.membership.core.members import Entry, MemberTable


class Reminders:
    """Which suspect to remind next; the owner sends the message."""

    def __init__(self, gap_s: float) -> None:
        self._gap_s = gap_s
        self._turns: list[str] = []  # this pass; popped from the end, oldest suspicion first
        self._last: dict[str, float] = {}  # when each suspect was last reminded

    def next(self, table: MemberTable, now: float) -> Entry | None:
        """The suspect to remind now, or None."""
        for _ in range(2):  # the rest of this pass, then one fresh pass
            while self._turns:
                entry = table.get(self._turns.pop())
                if entry is None or entry.suspicion is None:
                    continue  # refuted, failed or forgotten since this pass began
                node_id = entry.node.node_id
                since = max(entry.suspicion.start, self._last.get(node_id, -math.inf))
                if now - since >= self._gap_s:
                    self._last[node_id] = now
                    return entry
            suspects = table.suspect_ids()
            self._last = {k: self._last[k] for k in suspects if k in self._last}
            self._turns = suspects[::-1]
            if not suspects:
                return None
        return None
