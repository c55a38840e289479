"""The CLI's rendering: strict JSON, tables and event lines."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.cli import render


def _strict_loads(text: str) -> object:
    def refuse(name: str) -> object:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_become_strings_so_json_output_stays_strict():
    doc = {"states": [{"value": math.nan}, {"value": math.inf}, {"value": -math.inf}]}
    parsed = _strict_loads(render.to_json(doc))
    assert [s["value"] for s in parsed["states"]] == ["NaN", "Infinity", "-Infinity"]


def test_bytes_become_hex_and_non_string_keys_become_strings():
    assert _strict_loads(render.to_json({1: b"\x01\xff", "k": (1, 2)})) == {
        "1": "01ff", "k": [1, 2]}


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text() | st.integers(), inner, max_size=4),
    max_leaves=20)


@given(json_like)
def test_any_decoded_value_renders_as_strict_json(value):
    _strict_loads(render.to_json(value))


def test_a_table_aligns_columns_and_shows_missing_values_as_a_dash():
    rows = [{"node_id": "a", "status": "alive", "incarnation": 3},
            {"node_id": "node-bb", "status": "suspect"}]
    lines = render.table(rows, ("node_id", "status", "incarnation")).splitlines()
    assert lines[0].split() == ["NODE_ID", "STATUS", "INCARNATION"]
    assert lines[2].split() == ["node-bb", "suspect", "-"]
    assert lines[1].index("alive") == lines[2].index("suspect") == lines[0].index("STATUS")


def test_a_table_cell_holding_a_map_is_its_json():
    text = render.table([{"value": {"w": 3}, "f": math.nan}], ("value", "f"))
    assert '{"w": 3}' in text and "NaN" in text


def test_an_event_line_names_source_seq_type_and_subject_without_lbc_metadata():
    event = {"type": "node.joined", "node_id": "b", "source": "a", "seq": 7,
             "timestamp": 0, "data": {"address": "tcp://x:1",
                                      "metadata": {"lbc.internal": 1, "zone": "eu"}}}
    line = render.format_event(event, colour=False)
    assert "[a #7]" in line and "node.joined" in line and " b " in line
    assert 'metadata={"zone": "eu"}' in line and "lbc." not in line
    assert "\033[" not in line


@pytest.mark.parametrize(("kind", "code"), [("node.failed", 31), ("node.joined", 32)])
def test_event_types_are_coloured_only_when_asked(kind, code):
    event = {"type": kind, "node_id": "b", "source": "a", "seq": 1, "timestamp": 0}
    assert f"\033[{code}m" in render.format_event(event, colour=True)


def test_a_streams_snapshot_item_renders_as_the_documented_json_line():
    item = {"type": "snapshot", "node_id": "a", "seq": 12,
            "data": {"members": [{"node_id": "a"}], "actors": []}}
    assert render.snapshot_document(item) == {
        "snapshot": {"seq": 12, "node_id": "a", "members": [{"node_id": "a"}], "actors": []}}
    assert "1 members" in render.format_snapshot(item, colour=False)


def test_public_metadata_drops_only_the_librarys_own_keys():
    row = {"node_id": "a", "metadata": {"lbc.sync": "tcp://x:1", "zone": "eu"}}
    assert render.public_metadata(row)["metadata"] == {"zone": "eu"}
    assert row["metadata"]["lbc.sync"] == "tcp://x:1"  # the input is left alone
    assert render.public_metadata({"node_id": "a"}) == {"node_id": "a"}
