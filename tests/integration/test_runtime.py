"""The node runtime with real processes: supervisor, zygote, actors, events, control."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from conftest import wait_until

pytestmark = pytest.mark.slow


def _actor_pids(node) -> dict[str, int]:
    return {a["name"]: a["pid"] for a in node.request("snapshot")["actors"] if a["pid"]}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_subscriber_gets_events_newer_than_the_snapshot(clusters, subscriber):
    cluster = clusters(1).start()
    node = cluster.nodes[0]
    sub = subscriber([node.events])
    snap = node.request("snapshot")
    assert {a["name"] for a in snap["actors"]} >= {"membership", "anti_entropy", "provider.kv"}
    assert all(a["ready"] for a in snap["actors"])
    assert snap["seq"] >= len(snap["actors"])  # at least one actor.started each
    for i in range(3):
        node.request("kv.set", {"key": f"k{i}", "value": i})
    changed = sub.wait_for(lambda e: e["type"] == "state.changed", count=3)
    assert [e["data"]["key"] for e in changed] == ["k0", "k1", "k2"]
    assert all(e["source"] == "n0" and e["node_id"] == "n0" for e in changed)
    seqs = [e["seq"] for e in sub.events]
    assert seqs[0] > snap["seq"] and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_kill_9_of_each_actor_is_restarted_and_the_subscriber_stays_connected(
        clusters, subscriber):
    cluster = clusters(1).start()
    node = cluster.nodes[0]
    sub = subscriber([node.events], ("actor.",))
    for name, pid in _actor_pids(node).items():
        os.kill(pid, signal.SIGKILL)
        restarted = sub.wait_for(lambda e, n=name: e["type"] == "actor.restarted"
                                 and e["data"]["actor"] == n)
        assert restarted[-1]["data"]["pid"] != pid
        exited = sub.wait_for(lambda e, n=name: e["type"] == "actor.exited"
                              and e["data"]["actor"] == n)
        assert exited[-1]["data"]["signal"] == signal.SIGKILL
    node.wait_ready()
    rows = {a["name"]: a for a in node.request("status")["actors"]}
    assert all(rows[name]["restarts"] == 1 for name in _actor_pids(node))


def test_kill_9_of_the_supervisor_leaves_no_actor_alive(clusters):
    cluster = clusters(1).start()
    node = cluster.nodes[0]
    pids = list(_actor_pids(node).values())
    assert pids and all(_alive(p) for p in pids)
    node.signal(signal.SIGKILL)
    wait_until(lambda: not any(_alive(p) for p in pids), timeout_s=5,
               what="actors to die with their supervisor")


def test_sigterm_stops_the_node_cleanly(clusters):
    cluster = clusters(1).start()
    node = cluster.nodes[0]
    pids = list(_actor_pids(node).values())
    node.signal(signal.SIGTERM)
    assert node.proc.wait(20) == 0
    assert not any(_alive(p) for p in pids)
    assert not Path(node.control[len("ipc://"):]).exists()


def test_a_hung_actor_is_killed_and_restarted(clusters, subscriber):
    cluster = clusters(1, extra={"supervisor": {"heartbeat_timeout_s": 1.0}}).start()
    node = cluster.nodes[0]
    sub = subscriber([node.events], ("actor.",))
    pid = _actor_pids(node)["provider.kv"]
    os.kill(pid, signal.SIGSTOP)
    sub.wait_for(lambda e: e["type"] == "actor.restarted"
                 and e["data"]["actor"] == "provider.kv")
    assert not _alive(pid)


def test_an_idle_node_with_a_short_heartbeat_timeout_kills_nothing(clusters):
    """Idle loops beat well within a short timeout (`actor_beat_interval`); one beat
    per timeout would leave every idle actor's stamp a timeout old at each check."""
    cluster = clusters(1, extra={"supervisor": {"heartbeat_timeout_s": 0.8}}).start()
    node = cluster.nodes[0]
    before = _actor_pids(node)
    time.sleep(4.0)  # five timeouts of idling
    status = node.request("status")
    supervisor = next(a for a in status["actors"] if a["name"] == "supervisor")
    assert supervisor["counters"]["actors_hung"] == 0
    assert _actor_pids(node) == before


def test_an_essential_actor_that_keeps_dying_makes_the_node_give_up(clusters, subscriber):
    cluster = clusters(1, extra={"supervisor": {"max_restarts": 1}}).start()
    node = cluster.nodes[0]
    sub = subscriber([node.events], ("actor.",))
    for _ in range(2):
        pid = wait_until(lambda: _actor_pids(node).get("anti_entropy"), what="ae actor")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda p=pid: not _alive(p), what="ae actor to die")
        time.sleep(0.3)
    sub.wait_for(lambda e: e["type"] == "actor.gave_up")
    assert node.proc.wait(20) == 1


def test_kv_writes_survive_a_kill_9_of_the_provider_actor(clusters):
    cluster = clusters(1).start()
    node = cluster.nodes[0]
    for i in range(50):
        node.request("kv.set", {"key": f"k{i}", "value": {"n": i}})
    node.request("kv.del", {"key": "k7"})
    old = _actor_pids(node)["provider.kv"]
    os.kill(old, signal.SIGKILL)

    def replaced() -> bool:  # not just "ready": the old pid is reported ready until reaped
        rows = {a["name"]: a for a in node.request("snapshot")["actors"]}
        return rows["provider.kv"]["pid"] not in (None, old) and rows["provider.kv"]["ready"]

    wait_until(replaced, what="restart")
    assert node.request("kv.get", {"key": "k42"})["value"] == {"n": 42}
    assert node.request("kv.get", {"key": "k7"})["found"] is False


def test_a_second_node_on_the_same_control_socket_is_refused(clusters):
    cluster = clusters(1).start()
    node = cluster.nodes[0]
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "supervisor", "-c", str(node.config_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "already running" in result.stderr
    assert node.request("ping")["node_id"] == "n0"
