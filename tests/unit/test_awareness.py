"""Lifeguard local health multiplier."""

from __future__ import annotations

import pytest

from actors.membership.core.awareness import Awareness

# (deltas applied in order, score after, scaled 1 s)
CASES = [
    ([], 0, 1.0),
    ([1], 1, 2.0),
    ([3, -1], 2, 3.0),
    ([-1], 0, 1.0),  # never below healthy
    ([100], 7, 8.0),  # clamped at max - 1: the interval backs off to 8x
    ([100, -1, -1], 5, 6.0),
]


@pytest.mark.parametrize(("deltas", "score", "scaled"), CASES)
def test_the_score_is_clamped_and_scales_timeouts(
    deltas: list[int], score: int, scaled: float
) -> None:
    a = Awareness(8)
    for d in deltas:
        a.apply_delta(d)
    assert a.score == score
    assert a.scale(1.0) == pytest.approx(scaled)


def test_a_multiplier_of_one_never_scales() -> None:
    a = Awareness(1)
    a.apply_delta(5)
    assert a.scale(2.0) == 2.0


def test_a_multiplier_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_multiplier"):
        Awareness(0)
