"""Chaos: actors are killed at random while every node keeps writing.

For 60 s, every 1-2 s a random actor of a random node gets SIGKILL, while
the test writes a fresh key through every node in turn. At the end every
acknowledged write must be on every node, and no node (all supervisors stay
up) may ever have been reported failed.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from conftest import wait_until

from transport.rpc import RpcError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHAOS_S = 60.0


def _kill_random_actor(rng: random.Random, cluster) -> str:
    node = rng.choice(cluster.nodes)
    actors = [a for a in node.request("snapshot")["actors"] if a["pid"]]
    victim = rng.choice(actors)
    os.kill(victim["pid"], signal.SIGKILL)
    return f"{node.name}/{victim['name']}"


def test_random_actor_kills_lose_no_acknowledged_write_and_fail_no_node(clusters, subscriber):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    cluster = clusters(3, extra={"supervisor": {"max_restarts": 1000}}).start()
    names = {n.name for n in cluster.nodes}
    wait_until(lambda: all({m["node_id"] for m in n.request("members")
                            if m["status"] == "alive"} == names for n in cluster.nodes),
               timeout_s=30, what="convergence")
    failures = subscriber([n.events for n in cluster.nodes], ("node.failed",))
    acked: dict[str, int] = {}
    kills: list[str] = []
    start = time.monotonic()
    next_kill = start + rng.uniform(1.0, 2.0)
    i = 0
    while time.monotonic() - start < CHAOS_S:
        node = cluster.nodes[i % len(cluster.nodes)]
        key = f"w{i}"
        try:
            node.request("kv.set", {"key": key, "value": i}, timeout_s=1.0)
            acked[key] = i
        except RpcError:
            pass  # not acknowledged: may or may not exist, never checked
        i += 1
        if time.monotonic() >= next_kill:
            kills.append(_kill_random_actor(rng, cluster))
            next_kill = time.monotonic() + rng.uniform(1.0, 2.0)
        time.sleep(0.02)
    assert len(kills) >= 25 and len(acked) >= 500, (seed, len(kills), len(acked))

    def missing() -> list[tuple[str, str]]:
        gaps = []
        for node in cluster.nodes:
            held = {r["key"]: r["value"] for r in node.request("provider.kv.state")}
            gaps += [(node.name, k) for k, v in acked.items() if held.get(k) != v]
        return gaps

    try:
        wait_until(lambda: not missing(), timeout_s=60, interval_s=1.0,
                   what="every acknowledged write on every node")
    except AssertionError:
        gaps = missing()
        raise AssertionError(f"seed {seed}: {len(gaps)} missing, e.g. {gaps[:10]}; "
                             f"kills {kills}") from None
    failures.pump()
    assert failures.events == [], (seed, kills)
