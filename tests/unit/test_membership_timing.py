"""Timing presets and the `[membership]` config mapping."""

from __future__ import annotations

from typing import Any

import pytest

from actors.membership.core.timing import PROFILES, config_keys, timing_for
from transport.settings import SettingsError


@pytest.mark.parametrize(("profile", "probe", "timeout", "k", "mult", "retransmit", "push_pull"), [
    ("lan", 1.0, 0.5, 3, 4, 4, 30.0),  # memberlist DefaultLANConfig
    ("wan", 5.0, 3.0, 3, 6, 4, 60.0),  # DefaultWANConfig
    ("local", 1.0, 0.2, 1, 3, 2, 15.0),  # DefaultLocalConfig
])
def test_presets_follow_memberlist(profile: str, probe: float, timeout: float, k: int, mult: int,
                                   retransmit: int, push_pull: float) -> None:
    t = PROFILES[profile]
    got = (t.probe_interval_s, t.probe_timeout_s, t.indirect_checks, t.suspicion_mult,
           t.retransmit_mult, t.push_pull_interval_s)
    assert got == (probe, timeout, k, mult, retransmit, push_pull)
    assert (t.suspicion_max_mult, t.awareness_max, t.max_metadata_bytes) == (6, 8, 512)


def test_every_profile_refutes_a_refusal_faster_than_one_second() -> None:
    assert all(t.refused_timeout_s <= 1.0 for t in PROFILES.values())
    assert PROFILES["test"].probe_interval_s <= 0.1


def test_overrides_in_milliseconds_set_the_seconds_fields() -> None:
    t = timing_for("lan", {"probe_interval_ms": 500, "probe_timeout_ms": 250.5,
                           "indirect_checks": 0, "push_pull_interval_ms": 10_000})
    assert (t.probe_interval_s, t.probe_timeout_s) == (0.5, 0.2505)
    assert (t.indirect_checks, t.push_pull_interval_s) == (0, 10.0)
    assert t.suspicion_mult == PROFILES["lan"].suspicion_mult


def test_no_overrides_give_the_preset() -> None:
    assert timing_for("local", {}) == PROFILES["local"]


def test_every_field_has_exactly_one_config_key() -> None:
    keys = config_keys()
    assert "probe_interval_ms" in keys and "gossip_to_dead_ms" in keys
    assert "probe_interval_s" not in keys
    assert len(keys) == len(set(keys)) == len(PROFILES["lan"].__dataclass_fields__)


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("lan", {"probe_interval": 1}, "probe_interval", "unknown key"),
    ("lan", {"probe_interval_s": 1}, "probe_interval_s", "unknown key"),
    ("nope", {}, "profile", "unknown profile 'nope'"),
    ("lan", {"probe_interval_ms": "1000"}, "probe_interval_ms", "must be a number, not str"),
    ("lan", {"probe_interval_ms": True}, "probe_interval_ms", "not a boolean"),
    ("lan", {"suspicion_mult": 2.5}, "suspicion_mult", "must be an integer"),
    ("lan", {"probe_timeout_ms": 0}, "probe_timeout_ms", "must be greater than 0"),
    ("lan", {"probe_timeout_ms": float("inf")}, "probe_timeout_ms", "finite"),
    ("lan", {"retransmit_mult": 0}, "retransmit_mult", "must be at least 1"),
    ("lan", {"probe_timeout_ms": 1000}, "probe_timeout_ms", "below probe_interval_ms"),
    ("lan", {"join_retry_ms": 60_000}, "join_retry_max_ms", "at least join_retry_ms"),
    ("lan", {"max_metadata_bytes": 5000}, "max_metadata_bytes", "between 1 and 4096"),
    ("lan", {"max_members": 1}, "max_members", "at least 2"),
]


@pytest.mark.parametrize(("profile", "overrides", "key", "text"), BAD)
def test_bad_settings_raise_a_clear_error_naming_the_key(
    profile: str, overrides: dict[str, Any], key: str, text: str
) -> None:
    with pytest.raises(SettingsError, match=text) as info:
        timing_for(profile, overrides)
    assert info.value.key == key
