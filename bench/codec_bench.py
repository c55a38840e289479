"""Codec throughput: encode and decode rates of a ping and of a 100-state push.

Run: `python bench/codec_bench.py [--seconds S]` (default 2 s per measurement,
about 10 s in all). Decoding includes full validation, as in the actors.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from transport.codec import decode_untrusted, encode
from transport.protocol import (
    GossipMessage,
    generate_node_id,
    make_syncable_state,
    ping_message,
    push_message,
)

CLUSTER = "bench"


def sample_ping() -> GossipMessage:
    return ping_message(generate_node_id(), generate_node_id(), 1_234_567)


def sample_push(count: int = 100) -> GossipMessage:
    """A push like the health provider's: small dicts per backend."""
    source = generate_node_id()
    states = [
        make_syncable_state(
            "health",
            f"10.0.{i // 256}.{i % 256}:8080",
            {"status": "up", "rtt_ms": 2.5 + i % 7, "checked_by": source, "fails": i % 3},
            1_000_000 + i,
            source,
        )
        for i in range(count)
    ]
    return push_message(source, states)


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of `fn`, measured in batches for about `seconds`."""
    batch, calls, start = 1, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            fn()
        calls += batch
        batch = min(batch * 2, 10_000)
    return calls / elapsed


def measure(name: str, msg: GossipMessage, seconds: float) -> None:
    data = encode(msg, CLUSTER)
    if decode_untrusted(data, CLUSTER) != msg:
        raise SystemExit(f"{name}: the codec does not round-trip")
    enc = rate(lambda: encode(msg, CLUSTER), seconds)
    dec = rate(lambda: decode_untrusted(data, CLUSTER), seconds)
    print(f"{name:<10} {len(data):>8} B   encode {enc:>10,.0f} msg/s   decode {dec:>10,.0f} msg/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    args = parser.parse_args()
    measure("ping", sample_ping(), args.seconds)
    measure("push-100", sample_push(), args.seconds)


if __name__ == "__main__":
    main()
