"""Properties of `rate` and `stick_table`: order-free merges, identical expiry, no lost count."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lbstate_fakes import FakeNodes

from actors.providers.rate import RateProvider
from actors.providers.stick_table import StickTableProvider
from transport.protocol import LamportClock, SyncableState

IDS = ["node-a", "node-b", "node-c"]
KEYS = ["api", "web", "user@example.com"]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# One step: (node index, key index, n, seconds to advance before it).
rate_steps = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(1, 50),
                                st.sampled_from([0.0, 0.005, 0.03, 0.4, 1.0, 2.5])),
                      min_size=1, max_size=60)


def run_rate(steps: list[tuple[int, int, int, float]], window_s: int
             ) -> tuple[FakeNodes[RateProvider], list[SyncableState]]:
    """Play adds on three nodes, flushing as time passes; every state written, in order."""
    c: FakeNodes[RateProvider] = FakeNodes(RateProvider, IDS, {"window_s": window_s})
    written: list[SyncableState] = []
    for node, key, n, dt in steps:
        c.advance(dt)
        c[IDS[node]].add(KEYS[key], n)
        for p in c.nodes.values():
            written += p.drain_changes()
    for _ in range(3):  # the last flush, then two quiet ones: every rate settles to 0
        c.advance(0.05)
    for p in c.nodes.values():
        written += p.drain_changes()
    return c, written


def observer(c: FakeNodes[RateProvider], window_s: int, name: str) -> RateProvider:
    return RateProvider(name, LamportClock(), {"window_s": window_s},
                        now_fn=lambda: c.now, wall_fn=lambda: c.wall)


@SETTINGS
@given(steps=rate_steps, window_s=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_shards_merged_in_any_order_on_any_node_give_the_same_total(
        steps: list[tuple[int, int, int, float]], window_s: int, seed: int) -> None:
    c, written = run_rate(steps, window_s)
    rng = random.Random(seed)
    observers = [observer(c, window_s, f"obs-{i}") for i in range(3)]
    for obs in observers:  # each sees every state, shuffled, some twice, in random batches
        batch = written + rng.sample(written, len(written) // 3)
        rng.shuffle(batch)
        while batch:
            cut = rng.randrange(1, len(batch) + 1)
            obs.apply_remote_state(batch[:cut])
            batch = batch[cut:]
    for key in KEYS:
        views = [obs.per_node(key) for obs in observers]
        assert views[0] == views[1] == views[2]
        # The writers' own view agrees with what they published (nothing unflushed).
        truth: dict[str, int] = {}
        for n in IDS:
            own = c[n].per_node(key).get(n, 0)
            if own:
                truth[n] = own
        assert views[0] == truth


@SETTINGS
@given(steps=rate_steps)
def test_coalescing_never_loses_a_count(steps: list[tuple[int, int, int, float]]) -> None:
    window_s = 600  # every add stays in the window: the total is the sum of all adds
    c, written = run_rate(steps, window_s)
    obs = observer(c, window_s, "obs")
    obs.apply_remote_state(written)
    for k, key in enumerate(KEYS):
        assert obs.total(key) == sum(n for _, kk, n, _ in steps if kk == k)
    # Coalesced: at most one state per (node, key) per flush interval that saw an add,
    # and the one that says its counting stopped (rate 0) after each that had a rate.
    with_rate = sum(1 for s in written if isinstance(s.value, dict) and s.value["r"])
    assert len(written) <= len(steps) + with_rate


stick_steps = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4),
                                 st.sampled_from([0.5, 1.0, 2.0, 7.5]),
                                 st.sampled_from([0.0, 0.3, 1.0]), st.booleans()),
                       min_size=1, max_size=40)


@SETTINGS
@given(steps=stick_steps, seed=st.integers(0, 2**32 - 1),
       probes=st.lists(st.floats(0.0, 60.0), min_size=1, max_size=10))
def test_expiry_is_identical_on_every_node(steps: list[tuple[int, int, float, float, bool]],
                                          seed: int, probes: list[float]) -> None:
    c: FakeNodes[StickTableProvider] = FakeNodes(StickTableProvider, IDS, {})
    rng = random.Random(seed)
    written: list[SyncableState] = []
    for node, key, ttl_s, dt, delete in steps:
        c.advance(dt)
        p = c[IDS[node]]
        if delete:
            p.delete(f"k{key}")
        else:
            p.put(f"k{key}", f"b{node}", ttl_s=ttl_s)
        written += p.drain_changes()
    late = StickTableProvider("late", LamportClock(), {}, wall_fn=lambda: c.wall)
    shuffled = written[:]
    rng.shuffle(shuffled)
    late.apply_remote_state(shuffled)  # every state, in any order, on a node that was away
    for p in c.nodes.values():
        p.apply_remote_state(written)
    nodes = [*c.nodes.values(), late]
    end = c.wall
    for t in sorted(probes):
        c.wall = end + t
        for key in range(5):
            assert len({p.lookup(f"k{key}") for p in nodes}) == 1
            ttls = {None if (e := p.entry(f"k{key}")) is None else e[1] for p in nodes}
            assert len(ttls) == 1


@SETTINGS
@given(per_s=st.integers(1, 10_000), window_s=st.integers(1, 20),
       t=st.floats(100.0, 200.0, allow_nan=False))
def test_a_steady_rate_reads_rate_times_window_at_any_instant(per_s: int, window_s: int,
                                                              t: float) -> None:
    """The truth over the sliding window (t - window_s, t] at a steady rate is
    per_s * window_s; whole buckets alone would read up to one second low."""
    from actors.providers.rate import windowed_sum
    s = int(t)
    buckets = [(sec, per_s) for sec in range(s - 30, s)] + [(s, round(per_s * (t - s)))]
    buckets = [(sec, n) for sec, n in buckets if n]
    assert abs(windowed_sum(buckets, t, window_s) - per_s * window_s) <= 1
