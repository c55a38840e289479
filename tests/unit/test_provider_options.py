"""Provider options through the one settings validator: the helpers providers build on."""

from __future__ import annotations

import pytest

from actors.providers.base import (
    ProviderOptionError,
    check_known,
    option_int,
    option_num,
    read_options,
)
from transport.settings import Field


def test_check_known_copies_a_table_of_known_options():
    assert check_known("p", {"a": 1}, frozenset({"a", "b"})) == {"a": 1}
    with pytest.raises(ProviderOptionError, match="p option c: unknown option") as info:
        check_known("p", {"c": 1}, frozenset({"a", "b"}))
    assert info.value.option == "c"
    with pytest.raises(ProviderOptionError, match="must be a table") as info:
        check_known("p", [1], frozenset({"a"}))
    assert info.value.option == "options"


def test_option_int_takes_the_default_and_refuses_booleans_floats_and_small_values():
    assert option_int("p", {}, "n", 5, 1) == 5
    assert option_int("p", {"n": 3}, "n", 5, 1) == 3
    for bad in (True, 2.0, "3", 0):
        with pytest.raises(ProviderOptionError) as info:
            option_int("p", {"n": bad}, "n", 5, 1)
        assert (info.value.provider, info.value.option) == ("p", "n")


def test_option_num_wants_a_positive_finite_number():
    assert option_num("p", {"x": 2}, "x", 1.0) == 2.0
    assert option_num("p", {}, "x", 1.5) == 1.5
    for bad in (0, -1.0, float("inf"), float("nan"), False, "1"):
        with pytest.raises(ProviderOptionError) as info:
            option_num("p", {"x": bad}, "x", 1.0)
        assert info.value.option == "x"


def test_read_options_converts_by_field_and_names_the_bad_option():
    fields = (Field("every_ms", float, 1000, low=1, attr="every_s", scale=0.001),
              Field("size", int, 10, low=1, high=100))
    assert read_options("p", {"every_ms": 250}, fields) == {"every_s": 0.25, "size": 10}
    with pytest.raises(ProviderOptionError, match="p option size: must be between 1 and 100"):
        read_options("p", {"size": 101}, fields)
    with pytest.raises(ProviderOptionError, match="unknown option"):
        read_options("p", {"colour": 1}, fields)
