"""The supervisor's cost per event: `EventLog.publish_packed_many` of packed `state.changed`.

    python bench/eventlog_micro.py [--events 1000] [--rounds 50]

Each round publishes one actor batch of `--events` packed events to two ipc PUB
sockets (the events PUB and the actors' fan-out), first with nobody subscribed,
then with one subscriber in this process draining the first socket. Prints
microseconds per event; what a node's supervisor spends per change it publishes.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import zmq

from actors.node.eventlog import EventLog
from transport.codec import pack
from transport.protocol import make_event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    ctx = zmq.Context()
    with tempfile.TemporaryDirectory() as folder:
        pubs = [ctx.socket(zmq.PUB) for _ in range(2)]
        for i, pub in enumerate(pubs):
            pub.bind(f"ipc://{folder}/pub{i}")
        log = EventLog("n1", pubs)
        batch = [["state.changed", pack(make_event(
            "state.changed", "n2", {"type": "kv", "key": f"k{i}", "value": "v" * 20,
                                    "version": i, "source_node": "n2"}))]
            for i in range(args.events)]

        def per_event(drain: zmq.Socket | None) -> float:
            start = time.perf_counter()
            for _ in range(args.rounds):
                log.publish_packed_many(batch)
                while drain is not None and drain.poll(0):
                    drain.recv_multipart()
            return (time.perf_counter() - start) / (args.rounds * args.events) * 1e6

        print(f"no subscriber: {per_event(None):.2f} µs per event")
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.connect(f"ipc://{folder}/pub0")
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        time.sleep(0.2)  # the subscription reaches the PUB
        print(f"one subscriber draining here: {per_event(sub):.2f} µs per event")
        for sock in (*pubs, sub):
            sock.close(linger=0)
    ctx.term()


if __name__ == "__main__":
    main()
