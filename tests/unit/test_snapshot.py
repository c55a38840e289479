"""Unit tests of actors.storage.snapshot: atomic replace, CRC, clear errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from actors.storage import snapshot
from actors.storage.snapshot import (
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
    load_snapshot,
    save_snapshot,
)

OLD = {"states": [["kv", "k", "old", 1, "a", None]], "n": 1}
NEW = {"states": [["kv", "k", "new", 2, "a", None]], "n": 2, "bytes": b"\x00\xff"}


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_saved_snapshot_loads_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "snap.bin"
    save_snapshot(path, NEW)
    assert load_snapshot(path) == NEW
    assert temporaries(tmp_path) == []


def test_a_missing_snapshot_loads_as_none(tmp_path: Path) -> None:
    assert load_snapshot(tmp_path / "absent.bin") is None


def test_saving_again_replaces_the_previous_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "snap.bin"
    save_snapshot(path, OLD)
    save_snapshot(path, NEW)
    assert load_snapshot(path) == NEW


def test_a_crash_between_write_and_replace_leaves_the_old_file_valid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "snap.bin"
    save_snapshot(path, OLD)

    def crash(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(snapshot.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_snapshot(path, NEW)
    assert load_snapshot(path) == OLD
    assert temporaries(tmp_path) == []


def test_a_temporary_left_by_a_hard_crash_is_ignored_and_then_cleaned(tmp_path: Path) -> None:
    path = tmp_path / "snap.bin"
    save_snapshot(path, OLD)
    leftover = tmp_path / ".snap.bin.abc123.tmp"
    leftover.write_bytes(encode_snapshot(NEW)[:10])  # torn write of a killed process
    assert load_snapshot(path) == OLD
    save_snapshot(path, NEW)
    assert not leftover.exists() and load_snapshot(path) == NEW


def test_an_unencodable_object_leaves_the_old_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "snap.bin"
    save_snapshot(path, OLD)
    with pytest.raises(TypeError):
        save_snapshot(path, {"x": object()})
    assert load_snapshot(path) == OLD and temporaries(tmp_path) == []


def corrupt(data: bytes, how: str) -> bytes:
    match how:
        case "truncated_header":
            return data[:10]
        case "truncated":
            return data[:-3]
        case "trailing_data":
            return data + b"x"
        case "bad_magic":
            return b"NOTASNAP" + data[8:]
        case "bad_version":
            return data[:8] + b"\x09" + data[9:]
        case "bad_crc":
            return data[:-1] + bytes([data[-1] ^ 0x01])
    raise AssertionError(how)


@pytest.mark.parametrize(("how", "reason"), [
    ("truncated_header", "truncated"), ("truncated", "truncated"),
    ("trailing_data", "trailing_data"), ("bad_magic", "bad_magic"),
    ("bad_version", "bad_version"), ("bad_crc", "bad_crc"),
])
def test_a_corrupt_file_raises_snapshot_error_naming_file_and_reason(
        tmp_path: Path, how: str, reason: str) -> None:
    path = tmp_path / "snap.bin"
    path.write_bytes(corrupt(encode_snapshot(NEW), how))
    with pytest.raises(SnapshotError) as info:
        load_snapshot(path)
    assert info.value.reason == reason and info.value.path == str(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_a_body_with_a_valid_crc_but_bad_msgpack_is_reported() -> None:
    import struct
    import zlib

    body = b"\xc1"  # a msgpack byte that is never valid
    data = struct.pack(">8sBQI", snapshot.MAGIC, 1, len(body), zlib.crc32(body)) + body
    with pytest.raises(SnapshotError, match="bad_body"):
        decode_snapshot(data)


def test_an_unreadable_path_raises_snapshot_error(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="unreadable"):
        load_snapshot(tmp_path)  # a directory


def test_the_snapshot_file_is_replaced_not_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "snap.bin"
    save_snapshot(path, OLD)
    before = os.stat(path).st_ino
    save_snapshot(path, NEW)
    assert os.stat(path).st_ino != before
