"""Reading the untrusted payload fields of anti-entropy messages (`engine.py`).

Theory of operation: the codec has already checked a message's envelope,
states and digest (`transport.protocol`), but the anti-entropy payload
fields ("count", "horizon", "b", "buckets", "after", "last", "srcs", "src",
"seen", "forget", "hops") are free-form maps from a peer. Each `read_*`
returns the field typed and range-checked, or raises `Malformed(reason)`
and nothing else, whatever the input; `reason` is a constant slug
("bad_<field>") the caller counts as "dropped.<reason>". An absent optional
field reads as empty.

Pure: no sockets, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from actors.core.store import DIGEST_BUCKETS, Position, StateKey, position
from transport.validate import MAX_COUNTER

MAX_SEEN = 64  # node ids carried by a fast push to steer its forwards
_U64 = 2**64 - 1


class Malformed(Exception):
    """A payload field that is not what the protocol says; `.reason` is a slug."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Cover:
    """The key positions one digest chunk speaks for."""

    buckets: tuple[int, ...]
    after: Position | None  # exclusive lower bound
    upper: Position | None  # inclusive upper bound; None: to the end

    def __contains__(self, pos: Position) -> bool:
        return ((self.after is None or pos > self.after)
                and (self.upper is None or pos <= self.upper))


def encoded_size(obj: object) -> int:
    """The msgpack size of `obj` in bytes, as the codec will encode it."""
    return len(msgpack.packb(obj, use_bin_type=True))


def read_uint(payload: Mapping[str, Any], name: str, high: int = _U64) -> int:
    """Field `name`: an int in [0, high]."""
    return _int(payload.get(name), f"bad_{name}", high)


def read_horizons(payload: Mapping[str, Any]) -> dict[str, int]:
    """"horizon": state_type -> GC horizon version."""
    raw = payload.get("horizon", {})
    if not isinstance(raw, Mapping):
        raise Malformed("bad_horizon")
    return {_str(t, "bad_horizon"): _int(v, "bad_horizon", MAX_COUNTER) for t, v in raw.items()}


def read_bucket_hashes(payload: Mapping[str, Any]) -> dict[int, int]:
    """"b": [[bucket, xor], ...] -> {bucket: xor}."""
    rows = _rows(payload, "b", 2)
    if len(rows) > DIGEST_BUCKETS:
        raise Malformed("bad_b")
    return {_int(b, "bad_b", DIGEST_BUCKETS - 1): _int(h, "bad_b") for b, h in rows}


def read_bucket_counts(payload: Mapping[str, Any]) -> dict[int, int]:
    """"n": [[bucket, keys], ...] -> {bucket: keys}; optional (older nodes send none)."""
    if "n" not in payload:
        return {}
    rows = _rows(payload, "n", 2)
    if len(rows) > DIGEST_BUCKETS:
        raise Malformed("bad_n")
    return {_int(b, "bad_n", DIGEST_BUCKETS - 1): _int(n, "bad_n") for b, n in rows}


def read_seen(payload: Mapping[str, Any]) -> list[str]:
    """"seen": the node ids a fast push has reached (at most MAX_SEEN)."""
    raw = payload.get("seen", [])
    if not isinstance(raw, list) or len(raw) > MAX_SEEN:
        raise Malformed("bad_seen")
    return [_str(node, "bad_seen") for node in raw]


def read_forget(payload: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """"forget": [[state_type, key, version], ...]."""
    return [(_str(t, "bad_forget"), _str(k, "bad_forget"), _int(v, "bad_forget", MAX_COUNTER))
            for t, k, v in _rows(payload, "forget", 3)]


def read_cover(payload: Mapping[str, Any], digest: Mapping[StateKey, int]) -> Cover:
    """The positions a digest chunk covers: "buckets", "after" and "last"."""
    buckets = payload.get("buckets")
    if not isinstance(buckets, list) or len(buckets) > DIGEST_BUCKETS:
        raise Malformed("bad_buckets")
    checked = tuple(_int(b, "bad_buckets", DIGEST_BUCKETS - 1) for b in buckets)
    after = payload.get("after")
    if after is not None:
        if not isinstance(after, list) or len(after) != 3:
            raise Malformed("bad_after")
        after = (_int(after[0], "bad_after"), _str(after[1], "bad_after"),
                 _str(after[2], "bad_after"))
    last = payload.get("last")
    if not isinstance(last, bool) or (not last and not digest):
        raise Malformed("bad_last")
    upper = None if last else max(position(t, k) for t, k in digest)
    return Cover(checked, after, upper)


def read_sources(payload: Mapping[str, Any], digest: Mapping[StateKey, int]
                 ) -> dict[StateKey, str]:
    """Writer of each digest key: src[i] indexes srcs for the i-th key of sorted(digest)."""
    srcs, src = payload.get("srcs", []), payload.get("src", [])
    if not isinstance(srcs, list) or not isinstance(src, list) or len(src) != len(digest):
        raise Malformed("bad_src")
    names = [_str(s, "bad_src") for s in srcs]
    return {skey: names[_int(i, "bad_src", len(names) - 1)]
            for skey, i in zip(sorted(digest), src, strict=True)}


def _int(value: object, reason: str, high: int = _U64) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise Malformed(reason)
    return value


def _str(value: object, reason: str) -> str:
    if not isinstance(value, str) or not value:
        raise Malformed(reason)
    return value


def _rows(payload: Mapping[str, Any], name: str, width: int) -> list[list[Any]]:
    raw = payload.get(name, [])
    if not isinstance(raw, list) or not all(isinstance(r, list) and len(r) == width
                                            for r in raw):
        raise Malformed(f"bad_{name}")
    return raw
