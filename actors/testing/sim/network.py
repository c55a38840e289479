"""The simulator's in-memory transport: what happens to one message on its way.

Theory of operation: the network owns one seeded `random.Random` and decides,
per message, whether it crosses a partition, is duplicated, is lost, and how
long each copy takes. Every message is encoded by the real codec
(`transport.codec.encode`) at the sender, whose byte count is the traffic
meter, and decoded with `decode_untrusted` at the receiver, so what a core
receives is what a real peer would have parsed. Draws happen only for the
faults a `NetModel` switches on, so a run is a pure function of the seed and
the model, and adding a fault kind does not change runs that do not use it.

Not modelled: bandwidth and queueing, TCP ordering between a pair (each
message draws its own latency, so a pair's messages can be reordered),
asymmetric or partial partitions.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from transport.codec import decode_untrusted, encode
from transport.protocol import GossipMessage

CLUSTER = "sim"


@dataclass
class NetModel:
    """Network behaviour; mutable so a scenario can change loss between phases."""

    latency: str = "uniform"  # uniform | lognormal
    latency_min_s: float = 0.0005
    latency_max_s: float = 0.005
    loss: float = 0.0  # per message copy
    duplicate: float = 0.0  # per message: delivered twice, each copy on its own latency
    slow_delay_s: tuple[float, float] = (0.5, 2.0)
    # The shell reconnects after RECONNECT_IVL (50 ms); the refusal comes a round trip later.
    refusal_delay_s: tuple[float, float] = (0.05, 0.1)
    # Off only where N is too large to validate every push-pull table (bench, N >= 5,000).
    codec: bool = True

    def draw_latency(self, rng: random.Random) -> float:
        lo, hi = self.latency_min_s, self.latency_max_s
        if self.latency == "lognormal":
            # ~95 % of draws inside [lo, hi]; the rest is a tail, floored at lo.
            mu, sigma = math.log(math.sqrt(lo * hi)), math.log(hi / lo) / 4
            return max(lo, rng.lognormvariate(mu, sigma))
        return rng.uniform(lo, hi)


@dataclass
class Meter:
    """Traffic since the last `Network.reset_meter`: per type, all nodes together."""

    messages: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    largest: dict[str, int] = field(default_factory=dict)  # biggest message per type

    def add(self, msg_type: str, size: int) -> None:
        self.messages[msg_type] = self.messages.get(msg_type, 0) + 1
        self.bytes[msg_type] = self.bytes.get(msg_type, 0) + size
        if size > self.largest.get(msg_type, 0):
            self.largest[msg_type] = size


class Network:
    """Seeded drop, duplication, delay and partitions between node indices."""

    def __init__(self, model: NetModel, rng: random.Random) -> None:
        self.model, self.rng = model, rng
        self.meter = Meter()
        self._groups: list[int] | None = None

    def partition(self, groups: list[int] | None) -> None:
        """groups[i] is node i's side; messages between sides vanish. None heals."""
        self._groups = groups

    def reset_meter(self) -> None:
        self.meter = Meter(largest=self.meter.largest)

    def encode(self, msg: GossipMessage) -> tuple[Any, int]:
        """The wire form of `msg` and its size, metered; the message itself with the codec off."""
        if not self.model.codec:
            self.meter.add(msg.msg_type, 0)
            return msg, 0
        wire = encode(msg, CLUSTER)
        self.meter.add(msg.msg_type, len(wire))
        return wire, len(wire)

    @staticmethod
    def decode(wire: Any) -> GossipMessage:
        """What the receiver parses. The codec can be switched on for a metering window
        mid-run, so a message sent before travels as itself."""
        return wire if isinstance(wire, GossipMessage) else decode_untrusted(wire, CLUSTER)

    def delays(self, src: int, dst: int) -> list[float]:
        """The latency of each copy of one message from `src` to `dst` that arrives:
        none across a partition or when lost, two when duplicated."""
        if self._groups is not None and self._groups[src] != self._groups[dst]:
            return []
        model, rng = self.model, self.rng
        copies = 2 if model.duplicate and rng.random() < model.duplicate else 1
        out = []
        for _ in range(copies):
            if model.loss and rng.random() < model.loss:
                continue
            out.append(model.draw_latency(rng))
        return out
