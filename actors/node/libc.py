"""C library functions that Python does not wrap (prctl, malloc_trim).

Looked up in the symbols the process already has loaded (`CDLL(None)`), not with
ctypes.util.find_library: that imports subprocess, tempfile, shutil, bz2 and lzma,
about 0.9 MiB that every process of a node would carry. Callers look up once,
before any fork: each lookup in a new actor copied ~160 KiB of shared pages.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def function(name: str, argtypes: list[type], restype: type = ctypes.c_int
             ) -> Callable[..., int] | None:
    """The C function `name` with its signature set, or None where it does not exist."""
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = argtypes, restype
    return fn
