"""One bad provider never stops a node: real nodes, a provider with ordinary bugs."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until

from actors.testing.localcluster import LocalCluster, LocalNode
from transport.rpc import RpcError

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
PROVIDERS = [{"type": "kv"}, {"type": "sticky", "module": "faulty_providers:PoisonSticky"}]
STEADY_S = 15.0  # how long every node must stay whole after the bad write


@pytest.fixture
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/ and the repository (for examples/) importable by the nodes."""
    paths = [str(TESTS), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))


def _held(node: LocalNode, state_type: str) -> dict[str, Any]:
    """What the provider itself holds (not the anti-entropy mirror)."""
    return {r["key"]: r["value"] for r in node.request(f"provider.{state_type}.state")}


def _actor(node: LocalNode, name: str) -> dict[str, Any]:
    return next(a for a in node.request("status")["actors"] if a["name"] == name)


def _everyone_alive(cluster: LocalCluster) -> bool:
    names = {n.name for n in cluster.nodes}
    for node in cluster.nodes:
        rows = node.request("members")
        if {r["node_id"] for r in rows if r["status"] == "alive"} != names:
            return False
    return True


def test_a_state_one_provider_cannot_take_is_quarantined_and_the_cluster_carries_on(
        clusters, subscriber, importable) -> None:
    cluster = clusters(3, providers=PROVIDERS).start()
    a, b, c = cluster.nodes
    events = subscriber([n.events for n in cluster.nodes], ("provider.", "actor.", "node.f"))
    wait_until(lambda: _everyone_alive(cluster), what="every member alive")

    a.request("provider.sticky.put", {"key": "c1", "value": "web1"})
    wait_until(lambda: all(_held(n, "sticky").get("c1") == "web1" for n in (b, c)),
               what="a good state on every node")

    bad_at = time.monotonic()
    a.request("provider.sticky.put", {"key": "c2", "value": "poison"})
    errors = events.wait_for(lambda e: e["type"] == "provider.error", count=2)
    seen_s = time.monotonic() - bad_at
    assert {e["source"] for e in errors} == {"n1", "n2"}  # the receivers, not the writer
    assert all(e["data"]["method"] == "apply" and "AttributeError" in e["data"]["error"]
               and e["data"]["actor"] == "provider.sticky" for e in errors)

    a.request("provider.sticky.put", {"key": "c3", "value": "web3"})
    b.request("kv.set", {"key": "after", "value": 1})
    for node in cluster.nodes:
        wait_until(lambda n=node: _held(n, "sticky").get("c3") == "web3", what="c3 everywhere")
        wait_until(lambda n=node: n.request("kv.get", {"key": "after"}).get("value") == 1,
                   what="kv after the bad write")

    for node in (b, c):  # status comes with the actor's next heartbeat
        status = wait_until(lambda n=node: (s := _actor(n, "provider.sticky"))["status"].get(
            "quarantined") and s, what="the quarantine in status")
        assert [q["key"] for q in status["status"]["quarantined"]] == ["c2"]
        assert status["counters"]["errors.apply"] >= 1
        assert "c2" not in _held(node, "sticky")
        mirror = {r["key"]: r["value"] for r in node.request("state", {"type": "sticky"})}
        assert mirror["c2"] == "poison"  # kept and relayed: nothing is lost
    assert _held(a, "sticky")["c2"] == "poison"

    with pytest.raises(RpcError) as raised:
        b.request("provider.sticky.explode", {})
    assert raised.value.code == "provider_error"
    assert "RuntimeError: boom: the backend pool is empty" in raised.value.message
    assert b.request("provider.sticky.get", {"key": "c1"}) == {"found": True, "value": "web1"}

    steady_until = time.monotonic() + STEADY_S
    while time.monotonic() < steady_until:
        assert all(n.proc is not None and n.proc.poll() is None for n in cluster.nodes)
        assert _everyone_alive(cluster)
        time.sleep(1.0)
    restarts = {n.name: sum(a["restarts"] for a in n.request("status")["actors"])
                for n in cluster.nodes}
    assert restarts == {"n0": 0, "n1": 0, "n2": 0}
    events.pump()
    assert not [e for e in events.events if e["type"] in ("actor.exited", "node.failed")]
    quarantined = {n.name: _actor(n, "provider.sticky")["counters"].get("quarantined", 0)
                   for n in cluster.nodes}
    print(f"\nisolation: provider.error on both receivers {seen_s * 1000:.0f} ms after the "
          f"bad write; quarantined {quarantined}; restarts {restarts}")
