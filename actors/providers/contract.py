"""Checks that a provider class keeps the `StateProvider` contract, before it runs.

The node checks every ``[[providers]]`` class when it loads its config, and
``lbcluster check-provider MODULE:CLASS`` runs the same checks: a violation
is a config error (one line naming the class, the method and what was wrong),
not a crash loop after the first replicated write.

The checks construct the class twice, the way a node does
(``cls(node_id=..., clock=..., options=...)``), and exercise fresh instances:

* every contract method is present, callable and takes the documented arguments;
* ``provider_type()`` is a non-empty string;
* ``get_sync_state()`` is a list of `SyncableState` of that type;
* ``get_state_digest()`` is keyed by ``(state_type, key)`` tuples with int versions;
* one instance's states, and a tombstone it has never seen, go through a second
  instance's ``apply_remote_state``, which returns ``{applied, conflicts,
  rejected}`` integers;
* the optional hooks, where present, are callable (``drain_changes`` returns a list).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from transport.protocol import LamportClock, SyncableState, make_syncable_state

REQUIRED = {  # method -> positional arguments it is called with (self excluded)
    "provider_type": 0, "get_sync_state": 0, "get_state_digest": 0,
    "apply_remote_state": 1, "on_node_failure": 1,
}
OPTIONAL = {"drain_changes": 0, "tick": 1, "next_deadline": 0, "on_members": 2, "close": 0,
            "set_wakeup": 1}
_MISSING = object()
CHECK_NODE, OTHER_NODE = "lbcluster-check-a", "lbcluster-check-b"


class ContractError(ValueError):
    """A provider class breaks the contract: ``Class.method: what is wrong``."""

    def __init__(self, cls: type, method: str, problem: str) -> None:
        super().__init__(f"{cls.__module__}.{cls.__qualname__}.{method}: {problem}")
        self.method, self.problem = method, problem


def load_provider_class(target: str) -> type:
    """``package.module:Class`` to the class. Raises: ContractError-free ValueError."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{target!r} must look like package.module:ClassName")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load {target} ({exc})") from None
    if not isinstance(cls, type):
        raise ValueError(f"{target} is not a class")
    return cls


def check_provider_class(cls: type, options: Mapping[str, Any]) -> str:
    """Run every check on `cls` with `options`; return its state type.

    Raises:
        ContractError: the first violation found.
    """
    for name, arity in REQUIRED.items():
        _check_signature(cls, name, arity, required=True)
    for name, arity in OPTIONAL.items():
        _check_signature(cls, name, arity, required=False)
    first, second = _build(cls, options, CHECK_NODE), _build(cls, options, OTHER_NODE)
    state_type = _call(cls, "provider_type", first.provider_type)
    if not isinstance(state_type, str) or not state_type:
        raise ContractError(cls, "provider_type", f"must return a non-empty string, "
                            f"not {state_type!r}")
    states = _check_states(cls, first, state_type)
    _check_digest(cls, first)
    tombstone = make_syncable_state(state_type, "lbcluster-check", None, 1, OTHER_NODE)
    for batch in (states, [tombstone]):
        result = _call(cls, "apply_remote_state", second.apply_remote_state, list(batch))
        _check_apply_result(cls, result)
    drain = getattr(second, "drain_changes", None)
    if drain is not None:
        drained = _call(cls, "drain_changes", drain)
        if not isinstance(drained, list | tuple):
            raise ContractError(cls, "drain_changes", f"must return a list of states, not "
                                f"{type(drained).__name__}")
    _call(cls, "on_node_failure", second.on_node_failure, OTHER_NODE)
    return state_type


def _build(cls: type, options: Mapping[str, Any], node_id: str) -> Any:
    try:
        return cls(node_id=node_id, clock=LamportClock(), options=dict(options))
    except (ValueError, TypeError, KeyError) as exc:
        raise ContractError(cls, "__init__", f"refused its options: {exc}") from None
    except Exception as exc:
        raise ContractError(cls, "__init__", f"raised {type(exc).__name__}: {exc}") from None


def _check_signature(cls: type, name: str, arity: int, required: bool) -> None:
    method = inspect.getattr_static(cls, name, _MISSING)
    if method is _MISSING:
        if required:
            raise ContractError(cls, name, "is missing")
        return
    fn = getattr(cls, name)
    if not callable(fn):
        raise ContractError(cls, name, "is not a method")
    if isinstance(method, staticmethod | classmethod):
        return  # bound differently; calling it below will tell
    try:
        inspect.signature(fn).bind(None, *([None] * arity))
    except TypeError:
        plural = "argument" if arity == 1 else "arguments"
        raise ContractError(cls, name, f"must take {arity} {plural} besides self") from None
    except ValueError:
        pass  # no signature to read (a builtin): calling it below will tell


def _call(cls: type, name: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        raise ContractError(cls, name, f"raised {type(exc).__name__}: {exc}") from None


def _check_states(cls: type, provider: Any, state_type: str) -> list[SyncableState]:
    states = _call(cls, "get_sync_state", provider.get_sync_state)
    if not isinstance(states, list | tuple):
        raise ContractError(cls, "get_sync_state", f"must return a list of SyncableState, "
                            f"not {type(states).__name__}")
    for s in states:
        if not isinstance(s, SyncableState) or s.state_type != state_type:
            raise ContractError(cls, "get_sync_state", f"returned {s!r}: each item must be "
                                f"a SyncableState of type {state_type!r}")
    return list(states)


def _check_digest(cls: type, provider: Any) -> None:
    digest = _call(cls, "get_state_digest", provider.get_state_digest)
    if not isinstance(digest, Mapping):
        raise ContractError(cls, "get_state_digest", f"must return a dict, "
                            f"not {type(digest).__name__}")
    for key, version in digest.items():
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(p, str) for p in key)):
            raise ContractError(cls, "get_state_digest", f"key {key!r} must be a "
                                "(state_type, key) tuple of strings")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ContractError(cls, "get_state_digest", f"version of {key!r} must be an int")


def _check_apply_result(cls: type, result: Any) -> None:
    wanted = ("applied", "conflicts", "rejected")
    if not isinstance(result, Mapping) or any(
            isinstance(result.get(k), bool) or not isinstance(result.get(k), int)
            or result[k] < 0 for k in wanted):
        raise ContractError(cls, "apply_remote_state", f"must return {{applied, conflicts, "
                            f"rejected}} as integers >= 0, not {result!r}")
