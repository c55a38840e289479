"""Membership timing profiles and the `[membership]` config mapping.

Theory of operation: every knob of the membership core lives in one frozen
`MembershipTiming`. Four presets follow hashicorp/memberlist's
`DefaultLANConfig` / `DefaultWANConfig` / `DefaultLocalConfig` (REFERENCE.md
§1.1) plus a "test" preset with tiny intervals. `timing_for(profile,
overrides)` starts from a preset and applies the `[membership]` table of a
node config through the shared validator (`transport.settings`), so the
config loader defines no membership key itself; the core receives a typed
`MembershipTiming`.

Config key mapping (TOML -> field): every duration field `<name>_s` is set
by the key `<name>_ms` in milliseconds (int or float), e.g.
`probe_interval_ms = 500` -> `probe_interval_s = 0.5`; count fields
(`indirect_checks`, `suspicion_mult`, `suspicion_max_mult`,
`retransmit_mult`, `gossip_nodes`, `awareness_max`, `max_metadata_bytes`,
`max_gossip_bytes`) use their own name and take an int. The field names
themselves (`probe_interval_s`, ...) are not accepted as keys, so a config
has exactly one spelling per setting.

Errors: an unknown profile or key, a value of the wrong type or out of
range raises `SettingsError` (a ValueError) naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transport.settings import Field, SettingsError, above_zero, build

# Other members' metadata is refused above this, whatever their own setting: a
# member table of 16,384 rows then stays within 64 MiB however it was filled.
MAX_REMOTE_METADATA_BYTES = 4096


def _check_consistency(t: MembershipTiming) -> None:
    """Cross-field rules (each field's own range is in FIELDS); each names the key to change."""
    if t.probe_timeout_s >= t.probe_interval_s:
        raise SettingsError("probe_timeout_ms", "must be below probe_interval_ms")
    if t.join_retry_max_s < t.join_retry_s:
        raise SettingsError("join_retry_max_ms", "must be at least join_retry_ms")


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



def _ms(name: str, why: str) -> Field:
    """A duration field `<name>_s`, set in milliseconds by the key `<name>_ms`."""
    return Field(f"{name}_ms", float, attr=f"{name}_s", scale=0.001, check=above_zero, why=why)


# The `[membership]` keys (besides `profile`, read by the loader); defaults come
# from the profile. One spelling per setting: the field names are not keys.
FIELDS: tuple[Field, ...] = (
    _ms("probe_interval", "one probe of one member per interval"),
    _ms("probe_timeout", "direct ack wait before ping-req"),
    Field("indirect_checks", int, low=0, why="members asked to ping-req (0: none, fragile)"),
    Field("suspicion_mult", int, low=1, why="suspicion timeout in probe intervals"),
    Field("suspicion_max_mult", int, low=1, why="longest suspicion, in suspicion minimums"),
    Field("retransmit_mult", int, low=1, why="retransmits of each piece of news"),
    _ms("push_pull_interval", "full-table exchange with one member"),
    _ms("gossip_interval", "dedicated gossip round while news is queued"),
    Field("gossip_nodes", int, low=1, why="members per gossip round"),
    _ms("gossip_to_dead", "push-pull with one dead member (partition healing)"),
    _ms("reap_after", "forget dead and left members this long after"),
    Field("awareness_max", int, low=1, why="Lifeguard local health ceiling"),
    _ms("join_retry", "first join retry; doubles per attempt"),
    _ms("join_retry_max", "join retry ceiling"),
    _ms("refused_timeout", "suspicion backed by a refused connection"),
    Field("max_metadata_bytes", int, low=1, high=MAX_REMOTE_METADATA_BYTES,
          why="a node's metadata, msgpack size"),
    Field("max_gossip_bytes", int, low=64, why="piggybacked news per message"),
    Field("max_members", int, low=2, why="hostile input cannot grow the table past it"),
)


def push_pull_scale(interval_s: float, n: int) -> float:
    """memberlist `pushPullScale`: the 33rd node doubles the interval, the 65th triples it."""
    if n <= 32:
        return interval_s
    return (math.ceil(math.log2(n) - math.log2(32)) + 1) * interval_s


def config_keys() -> tuple[str, ...]:
    """The `[membership]` keys `timing_for` accepts (besides `profile`, read by the loader)."""
    return tuple(sorted(f.key for f in FIELDS))


def timing_for(profile: str, overrides: Mapping[str, Any]) -> MembershipTiming:
    """The timing of a `[membership]` table: the profile's preset with the overrides.

    Raises:
        SettingsError: unknown profile or key, a value of the wrong type or out of
            range, or an inconsistent combination (probe timeout not below the interval).
    """
    base = PROFILES.get(profile)
    if base is None:
        raise SettingsError("profile", f"unknown profile {profile!r}; "
                            f"expected one of {', '.join(sorted(PROFILES))}")
    return build(MembershipTiming, FIELDS, overrides, base)
