"""The mirror snapshot made a slice at a time (Store.snapshot_in_pieces + SnapshotWriter)."""

from __future__ import annotations

from pathlib import Path

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as hs

from actors.core.store import Store
from actors.storage.snapshot import SnapshotWriter, load_snapshot, save_snapshot
from transport.protocol import make_syncable_state

GRACE = 50.0
# (op, key, version): op 0 writes a value, 1 a tombstone; versions drawn small so
# stale and equal versions happen too.
OPS = hs.lists(hs.tuples(hs.integers(0, 1), hs.integers(0, 40), hs.integers(1, 30)),
               max_size=120)


def fill(store: Store, ops: list[tuple[int, int, int]], now: float) -> None:
    for op, key, version in ops:
        value = None if op else f"v{version}"
        store.apply([make_syncable_state("kv", f"k{key}", value, version, "n")], now)


def join(store: Store, now: float, rows: int) -> bytes:
    pieces, out = store.snapshot_in_pieces(), b""
    while not pieces.done:
        out += pieces.next(now, rows)
    return out


@settings(max_examples=60, deadline=None)
@given(OPS, hs.integers(1, 9))
def test_pieces_decode_to_the_whole_snapshot(ops: list[tuple[int, int, int]], rows: int
                                             ) -> None:
    store = Store(GRACE)
    fill(store, ops, 0.0)
    assert msgpack.unpackb(join(store, 3.0, rows)) == store.snapshot(3.0)


@settings(max_examples=60, deadline=None)
@given(OPS, OPS, hs.integers(1, 9))
def test_changes_between_pieces_restore_a_consistent_store(
        before: list[tuple[int, int, int]], during: list[tuple[int, int, int]], rows: int
        ) -> None:
    """Horizons are the latest, and every restored state is the live one, an older one
    (superseded while the pieces were made) or one the horizon covers (collected
    meanwhile): nothing a restore brings back can override what the store knows now."""
    store = Store(GRACE)
    fill(store, before, 0.0)
    pieces, data = store.snapshot_in_pieces(), b""
    data += pieces.next(1.0, rows)
    if not pieces.done:  # (a small store is written whole by the first piece)
        fill(store, during, 1.0)
        store.gc(GRACE + 10)  # collect every tombstone: keys go, horizons rise
    while not pieces.done:
        data += pieces.next(GRACE + 10, rows)
    back = Store(GRACE)
    back.restore(msgpack.unpackb(data), 100.0)
    assert back.horizons() == store.horizons()
    for state in back.items():
        live = store.get(state.state_type, state.key)
        if live is None:
            assert state.version <= store.horizon(state.state_type)
        else:
            assert live == state or live.version > state.version


def test_a_snapshot_written_in_pieces_loads_back(tmp_path: Path) -> None:
    store = Store(GRACE)
    fill(store, [(i % 3 == 0, i, i + 1) for i in range(1000)], 0.0)
    path = tmp_path / "mirror.bin"
    save_snapshot(path, {"old": True})
    writer, pieces = SnapshotWriter(path), store.snapshot_in_pieces()
    writer.write(pieces.next(1.0, 100))
    assert load_snapshot(path) == {"old": True}  # nothing visible before commit
    while not pieces.done:
        writer.write(pieces.next(1.0, 100))
    writer.commit()
    back = Store(GRACE)
    back.restore(load_snapshot(path), 1.0)
    assert sorted(map(repr, back.items())) == sorted(map(repr, store.items()))
    assert [p.name for p in tmp_path.iterdir()] == ["mirror.bin"]


def test_an_aborted_writer_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "mirror.bin"
    save_snapshot(path, [1, 2])
    writer = SnapshotWriter(path)
    writer.write(msgpack.packb([3]))
    writer.abort()
    assert load_snapshot(path) == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["mirror.bin"]
