"""The supervisor lifts a low soft descriptor limit (inherited by every actor)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _lower_soft_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))


def test_a_soft_limit_of_256_is_raised_toward_the_hard_limit() -> None:
    code = ("import resource, supervisor; supervisor._raise_fd_limit(); "
            "print(*resource.getrlimit(resource.RLIMIT_NOFILE))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         preexec_fn=_lower_soft_limit, timeout=60, check=True).stdout.split()
    soft, hard = int(out[0]), int(out[1])
    assert soft == (65_536 if hard == resource.RLIM_INFINITY else min(65_536, hard))
    assert soft > 256
