"""Per-call cost of the in-process fast path of `rate` and `stick_table`.

    python bench/lbstate_micro.py [--calls 200000] [--json FILE]

What an LB program pays per request when it hosts the providers itself (the
SDK's `attach`): `RateProvider.add` / `total` and `StickTableProvider.put` /
`lookup`, each timed over `--calls` calls in one thread, then `add` from four
threads at once while a host thread flushes every `flush_ms` (lock
contention, and how many states that traffic became). No network: the
replication cost is what the flush writes, reported as adds per state.
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.providers.rate import RateProvider
from actors.providers.stick_table import StickTableProvider
from transport.protocol import LamportClock, make_syncable_state


def per_call_ns(fn: Callable[[int], object], calls: int) -> float:
    """Best of three runs of `calls` calls of fn(i), in ns per call."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter_ns()
        for i in range(calls):
            fn(i)
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def rate_with_peers(window_s: int = 10) -> RateProvider:
    """A rate provider that holds two other nodes' full shards of key "hot"."""
    p = RateProvider("node-a", LamportClock(), {"window_s": window_s})
    second = int(time.time())
    p.apply_remote_state([
        make_syncable_state("rate", f"hot@{node}",
                            [[second - k, 5] for k in reversed(range(window_s))], 1, node)
        for node in ("node-b", "node-c")])
    return p


def single_thread(calls: int) -> dict[str, float]:
    rate = rate_with_peers()
    keys = [f"client-{i}" for i in range(1000)]
    stick = StickTableProvider("node-a", LamportClock(), {"ttl_s": 600})
    for key in keys:
        stick.put(key, "backend-1")
    stick.drain_changes()
    return {
        "rate.add (one hot key)": per_call_ns(lambda i: rate.add("hot"), calls),
        "rate.add (1,000 keys)": per_call_ns(lambda i: rate.add(keys[i % 1000]), calls),
        "rate.total (3 shards x 10 s)": per_call_ns(lambda i: rate.total("hot"), calls),
        "stick_table.put": per_call_ns(lambda i: stick.put(keys[i % 1000], "backend-2"), calls),
        "stick_table.lookup (hit)": per_call_ns(lambda i: stick.lookup(keys[i % 1000]), calls),
        "stick_table.lookup (miss)": per_call_ns(lambda i: stick.lookup("absent"), calls),
    }


def contended(calls: int, threads: int = 4, flush_ms: int = 20) -> dict[str, float]:
    """`threads` threads add to 10 keys while a host thread ticks and drains."""
    rate = RateProvider("node-a", LamportClock(), {"flush_ms": flush_ms})
    stop = threading.Event()
    written = [0]

    def host() -> None:
        while not stop.is_set():
            rate.tick(time.monotonic())
            written[0] += len(rate.drain_changes())
            time.sleep(flush_ms / 4000)

    def worker() -> None:
        for i in range(calls):
            rate.add(f"k{i % 10}")

    flusher = threading.Thread(target=host)
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    flusher.start()
    start = time.perf_counter_ns()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed_ns = time.perf_counter_ns() - start
    stop.set()
    flusher.join()
    rate.tick(time.monotonic() + 1.0)
    written[0] += len(rate.drain_changes())
    adds = calls * threads
    assert sum(rate.total(f"k{k}") for k in range(10)) == adds  # nothing lost
    return {"threads": threads, "adds": adds, "wall_ns_per_add": elapsed_ns / adds,
            "adds_per_s": adds / (elapsed_ns / 1e9), "states_written": written[0],
            "adds_per_state": adds / max(written[0], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    single = single_thread(args.calls)
    print(f"{'call':32} {'us/call':>8}")
    for name, ns in single.items():
        print(f"{name:32} {ns / 1000:8.2f}")
    many = contended(args.calls // 4)
    print(f"\n{many['threads']} threads adding, flush every 20 ms: "
          f"{many['wall_ns_per_add'] / 1000:.2f} us per add (wall / all adds), "
          f"{many['adds_per_s']:,.0f} adds/s, {many['states_written']} states written "
          f"({many['adds_per_state']:,.0f} adds per state)")
    if args.json:
        result: dict[str, Any] = {"single_thread_ns": single, "contended": many,
                                  "python": platform.python_version(),
                                  "machine": platform.machine()}
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
