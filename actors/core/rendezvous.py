"""Rendezvous (highest-random-weight) hashing: which live nodes own a key.

Theory of operation (Thaler & Ravishankar, "A Name-Based Mapping Scheme for
Rendezvous", 1996/1998):

* Every (key, node) pair gets a pseudo-random 64-bit weight; the owners of a
  key are the `count` nodes with the highest weights. Ties (astronomically
  rare) break by node id, so the order is total.
* Determinism: weights come from blake2b over an unambiguous encoding of the
  pair, never from Python's `hash()` (salted per process), so every process
  on every node computes the same owners from the same member list.
* Minimal disruption: a key's weights do not depend on the other nodes, so
  when a node leaves only the keys it owned move (each to its next-highest
  node), and when a node joins only the keys it now wins move to it.
* `Ownership` keeps the candidate set (the live members as this node sees
  them) and answers "who owns key k" from it. It is what providers consult to
  decide who checks a backend or runs a breaker's half-open trial.

Pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from actors.core.hash64 import h64


def weight(key: str, node: str) -> int:
    """The 64-bit rendezvous weight of `node` for `key` (same in every process)."""
    k, n = key.encode("utf-8", "surrogatepass"), node.encode("utf-8", "surrogatepass")
    # Length-prefix the key so ("ab", "c") and ("a", "bc") hash differently.
    data = len(k).to_bytes(8, "big") + k + n
    return h64(data)


def owners(key: str, nodes: Sequence[str], count: int) -> list[str]:
    """The `count` owners of `key` among `nodes`, best first.

    Args:
        key: the item to place (a backend name, an upstream).
        nodes: candidate node ids; duplicates are ignored, order does not matter.
        count: how many owners are wanted; fewer are returned if there are
            fewer distinct nodes.

    Returns:
        Node ids ordered by descending weight (ties by node id).

    Raises:
        ValueError: if `count` is less than 1.
    """
    if count < 1:
        raise ValueError(f"owner count must be at least 1 (count={count})")
    ranked = sorted(set(nodes), key=lambda node: (-weight(key, node), node))
    return ranked[:count]


def owner(key: str, nodes: Sequence[str]) -> str | None:
    """The single owner of `key`, or None when there are no nodes."""
    found = owners(key, nodes, 1)
    return found[0] if found else None


class Ownership:
    """This node's view of the live members, and the owners it implies.

    Invariant: `self_id` is always a candidate: a node never believes itself
    dead, so with no other members it owns every key.
    """

    def __init__(self, self_id: str, replicas: int = 1) -> None:
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1 (replicas={replicas})")
        self.self_id = self_id
        self.replicas = replicas
        self._nodes: tuple[str, ...] = (self_id,)

    @property
    def nodes(self) -> tuple[str, ...]:
        """The sorted candidate set."""
        return self._nodes

    def set_members(self, live: Iterable[str]) -> bool:
        """Replace the candidate set; return True if it changed."""
        nodes = tuple(sorted({*live, self.self_id}))
        changed = nodes != self._nodes
        self._nodes = nodes
        return changed

    def remove(self, node_id: str) -> bool:
        """Drop a failed node at once; return True if it was a candidate."""
        if node_id == self.self_id or node_id not in self._nodes:
            return False
        self._nodes = tuple(n for n in self._nodes if n != node_id)
        return True

    def owners_of(self, key: str) -> list[str]:
        """The `replicas` owners of `key`, best (primary) first."""
        return owners(key, self._nodes, self.replicas)

    def is_owner(self, key: str) -> bool:
        return self.self_id in self.owners_of(key)

    def is_primary(self, key: str) -> bool:
        """True if this node is the first (highest-weight) owner of `key`."""
        return self.owners_of(key)[0] == self.self_id
