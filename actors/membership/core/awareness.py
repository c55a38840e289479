"""Lifeguard local health multiplier ("awareness", memberlist `awareness.go`).

Theory of operation: a node that misses its own acks is more likely slow
itself than surrounded by failures, so it should probe less often and be
slower to accuse. The score counts recent evidence of local trouble:

* -1 for every successful probe;
* +(expected nacks - received nacks) for a failed probe (+1 when no
  indirect probe was possible): a healthy relay that could not reach the
  target still answers with a nack, so a *missing* nack blames us;
* +1 each time this node must refute a suspicion about itself.

Invariant: 0 <= score <= max_multiplier - 1. `scale(t) = t * (score + 1)`
stretches the probe interval up to `max_multiplier` times. Following
memberlist, the probe *timeout* is not scaled ("we don't really expect
waiting longer to help get UDP through").
"""

from __future__ import annotations


class Awareness:
    """A clamped health score; higher means less healthy."""

    def __init__(self, max_multiplier: int) -> None:
        if max_multiplier < 1:
            raise ValueError("max_multiplier must be at least 1")
        # The score tops out one below the multiplier so scale() reaches exactly max.
        self._max = max_multiplier
        self._score = 0

    @property
    def score(self) -> int:
        """Current health score, 0 = healthy."""
        return self._score

    def apply_delta(self, delta: int) -> int:
        """Add `delta` (may be negative), clamp, and return the new score."""
        self._score = min(self._max - 1, max(0, self._score + delta))
        return self._score

    def scale(self, timeout_s: float) -> float:
        """Stretch a duration by the current health: `timeout_s * (score + 1)`."""
        return timeout_s * (self._score + 1)
