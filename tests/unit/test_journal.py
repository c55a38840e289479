"""StateJournal: replay, torn records, size-based compaction, and kill -9 at any moment."""

from __future__ import annotations

import os
import random
import signal
import struct
import time
from pathlib import Path

from actors.storage.journal import StateJournal
from transport.protocol import SyncableState, make_syncable_state, state_key

ACK = struct.Struct(">I")


def st(key: str, version: int, value: object = "v") -> SyncableState:
    return make_syncable_state("kv", key, value, version, "n1")


def test_snapshot_then_journal_replay_in_order(tmp_path: Path) -> None:
    journal = StateJournal(tmp_path)
    journal.append([st("a", 1)])
    journal.compact([st("a", 1)])
    journal.append([st("a", 2), st("b", 3)])
    again = StateJournal(tmp_path)
    assert again.load() == [st("a", 1), st("a", 2), st("b", 3)]
    assert again.records == 1


def test_a_torn_final_record_is_ignored(tmp_path: Path) -> None:
    journal = StateJournal(tmp_path)
    journal.append([st("a", 1)])
    journal.append([st("b", 2)])
    data = journal.journal_path.read_bytes()
    journal.journal_path.write_bytes(data[:-3])  # a crash in the middle of the last write
    assert StateJournal(tmp_path).load() == [st("a", 1)]


def test_compaction_is_due_when_the_journal_outgrows_the_snapshot(tmp_path: Path) -> None:
    journal = StateJournal(tmp_path, min_compact_bytes=100)
    table = {f"k{i}": st(f"k{i}", i + 1, "x" * 50) for i in range(40)}
    journal.compact(list(table.values()))  # a snapshot of about 3 KiB
    writes = 0
    while not journal.compaction_due:
        journal.append([st("k0", 100 + writes, "x" * 50)])
        writes += 1
    assert writes > 30  # about as many bytes as the snapshot: O(1) amortised per write
    journal.compact(list(table.values()))
    assert not journal.compaction_due and journal.journal_bytes == 0


def _writer(folder: Path, ack_fd: int, start: int) -> None:
    """A provider's write loop: journal, compact when due, then acknowledge."""
    journal = StateJournal(folder, min_compact_bytes=256)
    held = {state_key(s): s for s in journal.load()}
    i = start
    while True:
        state = st(f"k{i % 17}", i)
        journal.append([state])
        held[state_key(state)] = state
        if journal.compaction_due:
            journal.compact(list(held.values()))
        os.write(ack_fd, ACK.pack(i))
        i += 1


def test_a_compaction_never_loses_an_acknowledged_write_under_kill_9(tmp_path: Path) -> None:
    rng = random.Random(7)
    acked: dict[str, int] = {}
    version, rounds = 1, 0
    while version <= 1000 or rounds < 25:  # many compactions, however slow the machine
        rounds += 1
        assert rounds < 2000, "the writer made no progress"
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            try:
                _writer(tmp_path, write_fd, version)
            finally:
                os._exit(1)
        os.close(write_fd)
        time.sleep(rng.uniform(0.005, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(read_fd, "rb") as pipe:
            data = pipe.read()
        for (i,) in ACK.iter_unpack(data[:len(data) - len(data) % ACK.size]):
            acked[f"k{i % 17}"] = i
            version = max(version, i + 1)
        held: dict[str, int] = {}
        for s in StateJournal(tmp_path).load():
            held[s.key] = max(held.get(s.key, 0), s.version)
        lost = {k: v for k, v in acked.items() if held.get(k, 0) < v}
        assert not lost, f"acknowledged writes missing after kill -9: {lost}"
