"""The CLI's exit codes and the one error type its commands raise."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAIL = 1  # the node is not running, refused the request, or a value cannot be sent
EXIT_USAGE = 2  # bad arguments or a bad config file
EXIT_TIMEOUT = 3  # `events --timeout S` ended before any event (or before --count events)


class CliError(Exception):
    """A user-facing failure: `main` prints it on one line and exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code
