"""The one settings validator: typed fields in, checked values or one SettingsError out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport.settings import REQUIRED, Field, SettingsError, above_zero, build, read, value_of


@dataclass(frozen=True)
class Knobs:
    interval_s: float = 1.0
    count: int = 3
    name: str = "x"

    def __post_init__(self) -> None:
        if self.count > 10 and self.interval_s < 0.5:
            raise SettingsError("count", "above 10 needs interval_ms of 500 or more")


FIELDS = (
    Field("interval_ms", float, attr="interval_s", scale=0.001, check=above_zero,
          why="how often"),
    Field("count", int, low=0, high=100, why="how many"),
    Field("name", str, why="what"),
)


def test_absent_keys_keep_the_dataclass_defaults_and_given_ones_are_converted():
    assert build(Knobs, FIELDS, {}) == Knobs()
    assert build(Knobs, FIELDS, {"interval_ms": 250, "count": 0}) == Knobs(0.25, 0, "x")


def test_a_base_supplies_what_the_table_leaves_out():
    base = Knobs(2.0, 7, "base")
    assert build(Knobs, FIELDS, {"name": "y"}, base) == Knobs(2.0, 7, "y")


@pytest.mark.parametrize(("table", "key", "reason"), [
    ({"interval": 1}, "interval", "unknown key (known: count, interval_ms, name)"),
    ({"count": "3"}, "count", "must be an integer, not str"),
    ({"count": True}, "count", "must be an integer, not a boolean"),
    ({"count": 2.0}, "count", "must be an integer, not float"),
    ({"count": 101}, "count", "must be between 0 and 100 (got 101)"),
    ({"interval_ms": 0}, "interval_ms", "must be greater than 0"),
    ({"interval_ms": float("nan")}, "interval_ms", "must be a finite number, not nan"),
    ({"interval_ms": float("-inf")}, "interval_ms", "must be a finite number, not -inf"),
    ({"name": 5}, "name", "must be a string, not int"),
    ({"count": 11, "interval_ms": 100}, "count", "above 10 needs interval_ms of 500 or more"),
])
def test_every_mistake_is_one_error_naming_the_key(table: dict[str, Any], key: str,
                                                   reason: str):
    with pytest.raises(SettingsError) as info:
        build(Knobs, FIELDS, table)
    assert (info.value.key, info.value.reason) == (key, reason)
    assert str(info.value) == f"{key}: {reason}"


def test_read_fills_defaults_and_requires_keys_without_one():
    fields = (Field("a", int, 1), Field("b", str))
    assert read(fields, {"b": "x"}) == {"a": 1, "b": "x"}
    with pytest.raises(SettingsError, match="b: is required"):
        read(fields, {})
    assert read(fields, {}, defaults=False) == {}


def test_a_table_that_is_not_a_table_is_refused():
    with pytest.raises(SettingsError, match="must be a table, not list"):
        read(FIELDS, [1, 2])


def test_a_number_accepts_integers_and_returns_a_float():
    field = Field("ratio", float, low=0, high=1)
    assert value_of(field, 1) == 1.0 and isinstance(value_of(field, 1), float)
    with pytest.raises(SettingsError, match="must be between 0 and 1 "):
        value_of(field, 1.5)


def test_one_sided_ranges_say_which_side():
    with pytest.raises(SettingsError, match=r"must be at least 2 \(got 1\)"):
        value_of(Field("n", int, low=2), 1)
    with pytest.raises(SettingsError, match=r"must be at most 2\.5 \(got 3\)"):
        value_of(Field("x", float, high=2.5), 3)


ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=6)


@given(st.dictionaries(st.sampled_from(["interval_ms", "count", "name", "other"]), ANY_VALUE))
def test_any_table_gives_settings_or_one_settings_error(table: dict[str, Any]):
    try:
        knobs = build(Knobs, FIELDS, table)
    except SettingsError as exc:
        assert exc.key in table or exc.key == "count"
    else:
        assert isinstance(knobs.interval_s, float) and isinstance(knobs.count, int)


def _declared() -> list[Field]:
    from actors.anti_entropy.core import engine
    from actors.membership.core import timing
    from actors.node import config
    from actors.providers import circuit_breaker, health, kv

    return [*timing.FIELDS, *engine.FIELDS, *kv.FIELDS, *health.FIELDS,
            *circuit_breaker.FIELDS, *config._SUPERVISOR, *config._LOG]


@pytest.mark.parametrize("field", _declared(), ids=lambda f: f.key)
def test_every_declared_setting_says_why_and_its_default_passes_its_own_check(field: Field):
    assert field.why and "\n" not in field.why
    if field.default is not REQUIRED and field.default is not None:
        value_of(field, field.default)
