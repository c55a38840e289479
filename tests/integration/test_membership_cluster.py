"""Membership across real processes: convergence, crash detection, pauses."""

from __future__ import annotations

import os
import re
import signal
import socket
import time

import pytest
from conftest import wait_until

from transport.rpc import RpcError

pytestmark = pytest.mark.slow


def _statuses(node) -> dict[str, str]:
    return {m["node_id"]: m["status"] for m in node.request("members")}


def _all_see(nodes, expected: dict[str, str]) -> bool:
    for node in nodes:
        seen = _statuses(node)
        if any(seen.get(n) != s for n, s in expected.items()):
            return False
    return True


def test_five_nodes_converge_to_one_view(clusters):
    cluster = clusters(5).start()
    names = {n.name: "alive" for n in cluster.nodes}
    wait_until(lambda: _all_see(cluster.nodes, names), timeout_s=30, what="convergence")
    rows = cluster.nodes[0].request("members")
    assert {r["node_id"] for r in rows} == set(names)
    assert all(r["address"].startswith("tcp://127.0.0.1:") for r in rows)


def test_kill_9_of_a_node_is_reported_failed_on_every_survivor(clusters, subscriber):
    cluster = clusters(5).start()
    names = {n.name: "alive" for n in cluster.nodes}
    wait_until(lambda: _all_see(cluster.nodes, names), timeout_s=30, what="convergence")
    victim, survivors = cluster.nodes[-1], cluster.nodes[:-1]
    sub = subscriber([n.events for n in survivors], ("node.failed",))
    victim.kill_group()
    failed = sub.wait_for(lambda e: e["node_id"] == victim.name, count=len(survivors))
    assert {e["source"] for e in failed} == {n.name for n in survivors}
    assert _all_see(survivors, {victim.name: "dead"})


def test_a_two_second_pause_is_not_a_failure(clusters, subscriber):
    cluster = clusters(4, profile="lan").start()
    names = {n.name: "alive" for n in cluster.nodes}
    wait_until(lambda: _all_see(cluster.nodes, names), timeout_s=40, what="convergence")
    paused = cluster.nodes[-1]
    sub = subscriber([n.events for n in cluster.nodes[:-1]], ("node.failed",))
    os.killpg(paused.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(2.0)
    finally:
        os.killpg(paused.proc.pid, signal.SIGCONT)
    time.sleep(3.0)  # anything the pause set in motion has had time to fire
    sub.pump()
    assert [e for e in sub.events if e["type"] == "node.failed"] == []
    assert _all_see(cluster.nodes, names)


def test_a_long_pause_is_failed_then_alive_again_after_sigcont(clusters, subscriber):
    cluster = clusters(3, profile="test").start()
    names = {n.name: "alive" for n in cluster.nodes}
    wait_until(lambda: _all_see(cluster.nodes, names), timeout_s=30, what="convergence")
    paused, others = cluster.nodes[-1], cluster.nodes[:-1]
    sub = subscriber([n.events for n in others], ("node.",))
    os.killpg(paused.proc.pid, signal.SIGSTOP)
    try:
        sub.wait_for(lambda e: e["type"] == "node.failed" and e["node_id"] == paused.name,
                     count=len(others), timeout_s=60)
    finally:
        os.killpg(paused.proc.pid, signal.SIGCONT)
    sub.wait_for(lambda e: e["type"] == "node.alive" and e["node_id"] == paused.name,
                 count=len(others), timeout_s=60)
    wait_until(lambda: _all_see(cluster.nodes, names), timeout_s=30, what="re-merge")


def test_a_restarting_membership_actor_is_never_failed(clusters, subscriber):
    cluster = clusters(3).start()
    names = {n.name: "alive" for n in cluster.nodes}
    wait_until(lambda: _all_see(cluster.nodes, names), timeout_s=30, what="convergence")
    node = cluster.nodes[-1]
    sub = subscriber([n.events for n in cluster.nodes[:-1]], ("node.failed",))
    for _ in range(3):
        pid = next(a["pid"] for a in node.request("snapshot")["actors"]
                   if a["name"] == "membership")
        os.kill(pid, signal.SIGKILL)
        time.sleep(1.5)
    time.sleep(2.0)
    sub.pump()
    assert sub.events == []
    wait_until(lambda: _all_see(cluster.nodes, names), timeout_s=30, what="steady view")


def test_graceful_leave_is_reported_as_left(clusters, subscriber):
    cluster = clusters(3).start()
    names = {n.name: "alive" for n in cluster.nodes}
    wait_until(lambda: _all_see(cluster.nodes, names), timeout_s=30, what="convergence")
    leaver = cluster.nodes[-1]
    sub = subscriber([n.events for n in cluster.nodes[:-1]], ("node.",))
    assert leaver.request("leave", timeout_s=10)["left"] is True
    assert leaver.proc.wait(20) == 0
    sub.wait_for(lambda e: e["type"] == "node.left" and e["node_id"] == leaver.name, count=2)
    assert not [e for e in sub.events if e["type"] == "node.failed"]


def test_metadata_changes_reach_every_node(clusters, subscriber):
    cluster = clusters(3).start()
    names = {n.name: "alive" for n in cluster.nodes}
    wait_until(lambda: _all_see(cluster.nodes, names), timeout_s=30, what="convergence")
    sub = subscriber([n.events for n in cluster.nodes[1:]], ("node.updated",))
    cluster.nodes[0].request("metadata.set", {"metadata": {"weight": 7}})
    sub.wait_for(lambda e: e["node_id"] == "n0" and e["data"]["metadata"].get("weight") == 7,
                 count=2)
    with pytest.raises(RpcError) as info:
        cluster.nodes[0].request("metadata.set", {"metadata": {"blob": "x" * 2000}})
    assert info.value.code == "bad_request"
    assert {m["node_id"]: m["metadata"] for m in cluster.nodes[1].request("members")}[
        "n0"].get("weight") == 7


JOIN_WARNING = "no seed answered the join; still retrying"


def _join_warning_gaps(node) -> list[float]:
    lines = [line for line in node.log_path.read_text(errors="replace").splitlines()
             if JOIN_WARNING in line]
    return [float(m[1]) for line in lines if (m := re.search(r"next_warning_s=([0-9.]+)", line))]


def test_a_join_no_seed_answers_is_warned_about_with_backoff_until_it_joins(clusters):
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))  # bound, never listening: every dial is refused
        cluster = clusters(2, profile="test")
        lonely, late = cluster.nodes
        lonely.seeds = [f"tcp://127.0.0.1:{dead.getsockname()[1]}"]
        lonely.start()
        lonely.wait_ready()
        wait_until(lambda: len(_join_warning_gaps(lonely)) >= 2, timeout_s=30,
                   what="the join warning, twice")
        first, second = _join_warning_gaps(lonely)[:2]
        assert second > first  # repeated with backoff
        assert "WARNING" in next(line for line in lonely.log_path.read_text().splitlines()
                                 if JOIN_WARNING in line)
        late.seeds = [lonely.gossip]  # a member finally reaches it
        late.start()
        late.wait_ready()
        wait_until(lambda: "joined the cluster" in lonely.log_path.read_text(), timeout_s=30,
                   what="the all-clear after the warnings")
