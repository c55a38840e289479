"""A provider's durable state: a snapshot plus an append-only journal.

Each change batch is one record ``len(4 bytes, big-endian) + msgpack list
of state maps``, written with a single ``os.write`` to a file opened with
O_APPEND before the change is acknowledged. That survives a kill -9 of the
process (the bytes are in the kernel's page cache); ``fsync = true`` would
also survive a power cut, at a cost per write. A torn final record (a crash
in the middle of a write) is ignored on load: it was never acknowledged.

Compaction is due when the journal has grown past the snapshot (and past
`MIN_COMPACT_BYTES`): each rewrite of the snapshot is then paid for by at
least as many bytes of appends, so the cost per write stays the same whether
the provider holds ten keys or a million.

Compaction writes a new snapshot atomically (actors.storage.snapshot) and
only then truncates the journal, so a crash at any point leaves either the
old snapshot plus the full journal, or the new snapshot plus a journal whose
records are already in it — replaying those is harmless because applying a
state twice is a no-op under the version rules.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import msgpack

from actors.storage.snapshot import SnapshotError, load_snapshot, save_snapshot
from transport.protocol import (
    ProtocolError,
    SyncableState,
    map_to_syncable_state,
    syncable_state_to_map,
)

_LEN = struct.Struct(">I")
MIN_COMPACT_BYTES = 1 << 20  # below this a journal is cheap to replay: never compact


class StateJournal:
    def __init__(self, folder: Path, min_compact_bytes: int = MIN_COMPACT_BYTES) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.snapshot_path = folder / "snapshot.bin"
        self.journal_path = folder / "journal.bin"
        self.min_compact_bytes = min_compact_bytes
        self.records = 0
        self.journal_bytes = 0  # what appends added since the last compaction
        self.snapshot_bytes = 0
        self.fd: int | None = None
        self.corrupt = False

    @property
    def compaction_due(self) -> bool:
        return self.journal_bytes > max(self.min_compact_bytes, self.snapshot_bytes)

    def load(self) -> list[SyncableState]:
        """Snapshot states, then journal states in order (later ones win on apply).

        A corrupt snapshot is moved aside rather than crash-looping the actor;
        what it held comes back from the journal and from the other nodes.
        """
        try:
            raw = load_snapshot(self.snapshot_path) or []
        except SnapshotError:
            self.snapshot_path.replace(self.snapshot_path.with_suffix(".corrupt"))
            self.corrupt = True
            raw = []
        states = _decode(raw)
        data = b""
        with contextlib.suppress(FileNotFoundError):
            data = self.journal_path.read_bytes()
        offset = 0
        while offset + _LEN.size <= len(data):
            (size,) = _LEN.unpack_from(data, offset)
            end = offset + _LEN.size + size
            if end > len(data):
                break  # torn tail: never acknowledged
            try:
                states.extend(_decode(msgpack.unpackb(data[offset + _LEN.size:end], raw=False)))
            except (ValueError, msgpack.UnpackException):
                break
            offset = end
            self.records += 1
        self.journal_bytes = offset
        with contextlib.suppress(FileNotFoundError):
            self.snapshot_bytes = self.snapshot_path.stat().st_size
        return states

    def append(self, states: list[SyncableState]) -> None:
        if self.fd is None:
            self.fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        body = msgpack.packb([syncable_state_to_map(s) for s in states], use_bin_type=True)
        os.write(self.fd, _LEN.pack(len(body)) + body)
        self.records += 1
        self.journal_bytes += _LEN.size + len(body)

    def compact(self, states: list[SyncableState]) -> None:
        save_snapshot(self.snapshot_path, [syncable_state_to_map(s) for s in states])
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.journal_path, 0)
        self.records = self.journal_bytes = 0
        self.snapshot_bytes = self.snapshot_path.stat().st_size


def _decode(raw: object) -> list[SyncableState]:
    if not isinstance(raw, list):
        return []
    out = []
    for item in raw:
        with contextlib.suppress(ProtocolError):
            out.append(map_to_syncable_state(item))
    return out
