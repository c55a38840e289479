"""A self-pipe that wakes a poll loop: for signals, and for other threads.

pyzmq resumes polling after a Python signal handler runs, so a loop that
must notice SIGTERM or SIGHUP promptly watches the read end of a pipe that
`signal.set_wakeup_fd` writes to. The SDK's host thread uses the same pipe
for changes queued by the user's threads.
"""

from __future__ import annotations

import contextlib
import os
import signal


class WakeupPipe:
    """Non-blocking pipe; poll `fd`, then `drain()`. Both ends close with `close()`."""

    def __init__(self, signals: bool = False) -> None:
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._write_fd, False)
        if signals:
            signal.set_wakeup_fd(self._write_fd)

    def wake(self) -> None:
        """Safe from any thread; a full pipe already holds a wake-up, so that is fine."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write_fd, b"x")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.fd, 4096):
                pass

    def fds(self) -> tuple[int, int]:
        """Both ends (to close in a forked child)."""
        return self.fd, self._write_fd

    def close(self) -> None:
        for fd in self.fds():
            with contextlib.suppress(OSError):
                os.close(fd)
