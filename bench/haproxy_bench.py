"""The HAProxy bridge against HAProxy's own checks, on real processes over 127.0.0.1.

    python bench/haproxy_bench.py [--nodes 2,5] [--trials 5] [--interval-ms 1000] [--json FILE]

Two setups per cluster size N, each with N HAProxy processes (one per
balancer) and two HTTP backends that count the requests per path:

* bridge: N lbcluster nodes with the health provider (replicas = 1) and
  `[haproxy]`; HAProxy runs no checks. A backend is out of rotation on a
  balancer when `show stat` says MAINT.
* own: HAProxy checks every server itself (`check`), no lbcluster. Out of
  rotation when `show stat` says DOWN.

Both check with the same interval, fast interval (interval / 4), fall 2 and
rise 2. Measured:

* detection: from the moment a backend's listener is closed to the moment the
  last of the N HAProxy shows it out of rotation (every HAProxy polled every
  10 ms), over `--trials` deaths, each after the backend was back in rotation
  everywhere and a random pause (the death falls anywhere in the check cycle);
* check load: requests per second each backend receives while steady, over a
  10-s window.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from actors.haproxy.runtime_api import RuntimeApiError
from actors.testing.haproxy import (
    HAPROXY_PATH,
    LBC_PATH,
    CountingBackend,
    HAProxyProcess,
    haproxy_binary,
)
from actors.testing.localcluster import LocalCluster

NAMES = ("web1", "web2")
POLL_S = 0.01
LOAD_WINDOW_S = 10.0


def out_of_rotation(status: str) -> bool:
    return status == "MAINT" or status.startswith("DOWN")


def in_rotation(status: str) -> bool:
    return status in ("UP", "no check")


def statuses(haproxies: list[HAProxyProcess], name: str) -> list[str]:
    out = []
    for h in haproxies:
        try:
            out.append(h.stat_status().get(name, "?"))
        except RuntimeApiError:
            out.append("?")
    return out


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(POLL_S)
    return time.monotonic()


@contextmanager
def setup(root: Path, n: int, mode: str, interval_ms: int) -> Iterator[
        tuple[list[HAProxyProcess], dict[str, CountingBackend], LocalCluster | None]]:
    fast_ms = interval_ms // 4
    with ExitStack() as stack:
        backends = {name: CountingBackend().start() for name in NAMES}
        for b in backends.values():
            stack.callback(b.stop)
        ports = {name: b.port for name, b in backends.items()}
        haproxies = [HAProxyProcess(root / f"h{i}", ports,
                                    check_inter_ms=interval_ms if mode == "own" else None,
                                    fast_inter_ms=fast_ms)
                     for i in range(n)]
        for h in haproxies:
            stack.callback(h.stop)
            h.start()
        cluster = None
        if mode == "bridge":
            health = {"type": "health", "options": {
                "backends": [{"name": name, "check": "http",
                              "url": f"http://127.0.0.1:{p}{LBC_PATH}"}
                             for name, p in ports.items()],
                "interval_ms": interval_ms, "fast_interval_ms": fast_ms,
                "timeout_ms": interval_ms // 2, "replicas": 1, "rise": 2, "fall": 2}}
            cluster = LocalCluster(root / "cluster", n, providers=[health])
            for node, h in zip(cluster.nodes, haproxies, strict=True):
                node.extra = {"haproxy": {"runtime_api": h.runtime_api,
                                          "servers": {x: f"be_app/{x}" for x in NAMES}}}
            stack.callback(cluster.stop)
            cluster.start(timeout_s=60)
            wait_for(lambda: settled(cluster), 60, "one agreed checker per backend")
        yield haproxies, backends, cluster


def settled(cluster: LocalCluster) -> bool:
    """Every node sees every member and the same single owner, checking, per backend."""
    rows = [{r["name"]: (r["owners"], r["checked_by"]) for r in
             node.request("provider.health.list")} for node in cluster.nodes]
    return all(len(members(node)) == len(cluster.nodes) for node in cluster.nodes) and all(
        len(row[name][0]) == 1 and row[name] == rows[0][name] and row[name][1] is not None
        for row in rows for name in NAMES)


def members(node: Any) -> list[str]:
    return [m["node_id"] for m in node.request("members") if m["status"] == "alive"]


def detection(haproxies: list[HAProxyProcess], backend: CountingBackend, trials: int,
              rng: random.Random) -> list[float]:
    times = []
    for _ in range(trials):
        wait_for(lambda: all(in_rotation(s) for s in statuses(haproxies, "web1")), 60,
                 "web1 in rotation everywhere")
        time.sleep(1.0 + rng.random() * 2.0)
        died = time.monotonic()
        backend.stop()
        gone = wait_for(lambda: all(out_of_rotation(s) for s in statuses(haproxies, "web1")),
                        60, "web1 out of rotation everywhere")
        times.append(gone - died)
        backend.start()
    return times


def check_load(backends: dict[str, CountingBackend], path: str) -> float:
    """Requests per second per backend to `path`, averaged over the backends."""
    before = {n: b.snapshot()[path] for n, b in backends.items()}
    time.sleep(LOAD_WINDOW_S)
    after = {n: b.snapshot()[path] for n, b in backends.items()}
    return statistics.mean(after[n] - before[n] for n in backends) / LOAD_WINDOW_S


def run_one(n: int, mode: str, trials: int, interval_ms: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hb") as tmp, \
            setup(Path(tmp), n, mode, interval_ms) as (haproxies, backends, _):
        wait_for(lambda: all(in_rotation(s) for name in NAMES
                             for s in statuses(haproxies, name)), 60, "all in rotation")
        time.sleep(interval_ms / 1000 * 3)  # steady: no rise still pending
        load = check_load(backends, LBC_PATH if mode == "bridge" else HAPROXY_PATH)
        times = detection(haproxies, backends["web1"], trials, random.Random(seed))
    return {"nodes": n, "mode": mode, "interval_ms": interval_ms, "trials": len(times),
            "detect_s": [round(t, 3) for t in times],
            "detect_median_s": round(statistics.median(times), 3),
            "detect_max_s": round(max(times), 3),
            "checks_per_backend_per_s": round(load, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="2,5")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if haproxy_binary() is None:
        print("haproxy is not installed (Debian: apt-get install haproxy)", file=sys.stderr)
        return 1
    rows = []
    print("| N | checks by | death -> out everywhere: median (max) s | checks/backend/s |")
    print("|---|---|---|---|")
    for n in (int(x) for x in args.nodes.split(",")):
        for mode in ("bridge", "own"):
            row = run_one(n, mode, args.trials, args.interval_ms, args.seed)
            rows.append(row)
            who = "lbcluster bridge" if mode == "bridge" else "each HAProxy"
            print(f"| {n} | {who} | {row['detect_median_s']:.2f} ({row['detect_max_s']:.2f}) "
                  f"| {row['checks_per_backend_per_s']:.2f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
