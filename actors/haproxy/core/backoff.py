"""Retry delay after Runtime API failures: exponential, capped.

One bridge talks to one HAProxy, so there is no herd to spread and no
jitter: the delay doubles with each consecutive failure from `base_s` up to
`cap_s`, and a success resets the count.
"""

from __future__ import annotations

BASE_S = 0.1
CAP_S = 5.0


def backoff_s(failures: int, base_s: float = BASE_S, cap_s: float = CAP_S) -> float:
    """0 with no failure; base_s, 2 base_s, 4 base_s ... then cap_s."""
    if failures <= 0:
        return 0.0
    return min(cap_s, base_s * 2.0 ** min(failures - 1, 62))


def retry_at(failures: int, now: float, base_s: float = BASE_S, cap_s: float = CAP_S) -> float:
    """When the next attempt may start, `failures` consecutive failures after `now`."""
    return now + backoff_s(failures, base_s, cap_s)
