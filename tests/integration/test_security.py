"""CURVE between nodes: admitted keys only, spoofing and revocation, plaintext shut out."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import zmq
from conftest import wait_until

from actors.testing.localcluster import LocalCluster, LocalNode, free_ports
from transport import protocol as p
from transport.codec import encode
from transport.security import load_keypair, secure_client

pytestmark = pytest.mark.slow


def _secure(cluster: LocalCluster, keys: Path, admitted: list[str]) -> None:
    cluster.secure(keys, admitted)


def _alive(node) -> set[str]:
    return {m["node_id"] for m in node.request("members") if m["status"] == "alive"}


def test_admitted_nodes_form_a_cluster_and_replicate_over_curve(clusters, tmp_path):
    cluster = clusters(3)
    _secure(cluster, tmp_path / "keys", ["n0", "n1", "n2"])
    cluster.start()
    wait_until(lambda: all(_alive(n) == {"n0", "n1", "n2"} for n in cluster.nodes),
               timeout_s=30, what="convergence over CURVE")
    cluster.nodes[0].request("kv.set", {"key": "secret", "value": 42})
    wait_until(lambda: cluster.nodes[2].request("kv.get", {"key": "secret"})["found"],
               what="replication over CURVE")


def test_a_node_without_an_admitted_key_can_neither_join_nor_inject(clusters, tmp_path):
    cluster = clusters(3)
    _secure(cluster, tmp_path / "keys", ["n0", "n1"])  # n2's key is admitted nowhere
    cluster.start()
    wait_until(lambda: all(_alive(n) == {"n0", "n1"} for n in cluster.nodes[:2]),
               timeout_s=30, what="the admitted pair to converge")
    intruder = cluster.nodes[2]
    intruder.request("kv.set", {"key": "injected", "value": 1})
    time.sleep(3.0)
    for node in cluster.nodes[:2]:
        assert "n2" not in {m["node_id"] for m in node.request("members")}
        assert node.request("kv.get", {"key": "injected"})["found"] is False
    assert _alive(intruder) == {"n2"}  # it learned nothing either


def test_a_plaintext_peer_gets_nothing_from_a_curve_node(clusters, tmp_path):
    cluster = clusters(2)
    _secure(cluster, tmp_path / "keys", ["n0", "n1"])
    cluster.start()
    target = cluster.nodes[0]
    g, s, e = free_ports(3)
    plain = LocalNode(name="n9", folder=tmp_path / "plain", gossip=f"tcp://127.0.0.1:{g}",
                      sync=f"tcp://127.0.0.1:{s}", events=f"tcp://127.0.0.1:{e}",
                      seeds=[target.gossip])
    plain.start()
    try:
        plain.wait_ready()
        time.sleep(3.0)
        assert "n9" not in {m["node_id"] for m in target.request("members")}
        assert _alive(plain) == {"n9"}
    finally:
        plain.stop()


def test_spoofed_senders_are_dropped_and_revoked_keys_stop_after_reload(clusters, tmp_path):
    cluster = clusters(3)
    keys = tmp_path / "keys"
    _secure(cluster, keys, ["n0", "n1", "n2"])
    cluster.start()
    n0 = cluster.nodes[0]
    wait_until(lambda: all(_alive(n) == {"n0", "n1", "n2"} for n in cluster.nodes),
               timeout_s=30, what="convergence")
    # n1's key, claiming to be n2: must be dropped, not believed.
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 3000)  # let the handshake finish and the frames go out
    n1_keys = load_keypair(keys / "n1.key", keys / "n1.key_secret")
    n0_keys = load_keypair(keys / "n0.key", keys / "n0.key_secret")
    secure_client(sock, n1_keys, n0_keys.public)
    sock.connect(n0.gossip)
    for _ in range(5):
        sock.send(encode(p.leave_message("n2"), "local"))
    sock.close()
    ctx.term()

    def dropped_spoofs() -> int:
        rows = {a["name"]: a for a in n0.request("status")["actors"]}
        return rows["membership"]["counters"].get("dropped.spoofed_sender", 0)

    wait_until(lambda: dropped_spoofs() >= 5, what="spoofed messages to be counted")
    assert {m["node_id"]: m["status"] for m in n0.request("members")}["n2"] == "alive"
    # Revoke n2's key on the other two: its messages stop at their doors at once,
    # and with nobody left to vouch for it, it is failed.
    for node in cluster.nodes[:2]:
        (node.folder / "allowed" / "n2.key").unlink()
        node.signal(signal.SIGHUP)

    def view(node) -> str:
        return {m["node_id"]: m["status"] for m in node.request("members")}["n2"]

    wait_until(lambda: view(cluster.nodes[0]) == view(cluster.nodes[1]) == "dead",
               timeout_s=60, what="the revoked node to be failed")
    rows = {a["name"]: a for a in n0.request("status")["actors"]}
    assert rows["membership"]["counters"].get("dropped.unadmitted", 0) > 0
