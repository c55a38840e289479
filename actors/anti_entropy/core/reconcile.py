"""Mirror versus provider, one slice of buckets at a time (pure).

The anti-entropy actor compares its mirror with each provider after a provider
restart, after a failed apply and every RECONCILE_S. Comparing whole tables is
one O(keys) step (seconds at 1M keys, longer than the actor's heartbeat
timeout), so a comparison walks the summary buckets in slices of at most
`SLICE_KEYS` mirror keys: for each slice the provider is asked for its digest
of those buckets only, and `compare_slice` says what to do with that slice.

Guarantee, the same as a whole-table comparison: once every slice is compared,
every state the mirror holds newer than the provider (or the provider lacks)
has been offered to it. A state the provider holds newer than the mirror and
still does a walk later (not a write on its way) makes the mirror refill from
the provider's whole table (see NewerInProvider).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from actors.core.store import StateKey, Store, bucket_of
from transport.protocol import SyncableState

SLICE_KEYS = 20_000  # mirror keys compared per provider digest request


SUSPECTS_MAX = 10_000  # provider-newer keys remembered from one walk to the next


@dataclass
class SliceVerdict:
    lacking: list[SyncableState] = field(default_factory=list)  # offer these to the provider
    # (key, version) the provider holds newer than the mirror (see NewerInProvider)
    newer: list[tuple[StateKey, int]] = field(default_factory=list)


class NewerInProvider:
    """Whether the mirror really lacks what a provider holds newer, over two walks.

    While a provider writes, its digest shows writes whose "local" message is still on
    its way to the mirror; refilling the mirror from the provider's whole table for
    those would cost a step of O(keys) for nothing. A (key, version) still newer in
    the provider a whole walk later did not get here: that one asks for a refill.
    """

    def __init__(self) -> None:
        self.previous: set[tuple[StateKey, int]] = set()
        self.current: set[tuple[StateKey, int]] = set()

    def confirmed(self, newer: Iterable[tuple[StateKey, int]]) -> bool:
        found = False
        for item in newer:
            if item in self.previous:
                found = True
            elif len(self.current) < SUSPECTS_MAX:
                self.current.add(item)
        return found

    def walk_done(self) -> None:
        self.previous, self.current = self.current, set()


def read_digest_rows(rows: Any) -> dict[StateKey, int] | None:
    """A provider's digest reply, [[type, key, version], ...]; None if not a list
    (ill-formed rows are skipped, as the provider's own words about itself)."""
    if not isinstance(rows, list):
        return None
    return {(r[0], r[1]): r[2] for r in rows
            if isinstance(r, list) and len(r) == 3 and isinstance(r[2], int)
            and not isinstance(r[2], bool)}


def compare_slice(store: Store, state_type: str, buckets: Iterable[int],
                  held: dict[StateKey, int]) -> SliceVerdict:
    """Mirror keys of `state_type` in `buckets` against the provider's digest `held`
    (of those buckets; extra rows do no harm)."""
    verdict, wanted = SliceVerdict(), set(buckets)
    mine = store.digest_in(wanted, state_type)
    for skey, version in mine.items():
        if held.get(skey, -1) < version:
            state = store.get(*skey)
            assert state is not None  # from the store's own digest
            verdict.lacking.append(state)
    # A provider that ignores the slice sends every key: only the slice's count here.
    verdict.newer = [(k, v) for k, v in held.items()
                     if k[0] == state_type and v > mine.get(k, -1)
                     and (k in mine or bucket_of(*k) in wanted)]
    return verdict


class Walk:
    """The slices still to compare for one provider type."""

    def __init__(self, store: Store, start: int = 0) -> None:
        """Every bucket, beginning with the slice that holds bucket `start`."""
        slices = store.bucket_slices(SLICE_KEYS)
        first = next(i for i, s in enumerate(slices) if s[-1] >= start)
        self.slices = slices[first:] + slices[:first]

    def next_slice(self) -> list[int] | None:
        return self.slices.pop(0) if self.slices else None

    def restart(self, store: Store) -> None:
        """Walk over every bucket again, going on from where this walk is: a comparison
        asked for again and again (failed applies under load) still gets round, where
        starting from the first slice each time would never reach the last."""
        self.slices = Walk(store, self.slices[0][0] if self.slices else 0).slices
