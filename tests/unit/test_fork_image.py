"""What the supervisor imports before the zygote forks, every actor carries: keep
supervisor-only packages (status's psutil, /metrics' prometheus_client) out of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUPERVISOR_ONLY = ("psutil", "prometheus_client", "http.server")


def test_supervisor_only_packages_stay_out_of_the_forked_image() -> None:
    probe = ("import sys, supervisor\n"
             "from actors.node import plan\n"
             "for target in [*plan.CORE_ACTORS.values(), *plan.BUILTIN_CLASSES.values()]:\n"
             "    plan.load_symbol(target)\n"
             f"print(sorted(set({SUPERVISOR_ONLY!r}) & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"
