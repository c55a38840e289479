"""Validation primitives for untrusted protocol fields; `transport.protocol` re-exports them.

Theory of operation:

* Every check takes a value of unknown type and either returns it (typed) or
  raises `ProtocolError(reason, field)`, never any other error, whatever the
  input: maps arrive from the network.
* Ids are non-empty str of bounded length (`MAX_ID_LEN`, keys `MAX_KEY_LEN`);
  versions, incarnations and sequence numbers are ints in [0, 2**63).
* Value shape: a replicated value or metadata map is msgpack-native (None,
  bool, int in the 64-bit range, float, str, bytes, list or tuple, dict with
  str keys) and nested at most `MAX_VALUE_DEPTH` deep, so it round-trips
  through the codec unchanged.
* A digest maps (state_type, key) to a version; on the wire it is a list of
  [state_type, key, version] triples because msgpack map keys are str.

This module is pure: no sockets, no clock, no logging.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from transport.errors import ProtocolError

MAX_ID_LEN = 256
MAX_KEY_LEN = 1024
MAX_U63 = 2**63 - 1  # versions, incarnations and sequence numbers stay below 2**63
# What a node *believes* from a peer. A Lamport version or an incarnation grows by
# one per write or refutation, so an honest one never gets near 2**53 (a million
# writes a second for 285 years); a hostile one at 2**63-1 would leave no room to
# outbid it, freezing the clock or the member for good. Such values are refused.
MAX_COUNTER = 2**53 - 1
# Below MAX_COUNTER a forged counter can still burn what is left: one "suspect me
# at 2**53-2" and the next refutation is the last. So a receiver believes a
# counter above COUNTER_SOFT_MAX only if it is within COUNTER_MAX_JUMP of the
# highest it already believes. Honest counters never get there; after a forgery
# reached it, honest increments (+1 each) go on for 2**40 more steps, and a forger
# needs 2**24 accepted messages to eat that headroom.
COUNTER_SOFT_MAX = MAX_COUNTER - 2**40
COUNTER_MAX_JUMP = 2**16
_TCP_ENDPOINT = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):\d{1,5}$")
# An endpoint a node binds: as above, and host `*` (every interface) too.
TCP_BIND_ENDPOINT = re.compile(
    r"^tcp://(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-*]+):(?P<port>\d{1,5})$")
MAX_VALUE_DEPTH = 32
_INT_MIN = -(2**63)  # msgpack integers: int64 .. uint64
_UINT_MAX = 2**64 - 1


def check_id(value: object, name: str, max_len: int = MAX_ID_LEN) -> str:
    """Return `value` if it is a non-empty str of at most `max_len` chars."""
    if not isinstance(value, str):
        raise ProtocolError("bad_field_type", name)
    if not value or len(value) > max_len:
        raise ProtocolError("bad_field_value", name)
    return value


def check_counter(value: object, name: str) -> int:
    """Return `value` if it is an int in [0, MAX_COUNTER] (see MAX_COUNTER)."""
    counter = check_u63(value, name)
    if counter > MAX_COUNTER:
        raise ProtocolError("absurd_counter", name)
    return counter


def plausible_counter(value: int, highest: int) -> bool:
    """Whether to believe `value`, given the highest counter already believed."""
    return value <= COUNTER_SOFT_MAX or value <= min(MAX_COUNTER, highest + COUNTER_MAX_JUMP)


def check_endpoint(value: object, name: str) -> str:
    """Return `value` if it is a tcp://host:port endpoint a node may dial."""
    if not isinstance(value, str):
        raise ProtocolError("bad_field_type", name)
    if len(value) > MAX_ID_LEN or not _TCP_ENDPOINT.match(value):
        raise ProtocolError("bad_endpoint", name)
    return value


