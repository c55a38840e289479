"""What the `[haproxy]` section names: the Runtime API address and the servers.

Server references go into Runtime API command lines, so they are held to
HAProxy's own name characters: a ``;`` or a space in a name would start
another command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# HAProxy accepts these characters in proxy and server names (cfgparse invalid_char).
_NAME = r"[A-Za-z0-9_.:\-]+"
_SERVER_RE = re.compile(rf"^(?P<backend>{_NAME})/(?P<server>{_NAME})$")
_TCP_RE = re.compile(r"^tcp://(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):(?P<port>\d{1,5})$")
UNIX_PATH_MAX = 107  # sun_path on Linux


@dataclass(frozen=True, slots=True, order=True)
class ServerRef:
    """One server of one HAProxy backend, as `set server` names it."""

    backend: str
    server: str

    def __str__(self) -> str:
        return f"{self.backend}/{self.server}"


@dataclass(frozen=True, slots=True)
class RuntimeAddress:
    """Where the Runtime API listens: a Unix socket path, or a TCP host and port."""

    path: str | None = None
    host: str | None = None
    port: int = 0


def parse_server_ref(value: str) -> ServerRef:
    """"backend/server" -> ServerRef. Raises: ValueError with a short reason."""
    match = _SERVER_RE.match(value)
    if match is None:
        raise ValueError('must be "backend/server" (letters, digits, _ . : -)')
    return ServerRef(match["backend"], match["server"])


def parse_runtime_api(value: str) -> RuntimeAddress:
    """"unix:///path" or "tcp://host:port". Raises: ValueError with a short reason."""
    if value.startswith("unix://"):
        path = value[len("unix://"):]
        if not path.startswith("/"):
            raise ValueError("unix:// needs an absolute path, like unix:///run/haproxy/admin.sock")
        if len(path.encode()) > UNIX_PATH_MAX:
            raise ValueError(f"the socket path is longer than {UNIX_PATH_MAX} bytes")
        return RuntimeAddress(path=path)
    match = _TCP_RE.match(value)
    if match is None:
        raise ValueError('must be "unix:///path/to/admin.sock" or "tcp://host:port"')
    port = int(match["port"])
    if not 0 < port < 65536:
        raise ValueError("port must be between 1 and 65535")
    return RuntimeAddress(host=match["host"].removeprefix("[").removesuffix("]"), port=port)
