"""check_provider_class: each kind of contract violation, named in one line."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from actors.node.config import ConfigError, parse_config
from actors.node.plan import BUILTIN_CLASSES, provider_class
from actors.providers.contract import (
    ContractError,
    check_provider_class,
    load_provider_class,
)
from examples.sticky import StickyProvider
from transport.protocol import ApplyResult, SyncableState


class NoFailureHook(StickyProvider):
    on_node_failure = None  # type: ignore[assignment]


class WrongArity(StickyProvider):
    def apply_remote_state(self) -> ApplyResult:  # type: ignore[override]
        return {"applied": 0, "conflicts": 0, "rejected": 0}


class EmptyType(StickyProvider):
    def provider_type(self) -> str:
        return ""


class StringDigest(StickyProvider):
    def get_state_digest(self) -> dict[Any, int]:  # type: ignore[override]
        return {"sticky/k": 1}


class DictStates(StickyProvider):
    def get_sync_state(self) -> Any:
        return {}


class NoCounts(StickyProvider):
    def apply_remote_state(self, states: list[SyncableState]) -> Any:
        return None


class RaisesOnApply(StickyProvider):
    def apply_remote_state(self, states: list[SyncableState]) -> ApplyResult:
        raise AttributeError("'list' object has no attribute 'key'")


class BrokenInit(StickyProvider):
    def __init__(self, **kwargs: Any) -> None:
        raise RuntimeError("no database")


class OldSignature:
    def __init__(self, node_id: str) -> None:  # no clock, no options
        self.node_id = node_id


VIOLATIONS = [
    (NoFailureHook, "on_node_failure: is not a method"),
    (WrongArity, "apply_remote_state: must take 1 argument besides self"),
    (EmptyType, "provider_type: must return a non-empty string, not ''"),
    (StringDigest, "get_state_digest: key 'sticky/k' must be a (state_type, key) tuple"),
    (DictStates, "get_sync_state: must return a list of SyncableState, not dict"),
    (NoCounts, "apply_remote_state: must return {applied, conflicts, rejected} as integers"),
    (RaisesOnApply, "apply_remote_state: raised AttributeError: 'list' object has no attr"),
    (BrokenInit, "__init__: raised RuntimeError: no database"),
    (OldSignature, "provider_type: is missing"),
]


@pytest.mark.parametrize(("cls", "problem"), VIOLATIONS, ids=[c.__name__ for c, _ in VIOLATIONS])
def test_each_contract_violation_is_named_with_class_and_method(cls: type, problem: str) -> None:
    with pytest.raises(ContractError) as raised:
        check_provider_class(cls, {})
    message = str(raised.value)
    assert message.startswith(f"{cls.__module__}.{cls.__qualname__}.")
    assert problem in message and "\n" not in message


def test_options_the_constructor_refuses_are_a_violation_of_init() -> None:
    with pytest.raises(ContractError, match=r"__init__: refused its options: unknown option"):
        check_provider_class(StickyProvider, {"colour": "red"})


@pytest.mark.parametrize("name", sorted(BUILTIN_CLASSES))
def test_every_built_in_provider_keeps_the_contract(name: str) -> None:
    options = {"backends": []} if name == "health" else {}
    assert check_provider_class(load_provider_class(BUILTIN_CLASSES[name]), options)


def test_the_worked_example_keeps_the_contract() -> None:
    assert check_provider_class(StickyProvider, {"max_entries": 10}) == "sticky"


@pytest.mark.parametrize(("target", "problem"), [
    ("examples.sticky", "must look like package.module:ClassName"),
    ("examples.nowhere:X", "cannot load examples.nowhere:X"),
    ("examples.sticky:OPTIONS", "is not a class"),
])
def test_a_target_that_is_not_a_class_is_one_line(target: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        load_provider_class(target)


def test_a_node_config_with_a_violating_provider_is_a_config_error(tmp_path: Path) -> None:
    raw = tomllib.loads(f"""
        [node]
        data_dir = "{tmp_path}"
        [network]
        gossip = "tcp://127.0.0.1:7946"
        sync = "tcp://127.0.0.1:7947"
        [local]
        events = "tcp://127.0.0.1:7948"
        control = "ipc://{tmp_path}/control.sock"
        [[providers]]
        type = "sticky"
        module = "{__name__}:RaisesOnApply"
    """)
    cfg = parse_config(raw, tmp_path / "node.toml")
    with pytest.raises(ConfigError) as raised:  # checked in a forked child
        provider_class(cfg, cfg.providers[0], 0)
    assert raised.value.key == "providers[0].module"
    assert "RaisesOnApply.apply_remote_state: raised AttributeError" in str(raised.value)
