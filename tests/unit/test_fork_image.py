"""What the supervisor imports before the zygote forks, every actor carries: keep
supervisor-only packages (status's psutil, /metrics' prometheus_client) out of it,
and modules no process needs that cost memory in each node: asyncio (with ssl and
socket, ~9 MiB; pulled in by loguru, zmq.utils.monitor and zmq.auth.thread),
ctypes.util (subprocess, tempfile, shutil, bz2, lzma), secrets and hashlib (OpenSSL's
libcrypto: the supervisor touched 3 MiB of it), and unicodedata (the "idna" codec, which
a str host given to getaddrinfo loads)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUPERVISOR_ONLY = ("psutil", "prometheus_client", "http.server")
HEAVY = ("asyncio", "loguru", "ctypes.util", "secrets", "hashlib", "_hashlib", "unicodedata")


def test_supervisor_only_and_heavy_packages_stay_out_of_the_forked_image() -> None:
    probe = ("import sys, supervisor\n"
             "from actors.node import plan\n"
             "from transport.sockets import listen\n"
             "listen('tcp://127.0.0.1:0').close()\n"
             "for target in [*plan.CORE_ACTORS.values(), *plan.BUILTIN_CLASSES.values()]:\n"
             "    plan.load_symbol(target)\n"
             f"print(sorted(set({SUPERVISOR_ONLY + HEAVY!r}) & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"
