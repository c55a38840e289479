"""Restart policy and bookkeeping: pure functions of an actor's restart history and `now`.

One-for-one restarts (circus's flapping plugin, Erlang's intensity/period):
an actor that dies is restarted at once the first time, then with a doubling
backoff while its deaths keep coming, so a crash loop costs little CPU. When
more than ``max_restarts`` restarts fall within ``window_s`` the policy gives
up. What giving up means depends on the actor (`RestartBook.died`):

* an *essential* actor (membership, anti-entropy): the node stops, because a
  node missing one would silently serve a partial view;
* any other (a provider, the handlers): it is given up alone and retried
  every ``retry_s``. A retried actor is on probation for ``window_s``: one
  more death in that time gives it up again at once, so a provider that is
  still broken costs one crash per retry, not a fresh series of restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass
class RestartBook:
    """One actor's restart record. `retry_s` None marks an essential actor (giving
    up on it stops the node); otherwise a given-up actor is retried after it."""

    retry_s: float | None = None
    # Times of the restarts the policy counts, oldest first.
    history: list[float] = field(default_factory=list)
    restarts: int = 0  # every respawn after the first start (reported in events)
    restart_at: float | None = None  # a restart is due then (None: none scheduled)
    given_up_at: float | None = None  # set while the actor is given up
    retries: int = 0  # how many times a given-up actor was tried again
    probation_until: float | None = None  # a death before this gives up at once

    @property
    def given_up(self) -> bool:
        return self.given_up_at is not None

    def died(self, policy: RestartPolicy, now: float) -> Restart | GiveUp:
        """Record a death at `now`; schedules the restart (or the retry) it decides."""
        if self.probation_until is not None and now < self.probation_until:
            verdict: Restart | GiveUp = GiveUp(len(self.history))
        else:
            self.probation_until = None
            verdict = policy.decide(tuple(self.history), now)
        if isinstance(verdict, GiveUp):
            self.given_up_at = now
            self.restart_at = None if self.retry_s is None else now + self.retry_s
            return verdict
        self.history.append(now)
        del self.history[:-max(1, policy.max_restarts)]  # enough for the policy; bounded
        self.restart_at = now + verdict.delay_s
        return verdict

    def due(self, now: float) -> bool:
        return self.restart_at is not None and now >= self.restart_at

    def respawned(self, policy: RestartPolicy, now: float) -> None:
        """A scheduled restart (or retry) has just been started."""
        self.restarts += 1
        self.restart_at = None
        if self.given_up_at is not None:
            self.given_up_at = None
            self.retries += 1
            self.history = [now]
            self.probation_until = now + policy.window_s
