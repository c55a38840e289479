"""die_with_parent: the kernel's parent-death signal really is set in a forked child."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

import pytest

from actors.node.zygote import die_with_parent

_PR_GET_PDEATHSIG = 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_forked_child_gets_the_parent_death_signal() -> None:
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: exit with the signal the kernel holds for it
        code = 99
        try:
            die_with_parent(parent, signal.SIGTERM)
            held = ctypes.c_int(0)
            ctypes.CDLL(None).prctl(_PR_GET_PDEATHSIG, ctypes.byref(held), 0, 0, 0)
            code = held.value
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == signal.SIGTERM
