"""The supervisor's contract with real processes: a provider given up alone (12.1d),
the monitoring HTTP endpoint (14.2) and event handlers (14.3)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from conftest import wait_until
from prometheus_client.parser import text_string_to_metric_families

from actors.node.monitor import MAX_CLIENTS
from actors.testing.localcluster import LocalCluster, free_ports, toml_value
from transport.rpc import RpcError

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]
CRASHY = {"type": "crashy", "module": "support_providers:CrashyProvider"}


@pytest.fixture
def support_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/ on the nodes' import path, for `support_providers`."""
    paths = [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))


def start_unready(cluster: LocalCluster) -> LocalCluster:
    """Start every node and wait for its control socket only: a crashing actor never
    lets all actors be ready at once."""
    for node in cluster.nodes:
        node.start()
    for node in cluster.nodes:
        node.wait_ready(actors=False)
    return cluster


def lbcluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "actors.cli.main", *args], capture_output=True,
                          text=True, timeout=30)


def _events_of(sub, kind: str, actor: str) -> list[dict]:
    return [e for e in sub.events if e["type"] == kind and e["data"].get("actor") == actor]


def test_a_provider_that_keeps_dying_is_given_up_alone_and_retried(
        clusters, subscriber, support_importable):
    cluster = start_unready(clusters(
        2, providers=[{"type": "kv"}, CRASHY],
        extra={"supervisor": {"max_restarts": 2, "provider_retry_s": 3}}))
    n0, n1 = cluster.nodes
    sub = subscriber([n0.events], ("actor.",))
    gave_up = sub.wait_for(lambda e: e["type"] == "actor.gave_up"
                           and e["data"]["actor"] == "provider.crashy")[0]
    assert gave_up["data"]["retry_in_s"] == 3

    # The node keeps running, and membership and the other providers keep working.
    assert n0.proc is not None and n0.proc.poll() is None
    wait_until(lambda: {m["node_id"]: m["status"] for m in n1.request("members")}
               == {"n0": "alive", "n1": "alive"}, what="both members alive")
    n0.request("kv.set", {"key": "during", "value": 1})
    wait_until(lambda: n1.request("kv.get", {"key": "during"}).get("found"),
               what="kv replication to n1")

    # Its requests fail at once, and status says it is degraded.
    with pytest.raises(RpcError) as caught:
        n0.request("provider.crashy.ping", timeout_s=2.0)
    assert caught.value.code == "unavailable" and "given up" in caught.value.message
    status = json.loads(lbcluster("status", "-c", str(n0.config_path), "--json").stdout)
    assert status["degraded"] == ["provider.crashy"]
    row = next(a for a in status["actors"] if a["name"] == "provider.crashy")
    assert row["state"] == "degraded" and row["retry_in_s"] <= 3

    # After the backoff it is tried again (and, still broken, given up again).
    sub.wait_for(lambda e: e["type"] == "actor.started" and e["seq"] > gave_up["seq"]
                 and e["data"]["actor"] == "provider.crashy")
    sub.wait_for(lambda e: e["type"] == "actor.gave_up" and e["seq"] > gave_up["seq"]
                 and e["data"]["actor"] == "provider.crashy" and e["data"]["retries"] == 1)
    assert n0.proc.poll() is None and n1.proc is not None and n1.proc.poll() is None
    assert not _events_of(sub, "actor.gave_up", "provider.kv")


# -- [local] http: /metrics and /health ------------------------------------------------

def http_get(port: int, path: str, timeout_s: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metrics(port: int) -> dict[tuple[str, tuple], float]:
    _, text = http_get(port, "/metrics")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_are_scraped_in_prometheus_text_format(clusters):
    (port,) = free_ports(1)
    cluster = clusters(2)
    cluster.nodes[0].extra = {"local": {"http": f"127.0.0.1:{port}"}}
    n0 = cluster.start().nodes[0]
    wait_until(lambda: metrics(port).get(("lbcluster_members", (("status", "alive"),))) == 2,
               what="two alive members in /metrics")
    for i in range(3):
        n0.request("kv.set", {"key": f"k{i}", "value": i})
    counter = "lbcluster_actor_counter_total"
    ae_sent = (counter, (("actor", "anti_entropy"), ("counter", "sent")))
    # Counters arrive with heartbeats (about one a second): wait for the pushes to show.
    got = wait_until(lambda: (m := metrics(port)).get(
        ("lbcluster_state_keys", (("type", "kv"),))) == 3 and m.get(ae_sent, 0) > 0 and m,
        what="3 kv keys and anti-entropy sends in /metrics")
    assert got[("lbcluster_events_total", (("type", "state.changed"),))] == 3
    assert got[("lbcluster_events_total", (("type", "node.joined"),))] >= 1
    assert got[("lbcluster_actor_restarts_total", (("actor", "provider.kv"),))] == 0
    assert got[(counter, (("actor", "membership"), ("counter", "sent")))] > 0
    assert any(labels[0] == ("actor", "membership") and labels[1][1].startswith("core.")
               for name, labels in got if name == counter)
    kv = next(a for a in n0.request("snapshot")["actors"] if a["name"] == "provider.kv")
    os.kill(kv["pid"], signal.SIGKILL)
    wait_until(lambda: metrics(port).get(
        ("lbcluster_actor_restarts_total", (("actor", "provider.kv"),))) == 1,
        what="the restart counted")
    assert http_get(port, "/nothing")[0] == 404


def test_health_goes_503_while_a_provider_is_given_up_and_200_again(
        clusters, tmp_path, support_importable):
    (port,) = free_ports(1)
    flag = tmp_path / "crash-now"
    cluster = clusters(1, providers=[{"type": "kv"}, {**CRASHY, "options": {
        "crash_file": str(flag)}}], extra={
        "local": {"http": f"127.0.0.1:{port}"},
        "supervisor": {"max_restarts": 1, "provider_retry_s": 2}})
    cluster.start()
    code, body = http_get(port, "/health")
    assert code == 200 and json.loads(body)["status"] == "ok"
    flag.touch()
    code, body = wait_until(lambda: (r := http_get(port, "/health"))[0] == 503
                            and "degraded" in r[1] and r, what="503 while given up")
    assert "provider.crashy is degraded" in json.loads(body)["reasons"]
    flag.unlink()
    wait_until(lambda: http_get(port, "/health")[0] == 200, what="200 after the retry")


def test_slow_and_hostile_http_clients_are_bounded(clusters):
    (port,) = free_ports(1)
    cluster = clusters(1)
    cluster.nodes[0].extra = {"local": {"http": f"127.0.0.1:{port}"}}
    cluster.start()
    assert http_get(port, "/health")[0] == 200
    big = socket.create_connection(("127.0.0.1", port))
    big.sendall(b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n")
    assert big.recv(100).startswith(b"HTTP/1.1 400")
    big.close()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CLIENTS)]
    try:  # every slot held by a silent client: one more is refused at once, not queued
        code, body = http_get(port, "/health", timeout_s=2.0)
        assert code == 503 and body == "busy\n"
        # The silent clients are cut off after REQUEST_TIMEOUT_S and service resumes.
        wait_until(lambda: http_get(port, "/health")[0] == 200, what="service after timeouts")
    finally:
        for sock in idle:
            sock.close()
    assert cluster.nodes[0].request("ping")["node_id"] == "n0"


