"""A network partition between two hosts (network namespaces), and its heal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_until
from netns import TwoHosts, can_make_namespaces

from actors.testing.localcluster import LocalNode

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(not can_make_namespaces(), reason="needs root and ip netns"),
]


@pytest.fixture
def hosts() -> Iterator[TwoHosts]:
    pair = TwoHosts().up()
    try:
        yield pair
    finally:
        pair.down()


def _nodes(tmp_path: Path, hosts: TwoHosts, per_host: tuple[int, int]) -> list[LocalNode]:
    placed = [(h, i) for h, count in enumerate(per_host) for i in range(count)]
    gossips = [f"tcp://{hosts.address(h)}:{7000 + 10 * i}" for h, i in placed]
    nodes = []
    for k, (h, i) in enumerate(placed):
        folder = tmp_path / f"h{h}n{i}"
        nodes.append(LocalNode(
            name=f"h{h}n{i}", folder=folder, gossip=gossips[k],
            sync=f"tcp://{hosts.address(h)}:{7001 + 10 * i}",
            events=f"ipc://{folder / 'events.sock'}",
            seeds=[g for j, g in enumerate(gossips) if j != k],
            profile="test", wrapper=hosts.wrapper(h)))
    return nodes


def _view(node: LocalNode) -> dict[str, str]:
    return {m["node_id"]: m["status"] for m in node.request("members")}


def _everyone_sees(nodes: list[LocalNode], statuses: dict[str, str]) -> bool:
    return all(all(_view(n).get(k) == v for k, v in statuses.items()) for n in nodes)


@pytest.mark.parametrize("split", [(2, 2), (3, 1)], ids=["two-and-two", "one-isolated"])
def test_a_partition_fails_the_other_side_and_heals_by_itself(tmp_path, hosts, split):
    nodes = _nodes(tmp_path, hosts, split)
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        everyone = {n.name: "alive" for n in nodes}
        wait_until(lambda: _everyone_sees(nodes, everyone), timeout_s=30, what="convergence")
        side_a, side_b = nodes[:split[0]], nodes[split[0]:]
        hosts.cut()
        started = time.monotonic()
        wait_until(lambda: _everyone_sees(side_a, {n.name: "dead" for n in side_b})
                   and _everyone_sees(side_b, {n.name: "dead" for n in side_a}),
                   timeout_s=60, what="each side to fail the other")
        time.sleep(max(0.0, 20.0 - (time.monotonic() - started)))  # keep the link down 20 s
        hosts.heal()
        wait_until(lambda: _everyone_sees(nodes, everyone), timeout_s=90, interval_s=0.5,
                   what="the healed partition to merge")
    finally:
        for node in nodes:
            node.stop()
