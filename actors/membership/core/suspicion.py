"""Lifeguard suspicion timer (LHA-Suspicion), plus refusal-backed fast expiry.

Theory of operation (memberlist `suspicion.go`, `util.go`; REFERENCE.md §1.2):

* A suspicion starts with the `max` timeout and shrinks toward `min` as
  independent members confirm it. `min = mult * max(1, log10(max(1, n))) *
  probe_interval`, `max = max_mult * min`; the number of confirmations
  wanted is `k = mult - 2`, or 0 when `n - 2 < k` (then the timer is `min`).
* After `c` confirmations the total timeout is
  `max(min, max - log(c + 1) / log(k + 1) * (max - min))`, measured from the
  start, so the deadline only ever moves earlier.
* Confirmations are deduplicated per accuser and the originator never
  confirms its own suspicion (no double counting); at most `k` count.
* Refusal evidence (see `actors.membership.core.swim`): members that saw their
  connection to the suspect refused are kept in `refused_by`. While that set
  is non-empty the deadline is also capped at `refused_at +
  refused_timeout_s`. Refusal evidence from a member other than the
  originator also counts as a confirmation. Withdrawing the last refusal
  restores the plain Lifeguard deadline.

Pure: time comes in as arguments; nothing here reads a clock.
"""

from __future__ import annotations

import math


def suspicion_bounds(mult: int, max_mult: int, n: int, interval_s: float) -> tuple[float, float]:
    """Return (min, max) suspicion timeouts in seconds for a cluster of `n` members."""
    node_scale = max(1.0, math.log10(max(1, n)))
    min_s = mult * node_scale * interval_s
    return min_s, max_mult * min_s


def confirmations_wanted(mult: int, n: int) -> int:
    """Independent confirmations that shrink the timer fully to `min` (Lifeguard k)."""
    k = mult - 2
    # Too few other members to ever confirm: don't wait for them.
    return 0 if n - 2 < k or k < 1 else k


def suspicion_timeout(confirmations: int, k: int, min_s: float, max_s: float) -> float:
    """Total timeout (from the start) after `confirmations` independent confirmations."""
    if k < 1:
        return min_s
    frac = math.log(min(confirmations, k) + 1.0) / math.log(k + 1.0)
    return max(min_s, max_s - frac * (max_s - min_s))


def remaining_time(
    confirmations: int, k: int, elapsed_s: float, min_s: float, max_s: float
) -> float:
    """Time left before expiry (memberlist `remainingSuspicionTime`); may be negative."""
    return suspicion_timeout(confirmations, k, min_s, max_s) - elapsed_s


class Suspicion:
    """The timer of one suspected member at one incarnation."""

    def __init__(
        self,
        originator: str,
        start: float,
        k: int,
        min_s: float,
        max_s: float,
        refused_timeout_s: float,
    ) -> None:
        self.originator = originator
        self.start = start
        self.k = k
        self.min_s = min_s
        self.max_s = max_s
        self._refused_timeout_s = refused_timeout_s
        # Accusers other than the originator, so one member repeating itself
        # (or the originator's own rebroadcast) never counts twice.
        self._confirmed: set[str] = set()
        # Members whose connection to the suspect was refused: near-proof of a crash.
        self.refused_by: set[str] = set()
        # When refusal evidence (re)appeared; anchors the short refusal deadline.
        self.refused_at: float | None = None
        # deadline() is asked of every suspect on every wake-up (the core's next
        # deadline is their minimum) and changes only when evidence does: cached.
        self._deadline: float | None = None

    @property
    def confirmations(self) -> int:
        """Independent confirmations that count (at most k)."""
        return min(len(self._confirmed), self.k)

    def confirm(self, accuser: str) -> bool:
        """Record an accusation; True if it is a new, counting confirmation."""
        if accuser == self.originator or accuser in self._confirmed:
            return False
        if len(self._confirmed) >= self.k:
            return False
        self._confirmed.add(accuser)
        self._deadline = None
        return True

    def add_refusal(self, witness: str, now: float) -> bool:
        """Record refusal evidence from `witness`; True if the suspicion just became backed."""
        self.confirm(witness)
        was_backed = bool(self.refused_by)
        self.refused_by.add(witness)
        if not was_backed:
            self.refused_at = now
            self._deadline = None
        return not was_backed

    def withdraw_refusal(self, witness: str) -> bool:
        """Drop `witness`'s refusal evidence; True if it held any."""
        if witness not in self.refused_by:
            return False
        self.refused_by.discard(witness)
        if not self.refused_by:
            self.refused_at = None
            self._deadline = None
        return True

    @property
    def refusal_backed(self) -> bool:
        return bool(self.refused_by)

    def lifeguard_deadline(self) -> float:
        """Expiry by the Lifeguard timer alone."""
        return self.start + suspicion_timeout(self.confirmations, self.k, self.min_s, self.max_s)

    def deadline(self) -> float:
        """Expiry time: the Lifeguard timer, capped by the refusal timer when backed."""
        if self._deadline is None:
            plain = self.lifeguard_deadline()
            self._deadline = plain if self.refused_at is None else min(
                plain, self.refused_at + self._refused_timeout_s)
        return self._deadline

    def expired_by_refusal(self) -> bool:
        """True when the refusal cap, not the Lifeguard timer, sets the deadline."""
        return self.refused_at is not None and self.deadline() < self.lifeguard_deadline()