def test_an_http_port_in_use_is_a_one_line_config_error(clusters):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        node = clusters(1).nodes[0]
        node.extra = {"local": {"http": f"127.0.0.1:{holder.getsockname()[1]}"}}
        node.start()
        assert node.proc is not None and node.proc.wait(30) == 2
        lines = node.log_tail().strip().splitlines()
        assert "local.http" in lines[-1] and "Traceback" not in node.log_tail(100)
    finally:
        holder.close()


# -- [[handlers]]: commands run on events -----------------------------------------------

RECORDER = """
import json, os, sys
event = json.load(sys.stdin)
keys = ("LBC_EVENT_TYPE", "LBC_NODE_ID", "LBC_SELF", "LBC_SEQ")
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"event": event, "env": {k: os.environ[k] for k in keys}}) + "\\n")
"""
HANGER = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(sys.argv[1], "a") as out:
    out.write(f"{os.getpid()} {child.pid}\\n")
time.sleep(600)
"""


def with_handlers(node, handlers: list[dict]) -> None:
    """Append [[handlers]] tables to the node's config each time it is written."""
    write = node.write_config

    def write_with_handlers() -> Path:
        path = write()
        tables = "".join("\n[[handlers]]\n" + "".join(f"{k} = {toml_value(v)}\n"
                                                      for k, v in h.items()) for h in handlers)
        path.write_text(path.read_text() + tables)
        return path

    node.write_config = write_with_handlers


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_handlers_record_a_failed_node_and_a_hung_handler_is_killed(clusters, tmp_path):
    recorder, hanger = tmp_path / "recorder.py", tmp_path / "hanger.py"
    recorder.write_text(RECORDER)
    hanger.write_text(HANGER)
    records, hung = tmp_path / "records.jsonl", tmp_path / "hung.txt"
    cluster = clusters(2)
    n0, n1 = cluster.nodes
    with_handlers(n0, [
        {"events": ["node.failed"], "command": [sys.executable, str(recorder), str(records)]},
        {"events": ["node."], "command": [sys.executable, str(hanger), str(hung)],
         "timeout_s": 1},
    ])
    cluster.start()
    wait_until(lambda: any(m["node_id"] == "n1" and m["status"] == "alive"
                           for m in n0.request("members")), what="n1 alive on n0")
    n1.kill_group()  # kill -9 of the whole node
    recorded = wait_until(lambda: records.exists() and [
        json.loads(line) for line in records.read_text().splitlines()], timeout_s=60,
        what="the node.failed handler to run")
    event, env = recorded[0]["event"], recorded[0]["env"]
    assert event["type"] == "node.failed" and event["node_id"] == "n1"
    assert env == {"LBC_EVENT_TYPE": "node.failed", "LBC_NODE_ID": "n1", "LBC_SELF": "n0",
                   "LBC_SEQ": str(event["seq"])}

    # The hanging handler (it ran for node.joined, node.failed, ...) was killed with
    # its process group, each time after its 1 s timeout.
    def counters() -> dict:
        rows = {a["name"]: a for a in n0.request("status")["actors"]}
        return rows["handlers"]["counters"]

    wait_until(lambda: counters().get("handler1.timed_out", 0) >= 1, what="a timed-out handler")
    pids = [int(p) for line in hung.read_text().splitlines() for p in line.split()]
    wait_until(lambda: not any(_alive(p) for p in pids[:2]), what="the hung group killed")
    # The recorder wrote its line before it exited: its exit may be reaped a moment later.
    wait_until(lambda: counters().get("handler0.succeeded", 0) >= 1,
               what="the node.failed handler counted as succeeded")
    snapshot = n0.request("snapshot")
    assert all(a["ready"] and a["restarts"] == 0 for a in snapshot["actors"])
    assert n0.proc is not None and n0.proc.poll() is None
