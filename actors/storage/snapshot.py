"""Atomic, checksummed snapshot files for durable state.

Theory of operation: a snapshot file is

    MAGIC (8 bytes) | format version (1 byte) | body length (8 bytes, big-endian)
    | CRC-32 of the body (4 bytes) | body (msgpack)

`save_snapshot` writes a temporary file in the same folder, fsyncs it, renames
it over the target with `os.replace` (atomic on POSIX) and fsyncs the folder,
so after a crash at any instant the target is either the complete old file or
the complete new one. A crash may leave a temporary file behind; it is never
read, and the next save removes it.

`load_snapshot` returns None for a missing file and raises `SnapshotError` for
anything else that is wrong (torn, truncated, foreign, bad CRC, bad msgpack):
a caller must not silently start empty on corrupt data.

Not pure (file I/O), but self-contained: no clock, no zmq, no logging.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import msgpack

MAGIC = b"LBCSNAP\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">8sBQI")  # magic, format version, body length, crc32
_TMP_SUFFIX = ".tmp"


class SnapshotError(Exception):
    """A snapshot file that exists but cannot be read back.

    Attributes:
        path: the file.
        reason: a constant slug (bad_magic, bad_version, truncated, trailing_data,
            bad_crc, bad_body, unreadable).
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"corrupt snapshot file {self.path} ({reason})")


def encode_snapshot(obj: Any) -> bytes:
    """Header plus msgpack body. Raises: TypeError/ValueError if `obj` is not msgpack-native."""
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    return _HEADER.pack(MAGIC, FORMAT_VERSION, len(body), zlib.crc32(body)) + body


def decode_snapshot(data: bytes, path: str | os.PathLike[str] = "<bytes>") -> Any:
    """Inverse of encode_snapshot. Raises: SnapshotError (only)."""
    if len(data) < _HEADER.size:
        raise SnapshotError(path, "truncated")
    magic, version, length, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotError(path, "bad_magic")
    if version != FORMAT_VERSION:
        raise SnapshotError(path, "bad_version")
    body = data[_HEADER.size:]
    if len(body) < length:
        raise SnapshotError(path, "truncated")
    if len(body) > length:
        raise SnapshotError(path, "trailing_data")
    if zlib.crc32(body) != crc:
        raise SnapshotError(path, "bad_crc")
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception:  # any msgpack failure: the CRC matched, so a writer bug
        raise SnapshotError(path, "bad_body") from None


def save_snapshot(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically replace `path` with a snapshot of `obj` (msgpack-native data).

    Raises: OSError from the file system; TypeError/ValueError for a value
    msgpack cannot encode (the old file is then untouched).
    """
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    writer = SnapshotWriter(path)
    try:
        writer.write(body)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


class SnapshotWriter:
    """One snapshot file written in pieces (the body's msgpack bytes, in order), so a
    caller can spread a large one over many turns of its loop. Nothing is visible at
    `path` until `commit` (header filled in, fsync, atomic rename); `abort`, or a crash
    at any point, leaves the old file as it was. Raises: OSError from the file system."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.target = Path(path)
        _remove_stale_temporaries(self.target)
        fd, self._tmp_name = tempfile.mkstemp(dir=self.target.parent,
                                              prefix=f".{self.target.name}.",
                                              suffix=_TMP_SUFFIX)
        self._file = os.fdopen(fd, "wb")
        self._file.write(bytes(_HEADER.size))  # filled in by commit
        self._length, self._crc = 0, 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._length += len(data)
        self._crc = zlib.crc32(data, self._crc)

    def commit(self) -> None:
        self._file.seek(0)
        self._file.write(_HEADER.pack(MAGIC, FORMAT_VERSION, self._length, self._crc))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp_name, self.target)
        _fsync_dir(self.target.parent)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp_name)


def load_snapshot(path: str | os.PathLike[str]) -> Any | None:
    """The object saved at `path`, or None if there is no file.

    Raises: SnapshotError if the file exists but is unreadable or corrupt.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        raise SnapshotError(path, "unreadable") from None
    return decode_snapshot(data, path)


def _remove_stale_temporaries(target: Path) -> None:
    """Temporaries left by a crash between write and rename (never read back)."""
    for stale in target.parent.glob(f".{target.name}.*{_TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; some file systems refuse a dir fsync."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
