"""The floor under every hop of a write: one ZeroMQ message between two processes.

    python bench/zmq_hop.py [--messages 5000] [--gap-ms 2]

A parent and a forked child bounce a 100-byte message over ipc (PAIR
sockets, a Poller each, as the actors read theirs). Printed: wall time and
CPU time (both processes, every thread: the I/O threads do the socket work)
per round trip, back to back and with `--gap-ms` between round trips (an
idle process must be woken for each message, as in a cluster at LB rates).
A round trip is two messages; a write crosses several such hops per node.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import zmq


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _echo(endpoint: str, n: int) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    sock.connect(endpoint)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    for _ in range(n):
        poller.poll(5000)
        sock.send(sock.recv())
    time.sleep(0.5)  # let the last reply leave before the context goes
    os._exit(0)


def run(n: int, gap_s: float) -> tuple[float, float]:
    """(wall µs, CPU µs) per round trip."""
    with tempfile.TemporaryDirectory() as folder:
        endpoint = f"ipc://{folder}/hop.sock"
        child = os.fork()
        if child == 0:
            _echo(endpoint, n)
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PAIR)
        sock.bind(endpoint)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        time.sleep(0.3)
        try:
            cpu0, t0 = _cpu_s(os.getpid()) + _cpu_s(child), time.monotonic()
            for _ in range(n):
                sock.send(b"x" * 100)
                if not poller.poll(5000):
                    raise RuntimeError("no echo within 5 s")
                sock.recv()
                if gap_s:
                    time.sleep(gap_s)
            wall = time.monotonic() - t0 - n * gap_s
            cpu = _cpu_s(os.getpid()) + _cpu_s(child) - cpu0
        finally:
            os.waitpid(child, 0)
            ctx.destroy(linger=0)
    return wall / n * 1e6, cpu / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="round trips per run")
    parser.add_argument("--gap-ms", type=float, default=2.0)
    args = parser.parse_args()
    for label, gap in (("back to back", 0.0), (f"{args.gap_ms:g} ms apart", args.gap_ms / 1000)):
        wall, cpu = run(args.messages, gap)
        print(f"{label}: round trip {wall:.0f} µs wall (excluding the gaps), "
              f"{cpu:.0f} µs CPU over both processes")


if __name__ == "__main__":
    main()
