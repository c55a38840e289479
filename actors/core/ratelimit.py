"""Token buckets for the expensive answers a peer can ask for.

Theory of operation (pure: the caller passes `now`): a whole member table or a
digest comparison costs the answering node work in proportion to its own size,
while the request costs the asker one small message. Each asker (by claimed
node id) gets a bucket of `burst` tokens refilled at `rate` per second; a
request that costs more tokens than the bucket holds is refused, and the caller
counts it and answers nothing. Honest peers stay far below their budget (one
push-pull per interval, a join retry per backoff step); a flood from one id is
cut to `rate`. A flood from many invented ids is bounded by `total`, a second
bucket shared by every asker. At most `max_keys` askers are tracked: the
longest-untouched entries go first, and an evicted asker merely starts again
with a full bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Bucket", "RateLimit"]


@dataclass
class Bucket:
    rate: float  # tokens per second
    burst: float  # capacity
    tokens: float
    at: float  # when `tokens` was last brought up to date

    def take(self, cost: float, now: float) -> bool:
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
        if cost > self.tokens:
            return False
        self.tokens -= cost
        return True


class RateLimit:
    """Per-asker buckets plus one shared bucket; see the module docstring."""

    def __init__(self, rate: float, burst: float, total_rate: float, total_burst: float,
                 max_keys: int = 4096) -> None:
        if rate <= 0 or burst <= 0 or total_rate <= 0 or total_burst <= 0 or max_keys < 1:
            raise ValueError("rates, bursts and max_keys must be positive")
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self.total = Bucket(total_rate, total_burst, total_burst, float("-inf"))
        self._buckets: dict[str, Bucket] = {}

    def allow(self, key: str, now: float, cost: float = 1.0,
              shared_cost: float | None = None) -> bool:
        """Take `cost` from `key`'s bucket and `shared_cost` (default: `cost`) from the
        shared one, or refuse and take nothing."""
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = Bucket(self.rate, self.burst, self.burst, now)
            if len(self._buckets) >= self.max_keys:
                del self._buckets[next(iter(self._buckets))]
        self._buckets[key] = bucket  # re-inserted: dict order is least recently asked first
        # A single answer larger than a whole burst would never fit: let it drain the bucket.
        own = min(cost, self.burst)
        if not bucket.take(own, now):
            return False
        shared = cost if shared_cost is None else shared_cost
        if not self.total.take(min(shared, self.total.burst), now):
            bucket.tokens += own
            return False
        return True

    def resize(self, rate: float, burst: float, total_rate: float, total_burst: float) -> None:
        """New per-asker and shared limits (for budgets that follow the node's size)."""
        self.rate, self.burst = rate, burst
        for bucket in self._buckets.values():
            bucket.rate, bucket.burst = rate, burst
            bucket.tokens = min(bucket.tokens, burst)
        self.total.rate, self.total.burst = total_rate, total_burst
        self.total.tokens = min(self.total.tokens, total_burst)
