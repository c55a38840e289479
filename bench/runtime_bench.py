"""Runtime benchmark: actor restart time, node start-to-ready time, memory per node.

    python bench/runtime_bench.py [--kills 20] [--nodes 3]

Restart time is measured two ways for each kill -9 of the kv provider actor:
until the supervisor reports the new process ready (``actor.restarted``
event timestamp), and until a ``kv.get`` through the control socket is
answered by the new process. Memory is RSS and PSS summed over all of a
node's processes (supervisor, zygote, actors), read with psutil.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

import psutil
import zmq

from actors.testing.localcluster import LocalCluster, LocalNode
from transport.codec import unpack_untrusted
from transport.rpc import RpcError
from transport.sockets import make_socket


def _kv_pid(node: LocalNode) -> int:
    return next(a["pid"] for a in node.request("snapshot")["actors"]
                if a["name"] == "provider.kv")


def measure_restarts(node: LocalNode, kills: int) -> tuple[list[float], list[float]]:
    ctx = zmq.Context()
    sub = make_socket(ctx, zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"actor.restarted")
    sub.connect(node.events)
    time.sleep(0.3)
    node.request("kv.set", {"key": "probe", "value": 1})
    to_ready, to_serving = [], []
    try:
        for _ in range(kills):
            pid = _kv_pid(node)
            t0 = time.time()
            os.kill(pid, signal.SIGKILL)
            deadline = time.time() + 10
            while time.time() < deadline:  # end to end: the new process answers a read
                try:
                    if node.request("kv.get", {"key": "probe"}, timeout_s=0.2)["found"]:
                        break
                except RpcError:
                    pass
            to_serving.append(time.time() - t0)
            while sub.poll(5000):
                event = unpack_untrusted(sub.recv_multipart()[-1])
                if event["data"]["actor"] == "provider.kv":
                    to_ready.append(event["timestamp"] - t0)
                    break
            time.sleep(1.2)  # stay clear of the restart backoff
    finally:
        sub.close(linger=0)
        ctx.term()
    return to_ready, to_serving


def measure_orphans(root: Path, trials: int) -> list[float]:
    """kill -9 of a node's supervisor until its zygote and every actor are gone."""
    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    times = []
    for i in range(trials):
        cluster = LocalCluster(root / f"orphans{i}", 1).start()
        try:
            node = cluster.nodes[0]
            assert node.proc is not None
            pids = [p.pid for p in psutil.Process(node.proc.pid).children(recursive=True)]
            t0 = time.monotonic()
            os.kill(node.proc.pid, signal.SIGKILL)
            while any(alive(p) for p in pids) and time.monotonic() - t0 < 10:
                time.sleep(0.001)
            times.append(time.monotonic() - t0)
        finally:
            cluster.stop()
    return times


def node_memory(node: LocalNode) -> tuple[int, int, int]:
    assert node.proc is not None
    root = psutil.Process(node.proc.pid)
    procs = [root, *root.children(recursive=True)]
    rss = pss = 0
    for proc in procs:
        info = proc.memory_full_info()
        rss += info.rss
        pss += info.pss
    return len(procs), rss, pss


def _ms(values: list[float]) -> str:
    return (f"median {statistics.median(values) * 1000:.1f} ms, "
            f"max {max(values) * 1000:.1f} ms (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--orphan-trials", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lbc-bench-") as tmp:
        # Every kill counts as a restart: lift the give-up limit for this run.
        cluster = LocalCluster(Path(tmp), args.nodes,
                               extra={"supervisor": {"max_restarts": 10 * args.kills}})
        t0 = time.monotonic()
        starts = []
        try:
            for node in cluster.nodes:
                node.start()
            for node in cluster.nodes:
                node.wait_ready()
                starts.append(time.monotonic() - t0)
            print(f"nodes: {args.nodes}; start to ready (all actors ready): "
                  f"first {starts[0] * 1000:.0f} ms, last {starts[-1] * 1000:.0f} ms")
            time.sleep(3)
            for node in cluster.nodes:
                count, rss, pss = node_memory(node)
                print(f"node {node.name}: {count} processes, RSS {rss / 2**20:.1f} MiB, "
                      f"PSS {pss / 2**20:.1f} MiB")
            ready, serving = measure_restarts(cluster.nodes[0], args.kills)
            print(f"kv actor restart, kill -9 to ready: {_ms(ready)}")
            print(f"kv actor restart, kill -9 to answering a read: {_ms(serving)}")
        finally:
            cluster.stop()
        orphans = measure_orphans(Path(tmp), args.orphan_trials)
        print(f"supervisor kill -9 to zygote and every actor gone: {_ms(orphans)}")


if __name__ == "__main__":
    main()
