"""The supervisor's contract with real processes: a provider given up alone (12.1d),
the monitoring HTTP endpoint (14.2) and event handlers (14.3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_until

from actors.testing.localcluster import LocalCluster
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