def check_u63(value: object, name: str) -> int:
    """Return `value` if it is an int in [0, 2**63) (bool is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError("bad_field_type", name)
    if not 0 <= value <= MAX_U63:
        raise ProtocolError("out_of_range", name)
    return value


# Exact scalar types accepted at a glance; subclasses take the _is_leaf path.
_LEAVES = frozenset({type(None), bool, str, bytes, float})


def _is_leaf(item: object, name: str) -> bool:
    """True for a native scalar, False for a container; raise on anything else."""
    if item is None or isinstance(item, (bool, str, bytes, float)):
        return True
    if isinstance(item, int):
        if not _INT_MIN <= item <= _UINT_MAX:
            raise ProtocolError("out_of_range", name)
        return True
    if isinstance(item, (list, tuple, dict)):
        return False
    raise ProtocolError("bad_value_type", name)


def validate_value(value: object, name: str = "value", max_depth: int = MAX_VALUE_DEPTH) -> None:
    """Check that `value` is msgpack-native and nested at most `max_depth` deep.

    Native: None, bool, int in the 64-bit range, float, str, bytes, list or
    tuple, dict with str keys. Iterative, so cyclic or absurdly deep input
    gives `ProtocolError("too_deep")`, never RecursionError. Hot on decode
    (every state value), hence the exact-type fast paths.
    """
    if type(value) in _LEAVES or _is_leaf(value, name):
        return
    stack: list[tuple[Any, int]] = [(value, 0)]  # containers only
    while stack:
        item, depth = stack.pop()
        if depth >= max_depth:
            raise ProtocolError("too_deep", name)
        children = item
        if isinstance(item, dict):
            try:
                "".join(item)  # a C-speed "every key is a str" check
            except TypeError:
                raise ProtocolError("bad_map_key", name) from None
            children = item.values()
        for child in children:
            kind = type(child)
            if kind in _LEAVES or (kind is int and _INT_MIN <= child <= _UINT_MAX):
                continue
            if not _is_leaf(child, name):
                stack.append((child, depth + 1))


def check_map(value: object, name: str) -> dict[str, Any]:
    """Copy a str-keyed mapping of native values into a plain dict."""
    if not isinstance(value, Mapping):
        raise ProtocolError("bad_field_type", name)
    result = dict(value)
    validate_value(result, name)
    return result


def as_map(value: object, name: str) -> Mapping[Any, Any]:
    """Return `value` if it is a mapping (its contents unchecked)."""
    if not isinstance(value, Mapping):
        raise ProtocolError("not_a_map", name)
    return value


def required(m: Mapping[Any, Any], key: str, name: str) -> Any:
    """`m[key]`, or ProtocolError("missing_field", name) if absent."""
    if key not in m:
        raise ProtocolError("missing_field", name)
    return m[key]


# --- digests ---------------------------------------------------------------


def digest_entry(stype: object, key: object, version: object) -> tuple[tuple[str, str], int]:
    """One checked digest entry: ((state_type, key), version)."""
    skey = (check_id(stype, "digest.state_type"), check_id(key, "digest.key", MAX_KEY_LEN))
    return skey, check_u63(version, "digest.version")


def check_digest(digest: object) -> dict[tuple[str, str], int] | None:
    """A digest given as a mapping (the record form); None stays None."""
    if digest is None:
        return None
    if not isinstance(digest, Mapping):
        raise ProtocolError("bad_field_type", "digest")
    result: dict[tuple[str, str], int] = {}
    for skey, version in digest.items():
        if not isinstance(skey, tuple) or len(skey) != 2:
            raise ProtocolError("bad_field_type", "digest")
        checked, ver = digest_entry(skey[0], skey[1], version)
        result[checked] = ver
    return result


def digest_from_triples(raw: object) -> dict[tuple[str, str], int] | None:
    """A digest given as [state_type, key, version] triples (the wire form)."""
    if raw is None:
        return None
    if not isinstance(raw, (list, tuple)):
        raise ProtocolError("bad_field_type", "digest")
    result: dict[tuple[str, str], int] = {}
    for triple in raw:
        if not isinstance(triple, (list, tuple)) or len(triple) != 3:
            raise ProtocolError("bad_field_type", "digest")
        skey, version = digest_entry(*triple)
        if skey in result:
            raise ProtocolError("duplicate_digest_key", "digest")
        result[skey] = version
    return result
