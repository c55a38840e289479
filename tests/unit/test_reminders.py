"""Suspicion reminders: which suspect hears it is suspected, and when."""

from __future__ import annotations

from test_membership_support import LAN, info

from actors.membership.core.members import ALIVE, DEAD, SUSPECT, MemberTable, News
from actors.membership.core.reminders import Reminders


def _table(suspects: list[tuple[int, float]]) -> MemberTable:
    """n0's table with n1..n5 alive, then each (i, at) in `suspects` suspected at `at`."""
    table = MemberTable(info(0), 0, 0.0, LAN)
    for i in range(1, 6):
        table.apply(News(ALIVE, f"n{i}", 0, info=info(i)), 0.0)
    for i, at in suspects:
        table.apply(News(SUSPECT, f"n{i}", 0, accuser="n9"), at)
    return table


def _picks(reminders: Reminders, table: MemberTable, times: list[float]) -> list[str | None]:
    picked = [reminders.next(table, t) for t in times]
    return [None if e is None else e.node.node_id for e in picked]


def test_suspects_take_turns_oldest_first_each_at_most_once_per_gap() -> None:
    table = _table([(3, 0.0), (1, 0.5), (4, 1.0)])
    reminders = Reminders(gap_s=2.0)
    assert _picks(reminders, table, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]) == [
        None,  # every suspicion is younger than the gap
        "n3", "n1", "n4",  # one per call, oldest suspicion first
        "n3", "n1", "n4",  # each again once its gap has passed
    ]


def test_a_suspect_that_refuted_or_died_is_not_reminded() -> None:
    table = _table([(2, 0.0), (5, 0.0)])
    reminders = Reminders(gap_s=2.0)
    table.apply(News(ALIVE, "n2", 1, info=info(2)), 1.0)  # n2 refuted
    assert _picks(reminders, table, [2.0, 3.0]) == ["n5", None]
    table.apply(News(SUSPECT, "n2", 1, accuser="n9"), 3.0)  # suspected afresh
    assert _picks(reminders, table, [4.0, 5.0]) == ["n5", "n2"]
    table.apply(News(DEAD, "n5", 0, accuser="n9"), 5.5)  # n5's suspicion ran out
    assert _picks(reminders, table, [7.0, 8.0]) == ["n2", None]


def test_no_suspects_no_reminders() -> None:
    assert Reminders(gap_s=2.0).next(_table([]), 100.0) is None
