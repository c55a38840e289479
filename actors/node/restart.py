"""Restart policy: a pure function of an actor's restart history and `now`.

One-for-one restarts (circus's flapping plugin, Erlang's intensity/period):
an actor that dies is restarted at once the first time, then with a doubling
backoff while its deaths keep coming, so a crash loop costs little CPU. When
more than ``max_restarts`` restarts fall within ``window_s`` the policy gives
up; the supervisor then publishes ``actor.gave_up`` and stops the node,
because a node missing an actor would silently serve a partial view.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Restart:
    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    restarts_in_window: int


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int
    window_s: float
    # A death this soon after the previous restart counts as a quick one.
    quick_s: float = 1.0
    backoff_s: float = 0.05
    backoff_max_s: float = 2.0

    def decide(self, history: tuple[float, ...], now: float) -> Restart | GiveUp:
        """`history` holds the times of earlier restarts, oldest first; the verdict
        is for one more restart now."""
        recent = [t for t in history if now - t < self.window_s]
        if len(recent) >= self.max_restarts:
            return GiveUp(len(recent))
        quick, later = 0, now
        for t in reversed(history):
            if later - t >= self.quick_s:
                break
            quick, later = quick + 1, t
        if quick == 0:
            return Restart(0.0)
        return Restart(min(self.backoff_max_s, self.backoff_s * 2 ** (quick - 1)))
