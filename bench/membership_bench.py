"""Membership benchmark on real processes over 127.0.0.1.

    python bench/membership_bench.py [--nodes 5,10,20] [--profile lan] [--json FILE]

For each cluster size it measures:
- join convergence: from starting every node to every node seeing all alive;
- kill -9 of one whole node to ``node.failed`` on each survivor (min, median,
  max over survivors), read from the survivors' event timestamps;
- false ``node.failed`` events while one node is paused (SIGSTOP) for 1, 2, 3 s;
- idle gossip traffic per node: messages and bytes sent per second.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import zmq

from actors.testing.localcluster import LocalCluster, LocalNode
from transport.codec import unpack_untrusted
from transport.sockets import make_socket


def _views_agree(nodes: list[LocalNode], expected: dict[str, str]) -> bool:
    for node in nodes:
        seen = {m["node_id"]: m["status"] for m in node.request("members")}
        if any(seen.get(k) != v for k, v in expected.items()):
            return False
    return True


def _wait(predicate: Any, timeout_s: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def _subscribe(nodes: list[LocalNode], prefix: bytes) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    sub = make_socket(ctx, zmq.SUB, hwm=100000)
    sub.setsockopt(zmq.SUBSCRIBE, prefix)
    for node in nodes:
        sub.connect(node.events)
    time.sleep(0.3)
    return ctx, sub


def _drain(sub: zmq.Socket, until: float) -> list[dict[str, Any]]:
    events = []
    while time.monotonic() < until:
        if sub.poll(50):
            events.append(unpack_untrusted(sub.recv_multipart()[-1]))
    return events


def _cpu_seconds(node: LocalNode) -> float:
    """CPU time used so far by all of a node's processes (supervisor, zygote, actors)."""
    root = psutil.Process(node.proc.pid)  # type: ignore[union-attr]
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def _idle_cpu_and_pss(nodes: list[LocalNode], window_s: float) -> tuple[float, float]:
    """Mean CPU % of one core and PSS (MiB) per node, over `window_s` at idle."""
    before = [_cpu_seconds(n) for n in nodes]
    time.sleep(window_s)
    after = [_cpu_seconds(n) for n in nodes]
    cpu = sum(a - b for a, b in zip(after, before, strict=True)) / len(nodes) / window_s * 100
    pss = 0
    for node in nodes:
        root = psutil.Process(node.proc.pid)  # type: ignore[union-attr]
        pss += sum(p.memory_full_info().pss for p in [root, *root.children(recursive=True)])
    return cpu, pss / len(nodes) / 2**20


def _idle_traffic(nodes: list[LocalNode], window_s: float) -> tuple[float, float]:
    def totals() -> tuple[int, int]:
        msgs = byts = 0
        for node in nodes:
            for actor in node.request("status")["actors"]:
                if actor["name"] == "membership":
                    msgs += actor["counters"].get("sent", 0)
                    byts += actor["counters"].get("bytes_sent", 0)
        return msgs, byts

    m0, b0 = totals()
    time.sleep(window_s)
    m1, b1 = totals()
    per = len(nodes) * window_s
    return (m1 - m0) / per, (b1 - b0) / per


def _pauses(cluster: LocalCluster, seconds: list[float]) -> int:
    paused, watchers = cluster.nodes[0], cluster.nodes[1:]
    ctx, sub = _subscribe(watchers, b"node.failed")
    try:
        for pause in seconds:
            os.killpg(paused.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            time.sleep(pause)
            os.killpg(paused.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
            time.sleep(2.0)
        return len(_drain(sub, time.monotonic() + 3.0))
    finally:
        sub.close(linger=0)
        ctx.term()


def _kill(cluster: LocalCluster) -> list[float]:
    victim, survivors = cluster.nodes[-1], cluster.nodes[:-1]
    ctx, sub = _subscribe(survivors, b"node.failed")
    try:
        t0 = time.time()
        victim.kill_group()
        deadline = time.monotonic() + 60
        found: dict[str, float] = {}
        while len(found) < len(survivors) and time.monotonic() < deadline:
            for event in _drain(sub, time.monotonic() + 0.2):
                if event["node_id"] == victim.name:
                    found.setdefault(event["source"], event["timestamp"] - t0)
        return sorted(found.values())
    finally:
        sub.close(linger=0)
        ctx.term()


def run_size(n: int, profile: str, root: Path) -> dict[str, Any]:
    cluster = LocalCluster(root / f"n{n}", n, profile=profile)
    try:
        t0 = time.monotonic()
        for node in cluster.nodes:
            node.start()
        for node in cluster.nodes:
            node.wait_ready(60)
        everyone = {node.name: "alive" for node in cluster.nodes}
        converged = _wait(lambda: _views_agree(cluster.nodes, everyone), 120)
        join_s = None if converged is None else time.monotonic() - t0
        msgs, byts = _idle_traffic(cluster.nodes, 10.0)
        cpu, pss = _idle_cpu_and_pss(cluster.nodes, 10.0)
        false_failed = _pauses(cluster, [1.0, 2.0, 3.0])
        detect = _kill(cluster)
        return {"nodes": n, "profile": profile, "join_convergence_s": join_s,
                "detect_s": detect, "detected_by": len(detect), "survivors": n - 1,
                "false_failed_under_pauses": false_failed,
                "idle_msgs_per_node_s": round(msgs, 2), "idle_bytes_per_node_s": round(byts, 1),
                "idle_cpu_percent_per_node": round(cpu, 2), "pss_mib_per_node": round(pss, 1)}
    finally:
        cluster.stop()


def _fmt(result: dict[str, Any]) -> str:
    d = result["detect_s"]
    detect = (f"min {min(d) * 1000:.0f} / median {statistics.median(d) * 1000:.0f} / "
              f"max {max(d) * 1000:.0f} ms ({result['detected_by']}/{result['survivors']})"
              if d else "not detected")
    join = result["join_convergence_s"]
    return (f"N={result['nodes']:<3} join {join:.2f} s | kill -9 -> failed: {detect} | "
            f"false failed under 1-3 s pauses: {result['false_failed_under_pauses']} | "
            f"idle {result['idle_msgs_per_node_s']} msg/s, "
            f"{result['idle_bytes_per_node_s']} B/s, "
            f"{result['idle_cpu_percent_per_node']} % CPU, "
            f"{result['pss_mib_per_node']} MiB PSS per node")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="5,10,20")
    parser.add_argument("--profile", default="lan")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="lbc-bench-") as tmp:
        for n in (int(x) for x in args.nodes.split(",")):
            result = run_size(n, args.profile, Path(tmp))
            print(_fmt(result), flush=True)
            results.append(result)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
