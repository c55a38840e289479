"""Membership timing profiles and the `[membership]` config mapping.

Theory of operation: every knob of the membership core lives in one frozen
`MembershipTiming`. Four presets follow hashicorp/memberlist's
`DefaultLANConfig` / `DefaultWANConfig` / `DefaultLocalConfig` (REFERENCE.md
§1.1) plus a "test" preset with tiny intervals. `timing_for(profile,
overrides)` starts from a preset and applies the `[membership]` table of a
node config, validating every key once, here, so the config loader defines
no membership key itself.

Config key mapping (TOML -> field): every duration field `<name>_s` is set
by the key `<name>_ms` in milliseconds (int or float), e.g.
`probe_interval_ms = 500` -> `probe_interval_s = 0.5`; count fields
(`indirect_checks`, `suspicion_mult`, `suspicion_max_mult`,
`retransmit_mult`, `gossip_nodes`, `awareness_max`, `max_metadata_bytes`,
`max_gossip_bytes`) use their own name and take an int. The field names
themselves (`probe_interval_s`, ...) are not accepted as keys, so a config
has exactly one spelling per setting.

Errors: an unknown profile or key, or a value out of range, raises
ValueError; a value of the wrong type raises TypeError. The message names
the key, for the config loader to print.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

# Other members' metadata is refused above this, whatever their own setting: a
# member table of 16,384 rows then stays within 64 MiB however it was filled.
MAX_REMOTE_METADATA_BYTES = 4096


def _check_consistency(t: MembershipTiming) -> None:
    """Cross-field rules; each one names the key a user would change."""
    if t.probe_timeout_s >= t.probe_interval_s:
        raise ValueError("probe_timeout_ms must be below probe_interval_ms")
    if t.join_retry_max_s < t.join_retry_s:
        raise ValueError("join_retry_max_ms must be at least join_retry_ms")
    if t.suspicion_max_mult < 1 or t.suspicion_mult < 1:
        raise ValueError("suspicion_mult and suspicion_max_mult must be at least 1")
    if t.max_gossip_bytes < 64:
        raise ValueError("max_gossip_bytes must be at least 64")
    if t.max_metadata_bytes > MAX_REMOTE_METADATA_BYTES:
        raise ValueError(f"max_metadata_bytes must be at most {MAX_REMOTE_METADATA_BYTES}")
    if t.max_members < 2:
        raise ValueError("max_members must be at least 2")


@dataclass(frozen=True)
class MembershipTiming:
    """Timing and size knobs of the SWIM/Lifeguard core (seconds, counts, bytes)."""

    probe_interval_s: float  # one probe of one member per interval (scaled by awareness)
    probe_timeout_s: float  # direct ack wait before ping-req; never scaled (memberlist)
    indirect_checks: int  # k members asked to ping-req a silent target
    suspicion_mult: int  # suspicion min = mult * max(1, log10(n)) * probe_interval
    suspicion_max_mult: int  # suspicion max = max_mult * min (Lifeguard)
    retransmit_mult: int  # piggyback retransmits = mult * ceil(log10(n + 1))
    push_pull_interval_s: float  # full-table exchange with one live member (scaled > 32 nodes)
    gossip_interval_s: float  # dedicated gossip round when news is queued
    gossip_nodes: int  # members per gossip round
    gossip_to_dead_s: float  # period of a push-pull to one dead member (partition healing)
    reap_after_s: float  # forget dead/left members this long after their transition
    awareness_max: int  # Lifeguard local health multiplier ceiling
    join_retry_s: float  # first join retry backoff; doubles per attempt
    join_retry_max_s: float  # backoff ceiling
    refused_timeout_s: float  # suspicion timeout when backed by a refused connection
    max_metadata_bytes: int  # msgpack size limit of a node's metadata
    max_gossip_bytes: int  # piggybacked news budget per message
    # Hostile input must not grow the table without end; a full table still takes
    # a new member in place of its longest-dead one.
    max_members: int = 16_384

    def __post_init__(self) -> None:
        _check_consistency(self)


PROFILES: dict[str, MembershipTiming] = {
    "lan": MembershipTiming(
        probe_interval_s=1.0,  # memberlist LAN
        probe_timeout_s=0.5,  # memberlist LAN: 99th percentile RTT with headroom
        indirect_checks=3,  # memberlist LAN
        suspicion_mult=4,  # memberlist LAN: min 4 s below 10 nodes
        suspicion_max_mult=6,  # memberlist: max 24 s below 10 nodes
        retransmit_mult=4,  # memberlist LAN
        push_pull_interval_s=30.0,  # memberlist LAN
        gossip_interval_s=0.2,  # memberlist LAN GossipInterval
        gossip_nodes=3,  # memberlist LAN GossipNodes
        gossip_to_dead_s=30.0,  # memberlist GossipToTheDeadTime / Serf ReconnectInterval
        reap_after_s=86_400.0,  # Serf ReconnectTimeout and TombstoneTimeout: 24 h
        awareness_max=8,  # memberlist: probe interval backs off to 8 s
        join_retry_s=1.0,  # one probe interval: a seed that is starting answers soon
        join_retry_max_s=30.0,  # at most one retry per push-pull period
        refused_timeout_s=0.5,  # a refused connection is near-proof; room for one refutation
        max_metadata_bytes=512,  # memberlist MetaMaxSize
        max_gossip_bytes=1400,  # memberlist UDPBufferSize: one packet of news per message
    ),
    "wan": MembershipTiming(
        probe_interval_s=5.0,  # memberlist WAN
        probe_timeout_s=3.0,  # memberlist WAN
        indirect_checks=3,  # memberlist WAN
        suspicion_mult=6,  # memberlist WAN
        suspicion_max_mult=6,  # memberlist WAN
        retransmit_mult=4,  # memberlist WAN
        push_pull_interval_s=60.0,  # memberlist WAN
        gossip_interval_s=0.5,  # memberlist WAN
        gossip_nodes=4,  # memberlist WAN
        gossip_to_dead_s=60.0,  # memberlist WAN GossipToTheDeadTime
        reap_after_s=86_400.0,  # Serf: 24 h
        awareness_max=8,  # memberlist
        join_retry_s=5.0,  # one WAN probe interval
        join_retry_max_s=60.0,  # one WAN push-pull period
        refused_timeout_s=1.0,  # WAN refutations need a longer round trip
        max_metadata_bytes=512,  # memberlist MetaMaxSize
        max_gossip_bytes=1400,  # memberlist UDPBufferSize
    ),
    "local": MembershipTiming(
        probe_interval_s=1.0,  # memberlist Local
        probe_timeout_s=0.2,  # memberlist Local: loopback RTT is tiny
        indirect_checks=1,  # memberlist Local
        suspicion_mult=3,  # memberlist Local
        suspicion_max_mult=6,  # memberlist Local
        retransmit_mult=2,  # memberlist Local
        push_pull_interval_s=15.0,  # memberlist Local
        gossip_interval_s=0.1,  # memberlist Local
        gossip_nodes=3,  # memberlist Local
        gossip_to_dead_s=15.0,  # memberlist Local GossipToTheDeadTime
        reap_after_s=3_600.0,  # local clusters are demos: forget the dead within the hour
        awareness_max=8,  # memberlist
        join_retry_s=0.5,  # loopback seeds start within a second
        join_retry_max_s=10.0,  # keeps a demo cluster forming quickly
        refused_timeout_s=0.25,  # loopback refutation takes milliseconds
        max_metadata_bytes=512,  # memberlist MetaMaxSize
        max_gossip_bytes=1400,  # memberlist UDPBufferSize
    ),
    "test": MembershipTiming(
        probe_interval_s=0.1,  # tests see a failure in well under a second
        probe_timeout_s=0.05,  # half an interval, as in the LAN preset
        indirect_checks=2,  # exercise ping-req with small clusters
        suspicion_mult=4,  # as LAN: min 0.4 s below 10 nodes
        suspicion_max_mult=6,  # as LAN
        retransmit_mult=3,  # enough redundancy under simulated loss
        push_pull_interval_s=1.0,  # anti-entropy repairs within a test
        gossip_interval_s=0.02,  # news spreads in tens of milliseconds
        gossip_nodes=3,  # as LAN
        gossip_to_dead_s=0.5,  # healed partitions merge within a second or two
        reap_after_s=60.0,  # longer than any test, so nothing vanishes mid-test
        awareness_max=8,  # as LAN
        join_retry_s=0.05,  # a seed that starts late is found fast
        join_retry_max_s=1.0,  # bounded retry storm in tests
        refused_timeout_s=0.1,  # room for a refutation over loopback
        max_metadata_bytes=512,  # as LAN
        max_gossip_bytes=1400,  # as LAN
    ),
}

_DURATION_FIELDS = tuple(f.name for f in fields(MembershipTiming) if f.name.endswith("_s"))
_COUNT_FIELDS = tuple(f.name for f in fields(MembershipTiming) if not f.name.endswith("_s"))
# Counts that may be 0: no indirect probes is a valid (if fragile) setup.
_MIN_COUNT = {"indirect_checks": 0}
_KEYS: dict[str, str] = {name[: -len("_s")] + "_ms": name for name in _DURATION_FIELDS}
_KEYS.update({name: name for name in _COUNT_FIELDS})


def push_pull_scale(interval_s: float, n: int) -> float:
    """memberlist `pushPullScale`: the 33rd node doubles the interval, the 65th triples it."""
    if n <= 32:
        return interval_s
    return (math.ceil(math.log2(n) - math.log2(32)) + 1) * interval_s


def config_keys() -> tuple[str, ...]:
    """The `[membership]` keys `timing_for` accepts (besides `profile`, read by the loader)."""
    return tuple(sorted(_KEYS))


def timing_for(profile: str, overrides: Mapping[str, Any]) -> MembershipTiming:
    """Build the timing of a `[membership]` config table.

    Args:
        profile: "lan", "wan", "local" or "test".
        overrides: config keys (see the module docstring) to values.

    Returns:
        The preset with the overrides applied.

    Raises:
        ValueError: unknown profile or key, value out of range, or an
            inconsistent combination (probe timeout not below the interval).
        TypeError: a value of the wrong type.
    """
    base = PROFILES.get(profile)
    if base is None:
        raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        field_name = _KEYS.get(key)
        if field_name is None:
            raise ValueError(f"unknown key {key!r}; expected one of {list(config_keys())}")
        changes[field_name] = _convert(key, field_name, value)
    return replace(base, **changes)


def _convert(key: str, field_name: str, value: Any) -> float | int:
    if field_name in _DURATION_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{key} must be a number of milliseconds")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{key} must be a positive number of milliseconds")
        return float(value) / 1000.0
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer")
    if value < _MIN_COUNT.get(field_name, 1):
        raise ValueError(f"{key} must be at least {_MIN_COUNT.get(field_name, 1)}")
    return value
