"""The member table's indexes (live count, suspects, dead-or-left in transition order)
always agree with a recount of the table, whatever news arrives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.membership.core.members import ALIVE, DEAD, LEFT, LIVE, SUSPECT, MemberTable, News
from actors.membership.core.timing import PROFILES
from transport.protocol import NodeInfo

IDS = ["a", "b", "c", "d", "e"]
news = st.tuples(st.sampled_from([ALIVE, SUSPECT, DEAD, LEFT]), st.sampled_from(IDS),
                 st.integers(0, 4), st.sampled_from(["reap", "evict", "news", "news", "news"]),
                 st.integers(1, 3))


def _recount(table: MemberTable) -> tuple[int, set[str], list[str]]:
    entries = table.entries()
    live = sum(e.status in LIVE for e in entries)
    suspects = {e.node.node_id for e in entries if e.suspicion is not None}
    gone = sorted((e for e in entries if e is not table.me and e.status in (DEAD, LEFT)),
                  key=lambda e: e.since)
    return live, suspects, [e.node.node_id for e in gone]


@settings(max_examples=300, deadline=None)
@given(st.lists(news, max_size=60))
def test_indexes_match_a_recount_after_any_news(
        items: list[tuple[str, str, int, str, int]]) -> None:
    table = MemberTable(NodeInfo("me", "tcp://127.0.0.1:1", {}), 1, 0.0, PROFILES["lan"])
    for step, (kind, node, inc, action, port) in enumerate(items):
        now = float(step)
        if action == "reap":
            table.reap(now, 10.0)
        elif action == "evict":
            table.evict_longest_gone()
        else:
            # ports 1-3: members share addresses, and one claims ours
            info = NodeInfo(node, f"tcp://127.0.0.1:{port}", {}) if kind == ALIVE else None
            accuser = None if kind in (ALIVE, LEFT) else "x"
            table.apply(News(kind, node, inc, info=info, accuser=accuser), now)
        live, suspects, gone = _recount(table)
        assert table.live_count() == live
        assert set(table._suspects) == suspects
        assert list(table._gone) == gone
        assert table.next_reap(10.0) == (None if not gone else table.get(gone[0]).since + 10.0)
        for port in (1, 2, 3, 4):
            address = f"tcp://127.0.0.1:{port}"
            claimants = {e.node.node_id for e in table.entries()
                         if e.node.address == address and e is not table.me}
            found = table.node_at(address)
            assert found in claimants if claimants else found is None
