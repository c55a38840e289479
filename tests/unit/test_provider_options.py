"""Provider options through the one settings validator: the helpers providers build on."""

from __future__ import annotations

import pytest

from actors.providers.base import ProviderOptionError, read_options
from transport.settings import Field, above_zero

INT = (Field("n", int, 5, low=1),)
NUM = (Field("x", float, 1.0, check=above_zero),)


def test_options_must_be_a_table_of_known_keys():
    assert read_options("p", {"n": 1}, INT) == {"n": 1}
    with pytest.raises(ProviderOptionError, match="p option c: unknown option") as info:
        read_options("p", {"c": 1}, INT)
    assert info.value.option == "c"
    with pytest.raises(ProviderOptionError, match="must be a table") as info:
        read_options("p", [1], INT)
    assert info.value.option == "options"


def test_an_int_option_takes_the_default_and_refuses_booleans_floats_and_small_values():
    assert read_options("p", {}, INT) == {"n": 5}
    assert read_options("p", {"n": 3}, INT) == {"n": 3}
    for bad in (True, 2.0, "3", 0):
        with pytest.raises(ProviderOptionError) as info:
            read_options("p", {"n": bad}, INT)
        assert (info.value.provider, info.value.option) == ("p", "n")


def test_a_number_option_wants_a_positive_finite_number():
    assert read_options("p", {"x": 2}, NUM) == {"x": 2.0}
    assert read_options("p", {}, NUM) == {"x": 1.0}
    for bad in (0, -1.0, float("inf"), float("nan"), False, "1"):
        with pytest.raises(ProviderOptionError) as info:
            read_options("p", {"x": bad}, NUM)
        assert info.value.option == "x"


def test_read_options_converts_by_field_and_names_the_bad_option():
    fields = (Field("every_ms", float, 1000, low=1, attr="every_s", scale=0.001),
              Field("size", int, 10, low=1, high=100))
    assert read_options("p", {"every_ms": 250}, fields) == {"every_s": 0.25, "size": 10}
    with pytest.raises(ProviderOptionError, match="p option size: must be between 1 and 100"):
        read_options("p", {"size": 101}, fields)
    with pytest.raises(ProviderOptionError, match="unknown option"):
        read_options("p", {"colour": 1}, fields)
