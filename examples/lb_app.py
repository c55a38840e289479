"""A load balancer that shares its backend weights with the cluster, through the SDK.

Start a node, then this program beside it (as many as you like, one per node)::

    lbcluster run -c configs/node-a.toml
    python examples/lb_app.py -c configs/node-a.toml --rounds 10

Every round it sets the weight of its own backend, picks a backend by weight
from what the whole cluster wrote, and reads a kv key through the node. The
provider lives in this process: reads are plain method calls, no round trip.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any, Literal

from actors.sdk import NodeUnavailable, attach
from transport.protocol import (
    ApplyResult,
    LamportClock,
    Order,
    SyncableState,
    compare_states,
    make_syncable_state,
)

COUNTED_AS: dict[Order, Literal["applied", "conflicts", "rejected"]] = {
    Order.NEWER: "applied", Order.CONFLICT_WIN: "conflicts",
    Order.CONFLICT_LOSE: "conflicts", Order.OLDER: "rejected"}


class BackendWeights:
    """StateProvider for "backends": backend name -> weight, the newest write wins."""

    def __init__(self, node_id: str, clock: LamportClock, options: Any = None) -> None:
        self.node_id, self.clock = node_id, clock
        self.states: dict[str, SyncableState] = {}
        self.changed: list[SyncableState] = []

    def set(self, backend: str, weight: int) -> None:
        state = make_syncable_state("backends", backend, weight, self.clock.next(), self.node_id)
        self.states[backend] = state
        self.changed.append(state)

    def get(self, backend: str) -> int | None:
        state = self.states.get(backend)
        return None if state is None else state.value

    def pick(self, rng: random.Random) -> str | None:
        live = [(s.key, s.value) for s in self.states.values() if s.value]
        if not live:
            return None
        return rng.choices([k for k, _ in live], weights=[w for _, w in live])[0]

    # -- StateProvider ------------------------------------------------------------
    def provider_type(self) -> str:
        return "backends"

    def get_sync_state(self) -> list[SyncableState]:
        return list(self.states.values())

    def get_state_digest(self) -> dict[tuple[str, str], int]:
        return {("backends", k): s.version for k, s in self.states.items()}

    def apply_remote_state(self, states: list[SyncableState]) -> ApplyResult:
        result: ApplyResult = {"applied": 0, "conflicts": 0, "rejected": 0}
        for s in states:
            if s.state_type != "backends" or not isinstance(s.value, int):
                result["rejected"] += 1  # remote values are untrusted
                continue
            held = self.states.get(s.key)
            order = Order.NEWER if held is None else compare_states(s, held)
            if order in (Order.NEWER, Order.CONFLICT_WIN):  # equal versions: greater node wins
                self.clock.update(s.version)  # Lamport: our next write is newer
                self.states[s.key] = s
            if order is not Order.SAME:
                result[COUNTED_AS[order]] += 1
        return result

    def on_node_failure(self, node_id: str) -> None:
        """A load balancer could drain the dead node's backends here."""

    def drain_changes(self) -> list[SyncableState]:
        changed, self.changed = self.changed, []
        return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default="configs/node-a.toml")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    rng = random.Random()
    try:
        hosted = attach(BackendWeights, args.config)
    except NodeUnavailable as exc:
        print(f"lb_app: {exc.message}", file=sys.stderr)
        return 1
    with hosted:
        mine = f"{hosted.node_id}-backend"
        for _ in range(args.rounds):
            with hosted.writing() as weights:  # sent to the cluster on exit
                weights.set(mine, rng.randint(1, 10))
            choice = hosted.read(lambda w: w.pick(rng))
            everyone = hosted.read(lambda w: {k: s.value for k, s in w.states.items()})
            print(f"picked {choice} from {everyone}; kv 'greeting' = "
                  f"{hosted.node.kv_get('greeting')!r}")
            time.sleep(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
