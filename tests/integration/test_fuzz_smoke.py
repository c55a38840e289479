"""Short runs of the hostile-frame fuzzer (bench/fuzz_node.py) against real nodes.

Garbage, and absurd or spoofed messages beyond the accepted ranges, must leave a node
running, counting what it refused. Counters at MAX_COUNTER (a suspicion of the
target, an alive about a peer, a kv version) are refused as implausible, so the
cluster can still refute and replicate afterwards (W2', W3', W5').
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from actors.testing.localcluster import LocalCluster
from bench import fuzz_node

pytestmark = pytest.mark.slow

FRAMES = 3000
BOUNDS = fuzz_node.Bounds(time_limit_s=20.0, rate=1500.0, settle_s=20.0)
EDGE_KINDS = ("*_edge",)


def _frames_to(report: fuzz_node.FuzzReport, endpoints: tuple[str, ...]) -> int:
    return sum(n for kind, n in report.sent.items() if report.endpoints[kind] in endpoints)


def _drops(report: fuzz_node.FuzzReport, needle: str) -> int:
    return sum(v for k, v in report.counters.items() if needle in k)


def test_garbage_on_every_endpoint_leaves_a_node_running_and_counting_drops(
        clusters: Callable[..., LocalCluster]) -> None:
    cluster = clusters(1).start()
    kinds = fuzz_node.select_kinds(("garbage",))
    report = fuzz_node.fuzz(cluster.nodes, FRAMES, seed=6, kinds=kinds, bounds=BOUNDS)

    assert report.frames == FRAMES
    assert report.exits == [] and report.restarts == {"n0": 0}
    assert cluster.nodes[0].request("status")["node_id"] == "n0"
    # Every garbage frame on the gossip and sync ports is dropped and counted, except
    # multi-frame messages whose last frame happens to be a valid ping.
    assert _drops(report, "dropped.") >= 0.8 * _frames_to(report, ("gossip", "sync"))
    assert _drops(report, "control_malformed") > 0
    assert report.failures == []


def test_absurd_and_spoofed_messages_leave_a_node_running_and_are_refused(
        clusters: Callable[..., LocalCluster]) -> None:
    cluster = clusters(1).start()
    kinds = fuzz_node.select_kinds(("absurd", "spoof"), skip=EDGE_KINDS)
    report = fuzz_node.fuzz(cluster.nodes, FRAMES, seed=7, kinds=kinds, bounds=BOUNDS)

    assert report.sent["gossip.bad_address"] > 0 and report.sent["gossip.self_inc_max"] > 0
    assert report.exits == [] and report.restarts == {"n0": 0}, report.exits
    assert cluster.nodes[0].request("status")["node_id"] == "n0"
    # Addresses that are no tcp endpoint and counters past MAX_COUNTER are refused.
    assert _drops(report, "rejected.bad_endpoint") > 0
    assert _drops(report, "rejected.absurd_counter") > 0
    assert _drops(report, "dropped.bad_forget") + _drops(report, "dropped.bad_horizon") > 0
    assert report.failures == []


def test_counters_at_the_top_of_the_range_leave_the_cluster_able_to_refute_and_replicate(
        clusters: Callable[..., LocalCluster]) -> None:
    cluster = clusters(3).start()
    if not fuzz_node.wait_for(lambda: fuzz_node.all_alive(cluster.nodes), 30.0):
        pytest.fail("the cluster did not converge before the run")
    kinds = fuzz_node.select_kinds(("absurd",), only=EDGE_KINDS)
    bounds = fuzz_node.Bounds(time_limit_s=20.0, rate=1500.0, settle_s=10.0)
    report = fuzz_node.fuzz(cluster.nodes, 30, seed=9, kinds=kinds, bounds=bounds)

    if len(report.sent) != 3:
        pytest.fail(f"not every edge kind was sent: {report.sent}")
    assert report.exits == []
    assert _drops(report, "implausible") > 0
    assert report.failures == []
