"""Docker HEALTHCHECK: is this container's node healthy?

`python healthcheck.py CONFIG`: with `[local] http` configured, GET /health there
(200: every actor ready and the node a member; 503 otherwise); without it, ask the
control socket for `ping`. Exit 0 when healthy, 1 otherwise, with one line saying why.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

import zmq

from actors.node.config import ConfigError, http_address, load_config
from transport.rpc import RpcError, call

TIMEOUT_S = 3.0


def health_url(http: str) -> str:
    """The URL of /health for a `[local] http` value; a wildcard bind is asked on loopback."""
    host, port = http_address(http)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/health"


def check(config_path: str) -> str | None:
    """None when healthy, else why not."""
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        return str(exc)
    if cfg.local.http is not None:
        try:
            with urllib.request.urlopen(health_url(cfg.local.http), timeout=TIMEOUT_S):
                return None
        except urllib.error.HTTPError as exc:
            return f"/health answered {exc.code}: {exc.read(500).decode(errors='replace')}"
        except OSError as exc:
            return f"/health: {exc}"
    ctx = zmq.Context()
    try:
        call(ctx, cfg.local.control, "ping", None, TIMEOUT_S)
        return None
    except RpcError as exc:
        return f"control socket: {exc}"
    finally:
        ctx.destroy(linger=0)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: healthcheck.py CONFIG", file=sys.stderr)
        return 2
    problem = check(argv[0])
    if problem is not None:
        print(f"unhealthy: {problem}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
