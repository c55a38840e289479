"""Lifeguard suspicion maths (table-tested, as memberlist `suspicion_test.go`) and the timer."""

from __future__ import annotations

import pytest

from actors.membership.core.suspicion import (
    Suspicion,
    confirmations_wanted,
    remaining_time,
    suspicion_bounds,
    suspicion_timeout,
)

# (mult, max_mult, n, interval) -> (min, max); REFERENCE.md §1.2 worked values (LAN).
BOUNDS = [
    (4, 6, 1, 1.0, 4.0, 24.0),
    (4, 6, 9, 1.0, 4.0, 24.0),
    (4, 6, 10, 1.0, 4.0, 24.0),
    (4, 6, 33, 1.0, 6.074, 36.44),
    (4, 6, 100, 1.0, 8.0, 48.0),
    (4, 6, 1000, 1.0, 12.0, 72.0),
    (4, 6, 10_000, 1.0, 16.0, 96.0),
    (6, 6, 100, 5.0, 60.0, 360.0),  # WAN, N=100: 60-360 s
    (4, 6, 0, 1.0, 4.0, 24.0),  # an empty view never divides by zero
]


@pytest.mark.parametrize(("mult", "max_mult", "n", "interval", "lo", "hi"), BOUNDS)
def test_suspicion_bounds_follow_memberlist(
    mult: int, max_mult: int, n: int, interval: float, lo: float, hi: float
) -> None:
    got = suspicion_bounds(mult, max_mult, n, interval)
    assert got == pytest.approx((lo, hi), rel=1e-3)


@pytest.mark.parametrize(("mult", "n", "k"), [
    (4, 10, 2), (4, 4, 2), (4, 3, 0), (4, 1, 0), (6, 100, 4), (6, 5, 0), (3, 100, 1), (2, 100, 0),
])
def test_confirmations_wanted_is_mult_minus_two_unless_too_few_members(
    mult: int, n: int, k: int
) -> None:
    assert confirmations_wanted(mult, n) == k


# memberlist suspicion_test.go TestSuspicion_remainingSuspicionTime, in seconds.
REMAINING = [
    # (confirmations, k, elapsed, min, max, expected)
    (0, 3, 0.0, 2.0, 30.0, 30.0),
    (1, 3, 2.0, 2.0, 30.0, 14.0),
    (2, 3, 3.0, 2.0, 30.0, 4.810),
    (3, 3, 4.0, 2.0, 30.0, -2.0),
    (4, 3, 5.0, 2.0, 30.0, -3.0),
    (5, 3, 10.0, 2.0, 30.0, -8.0),
    (1, 2, 0.0, 8.0, 48.0, 22.76),  # REFERENCE: LAN N=100, one confirmation ~22.8 s
    (2, 2, 0.0, 8.0, 48.0, 8.0),  # and after two: 8 s
    (0, 0, 1.0, 4.0, 24.0, 3.0),  # k = 0: straight to min
]


@pytest.mark.parametrize(("c", "k", "elapsed", "lo", "hi", "expected"), REMAINING)
def test_remaining_time_shrinks_logarithmically_with_confirmations(
    c: int, k: int, elapsed: float, lo: float, hi: float, expected: float
) -> None:
    assert remaining_time(c, k, elapsed, lo, hi) == pytest.approx(expected, abs=0.01)


def test_the_timeout_never_drops_below_min() -> None:
    assert suspicion_timeout(10, 2, 4.0, 24.0) == 4.0


def make(k: int = 2) -> Suspicion:
    return Suspicion("a", start=100.0, k=k, min_s=4.0, max_s=24.0, refused_timeout_s=0.5)


def test_confirmations_are_counted_once_per_accuser_and_never_from_the_originator() -> None:
    s = make()
    assert s.confirm("a") is False
    assert s.confirm("b") is True
    assert s.confirm("b") is False
    assert s.confirmations == 1
    assert s.deadline() == pytest.approx(100.0 + suspicion_timeout(1, 2, 4.0, 24.0))


def test_confirmations_beyond_k_do_not_count() -> None:
    s = make(k=2)
    assert [s.confirm(x) for x in "bcd"] == [True, True, False]
    assert s.deadline() == pytest.approx(104.0)


def test_refusal_evidence_caps_the_deadline_from_when_it_appeared() -> None:
    s = make()
    assert s.add_refusal("b", 103.0) is True
    assert s.deadline() == pytest.approx(103.5)
    assert s.expired_by_refusal()
    assert s.add_refusal("c", 103.2) is False  # already backed: the anchor stays
    assert s.deadline() == pytest.approx(103.5)


def test_a_refusal_from_another_member_is_also_a_confirmation() -> None:
    s = make()
    s.add_refusal("b", 101.0)
    assert s.confirmations == 1


def test_withdrawing_the_last_refusal_restores_the_lifeguard_deadline() -> None:
    s = make()
    s.add_refusal("a", 101.0)
    s.add_refusal("b", 101.1)
    assert s.withdraw_refusal("a") is True
    assert s.deadline() == pytest.approx(101.5)
    assert s.withdraw_refusal("b") is True
    assert s.withdraw_refusal("b") is False
    assert not s.refusal_backed
    assert s.deadline() == pytest.approx(s.lifeguard_deadline())


def test_the_refusal_cap_never_extends_a_nearly_expired_lifeguard_timer() -> None:
    s = Suspicion("a", start=0.0, k=0, min_s=4.0, max_s=24.0, refused_timeout_s=0.5)
    s.add_refusal("b", 3.9)
    assert s.deadline() == pytest.approx(4.0)
    assert not s.expired_by_refusal()


def test_the_deadline_follows_each_new_piece_of_evidence_after_being_read() -> None:
    s = make(k=2)
    assert s.deadline() == pytest.approx(124.0)  # read first: the cache must not go stale
    s.confirm("b")
    assert s.deadline() == pytest.approx(100.0 + suspicion_timeout(1, 2, 4.0, 24.0))
    s.confirm("c")
    assert s.deadline() == pytest.approx(104.0)
    s.add_refusal("d", 101.0)
    assert s.deadline() == pytest.approx(101.5)
    s.withdraw_refusal("d")
    assert s.deadline() == pytest.approx(104.0)
