"""Replicated state across real processes: propagation, restarts, deletes."""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import wait_until

from transport.rpc import RpcError

pytestmark = pytest.mark.slow


def _value(node, key):
    got = node.request("kv.get", {"key": key})
    return got["value"] if got["found"] else None


def _value_if_up(node, key):
    """Like _value, but a provider still restarting just has nothing yet."""
    try:
        return _value(node, key)
    except RpcError:
        return RpcError


def _everywhere(nodes, key, value) -> bool:
    return all(_value(n, key) == value for n in nodes)


def _where(nodes, key) -> dict[str, object]:
    """Per node: the provider's value, the mirror's row (tombstones too) and the
    anti-entropy counters, for a timeout's message."""
    out: dict[str, object] = {}
    for n in nodes:
        rows = [r for r in n.request("state", {"tombstones": True}) if r["key"] == key]
        actors = {a["name"]: a for a in n.request("status")["actors"]}
        ae = actors.get("anti_entropy", {})
        out[n.name] = {"value": _value_if_up(n, key), "mirror": rows,
                       "restarts": {name: a["restarts"] for name, a in actors.items()},
                       "anti_entropy": {"counters": ae.get("counters"), "status": ae.get("status")}}
    return out


def _converged(cluster) -> None:
    names = {n.name for n in cluster.nodes}
    wait_until(lambda: all({m["node_id"] for m in n.request("members")
                            if m["status"] == "alive"} == names for n in cluster.nodes),
               timeout_s=30, what="membership convergence")


def test_a_write_on_one_node_reaches_every_node_with_an_event_each(clusters, subscriber):
    cluster = clusters(3).start()
    _converged(cluster)
    sub = subscriber([n.events for n in cluster.nodes], ("state.changed",))
    cluster.nodes[1].request("kv.set", {"key": "pool/web", "value": {"weight": 3}})
    events = sub.wait_for(lambda e: e["data"]["key"] == "pool/web", count=3)
    assert sorted(e["source"] for e in events) == ["n0", "n1", "n2"]
    assert {e["data"]["source_node"] for e in events} == {"n1"}
    assert _everywhere(cluster.nodes, "pool/web", {"weight": 3})
    cluster.nodes[2].request("kv.del", {"key": "pool/web"})
    wait_until(lambda: _everywhere(cluster.nodes, "pool/web", None), what="delete everywhere",
               explain=lambda: _where(cluster.nodes, "pool/web"))
    rows = cluster.nodes[0].request("state")
    assert [r for r in rows if r["key"] == "pool/web"] == []


def test_concurrent_writes_to_one_key_end_equal_everywhere(clusters):
    cluster = clusters(3).start()
    _converged(cluster)
    for round_ in range(5):
        for node in cluster.nodes:
            node.request("kv.set", {"key": "hot", "value": f"{node.name}-{round_}"})
    wait_until(lambda: len({repr(_value(n, "hot")) for n in cluster.nodes}) == 1,
               what="one value everywhere")
    assert _value(cluster.nodes[0], "hot") is not None


def test_a_restarted_node_catches_up(clusters):
    cluster = clusters(3).start()
    _converged(cluster)
    away = cluster.nodes[2]
    away.stop()
    for i in range(30):
        cluster.nodes[i % 2].request("kv.set", {"key": f"k{i}", "value": i})
    away.start()
    away.wait_ready()
    wait_until(lambda: all(_value(away, f"k{i}") == i for i in range(30)), timeout_s=30,
               what="the returning node to catch up")


def test_a_full_cluster_restart_keeps_every_acknowledged_write(clusters):
    cluster = clusters(3).start()
    _converged(cluster)
    for i in range(60):
        cluster.nodes[i % 3].request("kv.set", {"key": f"w{i}", "value": {"i": i}})
    cluster.nodes[0].request("kv.del", {"key": "w5"})
    for node in cluster.nodes:  # the harshest stop: no snapshot at shutdown
        node.kill_group()
    cluster.start()
    wait_until(lambda: all(_value(n, f"w{i}") == ({"i": i} if i != 5 else None)
                           for n in cluster.nodes for i in range(60)),
               timeout_s=30, what="every write on every node after the restart")


def test_every_survivor_tells_its_providers_once_when_a_node_fails(clusters):
    cluster = clusters(4).start()
    _converged(cluster)
    cluster.nodes[-1].kill_group()
    survivors = cluster.nodes[:-1]

    def failures(node) -> int:
        rows = {a["name"]: a for a in node.request("status")["actors"]}
        return rows["provider.kv"]["counters"].get("node_failures", 0)

    wait_until(lambda: all(failures(n) == 1 for n in survivors), timeout_s=30,
               what="one on_node_failure per survivor")
    time.sleep(2.0)
    assert [failures(n) for n in survivors] == [1, 1, 1]


def test_a_node_away_past_the_tombstone_grace_cannot_resurrect_a_delete(clusters):
    grace = {"anti_entropy": {"tombstone_grace_s": 2}}
    cluster = clusters(3, providers=[{"type": "kv", "options": {"tombstone_grace_s": 2}}],
                       extra=grace).start()
    _converged(cluster)
    cluster.nodes[0].request("kv.set", {"key": "ghost", "value": "boo"})
    wait_until(lambda: _everywhere(cluster.nodes, "ghost", "boo"), what="replication")
    away = cluster.nodes[2]
    os.killpg(away.proc.pid, signal.SIGSTOP)  # away, but keeps its copy of "ghost"
    try:
        cluster.nodes[0].request("kv.del", {"key": "ghost"})
        wait_until(lambda: _everywhere(cluster.nodes[:2], "ghost", None), what="delete")
        time.sleep(5.0)  # past the grace period: the tombstones are collected
    finally:
        os.killpg(away.proc.pid, signal.SIGCONT)
    wait_until(lambda: _value(away, "ghost") is None, timeout_s=30,
               what="the returning node to drop the deleted key")
    time.sleep(3.0)
    assert _everywhere(cluster.nodes, "ghost", None)


def test_states_a_stalled_provider_missed_reach_it_afterwards(clusters):
    cluster = clusters(2, extra={"supervisor": {"heartbeat_timeout_s": 30}}).start()
    _converged(cluster)
    slow = cluster.nodes[1]
    pid = next(a["pid"] for a in slow.request("snapshot")["actors"]
               if a["name"] == "provider.kv")
    os.kill(pid, signal.SIGSTOP)  # its "apply" requests time out while it is stopped
    try:
        for i in range(20):
            cluster.nodes[0].request("kv.set", {"key": f"m{i}", "value": i})
        time.sleep(6.0)  # past the apply timeout: the mirror has them, the provider not
    finally:
        os.kill(pid, signal.SIGKILL)  # and the requests queued for it die with it
    wait_until(lambda: all(_value_if_up(slow, f"m{i}") == i for i in range(20)), timeout_s=30,
               what="the provider to be given what it missed")
