"""The rolling restart of deploy/MULTI_HOST.md, done to a real 3-node cluster under writes.

The procedure, one node at a time: SIGTERM its supervisor (what `systemctl stop`
and `docker stop` send), wait for it to exit, start it again, wait until it is
ready and every member is alive on every node; only then the next node. Writes go
through every node the whole time. Afterwards: every acknowledged write is on
every node, and no node ever published `node.failed`: a graceful stop is
`node.left`, and the return `node.joined` or `node.alive`.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from typing import Any

import pytest
from conftest import wait_until

from actors.testing.localcluster import LocalCluster, LocalNode
from transport.rpc import RpcError
from transport.security import write_keypair

pytestmark = pytest.mark.slow

WRITE_TIMEOUT_S = 1.0


class Writer:
    """Writes a new kv key through each node in turn until stopped; keeps the acked ones."""

    def __init__(self, nodes: list[LocalNode]) -> None:
        self.nodes = nodes
        self.acked: dict[str, int] = {}
        self.refused: dict[str, int] = {n.name: 0 for n in nodes}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.done.is_set():
            node = self.nodes[i % len(self.nodes)]
            key = f"roll/{node.name}/{i}"
            try:
                node.request("kv.set", {"key": key, "value": i}, timeout_s=WRITE_TIMEOUT_S)
                self.acked[key] = i
            except RpcError:  # that node is stopping or starting: not acknowledged
                self.refused[node.name] += 1
            i += 1
            time.sleep(0.01)

    def acked_through(self, node: LocalNode) -> int:
        return sum(1 for key in self.acked if key.startswith(f"roll/{node.name}/"))

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(10)


def all_alive_everywhere(cluster: LocalCluster) -> bool:
    names = {n.name for n in cluster.nodes}
    try:
        return all({m["node_id"] for m in n.request("members", timeout_s=2.0)
                    if m["status"] == "alive"} == names for n in cluster.nodes)
    except RpcError:
        return False


def members_everywhere(cluster: LocalCluster) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in cluster.nodes:
        try:
            out[n.name] = {m["node_id"]: m["status"] for m in n.request("members")}
        except RpcError as exc:
            out[n.name] = repr(exc)
    return out


def restart(cluster: LocalCluster, node: LocalNode) -> None:
    """The documented step for one node."""
    assert node.proc is not None
    node.signal(signal.SIGTERM)
    assert node.proc.wait(30) == 0, node.log_tail()
    node.start()
    node.wait_ready(30)
    wait_until(lambda: all_alive_everywhere(cluster), timeout_s=60,
               what=f"every member alive on every node after restarting {node.name}",
               explain=lambda: members_everywhere(cluster))


def missing_writes(cluster: LocalCluster, acked: dict[str, int]) -> dict[str, int]:
    """Per node: how many acknowledged writes it does not hold with their value."""
    out = {}
    for n in cluster.nodes:
        held = {row["key"]: row["value"] for row in n.request("state", {"type": "kv"})}
        out[n.name] = sum(1 for key, value in acked.items() if held.get(key) != value)
    return out


def test_a_rolling_restart_loses_no_acknowledged_write_and_fails_no_node(clusters, subscriber):
    cluster = clusters(3, profile="lan").start()
    wait_until(lambda: all_alive_everywhere(cluster), timeout_s=60, what="the join",
               explain=lambda: members_everywhere(cluster))
    sub = subscriber([n.events for n in cluster.nodes], ("node.",))
    with Writer(cluster.nodes) as writer:
        time.sleep(1.0)
        for node in cluster.nodes:
            before = writer.acked_through(node)
            restart(cluster, node)
            sub.pump()
            # the restarted node takes writes again before the next one goes down
            wait_until(lambda n=node, b=before: writer.acked_through(n) > b + 5,
                       timeout_s=30, what=f"writes acknowledged through {node.name} again")
        time.sleep(1.0)
    acked = dict(writer.acked)
    assert all(writer.acked_through(n) > 20 for n in cluster.nodes), writer.acked
    wait_until(lambda: not any(missing_writes(cluster, acked).values()), timeout_s=60,
               what="every acknowledged write on every node",
               explain=lambda: missing_writes(cluster, acked))

    sub.pump(0.5)
    failed = [e for e in sub.events if e["type"] == "node.failed"]
    assert failed == [], failed
    for node in cluster.nodes:
        for survivor in cluster.nodes:
            if survivor is node:
                continue
            # what this survivor published about the restarted node, in publication
            # order (one SUB socket keeps each publisher's order; seq restarts with it)
            seen = [e["type"] for e in sub.events
                    if e["source"] == survivor.name and e["node_id"] == node.name]
            assert "node.left" in seen, (survivor.name, node.name, seen)
            after_left = seen[seen.index("node.left") + 1:]
            assert {"node.joined", "node.alive"} & set(after_left), (survivor.name, node.name,
                                                                      seen)


def test_a_key_rotation_during_a_rolling_restart_fails_no_node(clusters, subscriber, tmp_path):
    """deploy/MULTI_HOST.md's rotation: stop the node; put its new public key in every
    node's allowed_keys_dir (under the same name: one key per node id) and SIGHUP the
    others; start it with its new key pair. No node.failed, and writes flow both ways."""
    cluster = clusters(3, profile="lan").secure(tmp_path / "keys")
    for node in cluster.nodes:  # a tcp events socket speaks CURVE with [security]: use ipc
        node.events = f"ipc://{node.folder / 'events.sock'}"
    cluster.start()
    wait_until(lambda: all_alive_everywhere(cluster), timeout_s=60, what="the join",
               explain=lambda: members_everywhere(cluster))
    sub = subscriber([n.events for n in cluster.nodes], ("node.",))
    rotated, others = cluster.nodes[1], [cluster.nodes[0], cluster.nodes[2]]
    public, secret = write_keypair(tmp_path / "keys-new", rotated.name)

    assert rotated.proc is not None
    rotated.signal(signal.SIGTERM)
    assert rotated.proc.wait(30) == 0, rotated.log_tail()
    for node in cluster.nodes:
        shutil.copy(public, node.folder / "allowed" / f"{rotated.name}.key")
    for node in others:
        node.signal(signal.SIGHUP)
    rotated.extra = {**rotated.extra, "security": {
        **rotated.extra["security"], "curve_public_key_file": str(public),
        "curve_secret_key_file": str(secret)}}
    rotated.start()
    rotated.wait_ready(30)
    wait_until(lambda: all_alive_everywhere(cluster), timeout_s=60,
               what="every member alive after the rotation",
               explain=lambda: members_everywhere(cluster))

    for writer, key in ((rotated, "from-rotated"), (others[0], "to-rotated")):
        writer.request("kv.set", {"key": key, "value": 1})
    wait_until(lambda: not any(missing_writes(cluster, {"from-rotated": 1, "to-rotated": 1})
                               .values()), timeout_s=30, what="writes both ways")
    sub.pump(0.5)
    assert [e for e in sub.events if e["type"] == "node.failed"] == []
    assert {e["type"] for e in sub.events if e["node_id"] == rotated.name
            and e["source"] != rotated.name} >= {"node.left", "node.joined"}
