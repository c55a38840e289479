"""bench/simulate.py's --phases and --combine: one phase run on its own replaces only
that phase of an earlier full run."""

from __future__ import annotations

from actors.membership.core.timing import PROFILES
from bench.simulate import Options, make_run, merge_size, phases_for


def _names(n: int, phases: tuple[str, ...]) -> list[str]:
    opts = Options((n,), 1, "uniform", 5000, 60.0, 1.0, True, phases=phases)
    return [name for name, _ in phases_for(make_run(n, opts, PROFILES["lan"], "t"), opts)]


def test_phases_keeps_join_and_settle_and_only_the_named_phases() -> None:
    assert _names(10, ("partition",)) == ["join", "settle", "partition"]
    assert "alarms_slow" in _names(10, ())


def test_a_separate_phase_run_replaces_that_phase_and_clears_its_earlier_abort() -> None:
    full = {"nodes": 10000, "cpu_s": 4804.0, "load": {"msgs": 2.0},
            "aborted": {"phase": "partition", "reason": "CPU budget"}}
    part = {"nodes": 10000, "cpu_s": 900.0, "wall_s": 950.0, "peak_rss_gb": 3.0,
            "phases_only": ["partition"], "load": {"msgs": 9.0},
            "partition": {"merge_s": 4.0}}
    merged = merge_size(full, part)
    assert merged["cpu_s"] == 4804.0 and merged["load"] == {"msgs": 2.0}
    assert merged["partition"]["merge_s"] == 4.0
    assert merged["partition"]["separate_run"]["cpu_s"] == 900.0
    assert "aborted" not in merged


def test_a_full_run_replaces_the_earlier_one_and_a_failed_separate_run_says_so() -> None:
    assert merge_size({"nodes": 10, "cpu_s": 1.0}, {"nodes": 10, "cpu_s": 2.0})["cpu_s"] == 2.0
    failed = {"nodes": 10, "phases_only": ["partition"], "aborted": {"phase": "partition"}}
    assert merge_size({"nodes": 10}, failed)["aborted"] == {"phase": "partition"}
