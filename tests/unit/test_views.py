"""The public rows built from states: `state` rows and ``state.changed`` event data."""

from __future__ import annotations

from transport.protocol import make_syncable_state
from transport.views import changed_row, state_row


def test_a_changed_row_is_the_state_row_without_its_value() -> None:
    state = make_syncable_state("kv", "pool/web", {"weight": 3}, 7, "n1")
    assert changed_row(state) == {"state_type": "kv", "key": "pool/web", "version": 7,
                                  "source_node": "n1", "deleted": False}
    assert state_row(state)["value"] == {"weight": 3}  # the state row keeps it


def test_a_changed_row_says_a_delete_is_a_delete() -> None:
    assert changed_row(make_syncable_state("kv", "gone", None, 8, "n2"))["deleted"] is True
