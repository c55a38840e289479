"""The 64-bit hash behind digests and placement: BLAKE2b, the same in every process.

It comes from CPython's own `_blake2` module rather than through `hashlib`, which
is the same function (hashlib never hands BLAKE2 to OpenSSL) but loads OpenSSL's
libcrypto on import: 3 MiB of a library the supervisor touched and never used.
"""

from __future__ import annotations

try:
    from _blake2 import blake2b
except ImportError:  # an interpreter built without its own BLAKE2
    from hashlib import blake2b


def h64(data: bytes) -> int:
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")
