"""`lbcluster`: run a node, watch it, and talk to it through its control socket.

Exit codes: 0 success; 1 the node is not running or refused the request;
2 a bad config or bad arguments. `--json` output is one JSON document (for
`events`, one per line) and is the stable interface for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import zmq

from actors.node.config import Config, ConfigError, load_config
from transport.codec import DecodeError, unpack_untrusted
from transport.rpc import RpcError, call
from transport.security import secure_subscriber
from transport.sockets import make_socket, unix_socket_listening

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
COLOURS = {"node.joined": 32, "node.alive": 32, "node.suspect": 33, "node.failed": 31,
           "node.left": 35, "node.updated": 36, "state.changed": 34, "actor.started": 90,
           "actor.exited": 33, "actor.restarted": 36, "actor.gave_up": 31}


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code


def _config(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def request(cfg: Config, op: str, args: dict[str, Any] | None = None,
            timeout_s: float = 5.0) -> Any:
    path = cfg.local.control[len("ipc://"):]
    if not unix_socket_listening(path):
        raise CliError(f"node is not running (nothing listens on {cfg.local.control})")
    ctx = zmq.Context()
    try:
        return call(ctx, cfg.local.control, op, args, timeout_s)
    except RpcError as exc:
        raise CliError(f"{op}: {exc.message}") from None
    finally:
        ctx.destroy(linger=0)


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, sort_keys=True, default=_jsonable))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    return str(obj)


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=_jsonable)
    return str(value)


# -- commands ---------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from supervisor import run_node

    return run_node(args.config)


def cmd_members(args: argparse.Namespace) -> int:
    cfg = _config(args.config)
    try:
        members = request(cfg, "members")
    except CliError as exc:
        if "no membership actor" not in str(exc):
            raise
        members = request(cfg, "snapshot")["members"]
    if args.json:
        _print_json({"members": members})
    else:
        print(_table(members, ("node_id", "address", "status", "incarnation", "metadata")))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _config(args.config)
    status = request(cfg, "status")
    if args.json:
        _print_json(status)
        return EXIT_OK
    print(f"node {status['node_id']}  cluster {status['cluster']}  gossip {status['gossip']}"
          f"  uptime {status['uptime_s']:.0f} s")
    rows = [{**a, "rss_mb": None if a.get("rss_bytes") is None else
             round(a["rss_bytes"] / 2**20, 1)} for a in status["actors"]]
    print(_table(rows, ("name", "pid", "ready", "restarts", "cpu_percent", "rss_mb")))
    return EXIT_OK


def cmd_state(args: argparse.Namespace) -> int:
    cfg = _config(args.config)
    op = f"provider.{args.type}.state" if args.type else "state"
    states = request(cfg, op)
    if args.json:
        _print_json({"states": states})
    else:
        print(_table(states, ("state_type", "key", "value", "version", "source_node")))
    return EXIT_OK


def cmd_kv(args: argparse.Namespace) -> int:
    cfg = _config(args.config)
    match args.kv_command:
        case "set":
            result = request(cfg, "kv.set", {"key": args.key, "value": _parse_value(args.value)})
        case "get":
            result = request(cfg, "kv.get", {"key": args.key})
        case _:
            result = request(cfg, "kv.del", {"key": args.key})
    if args.json:
        _print_json(result)
    elif args.kv_command == "get":
        if not result.get("found"):
            print(f"{args.key}: not found", file=sys.stderr)
            return EXIT_FAIL
        print(json.dumps(result.get("value")))
    else:
        print(f"{args.kv_command} {args.key} (version {result.get('version')})")
    return EXIT_OK


def _parse_value(text: str) -> Any:
    """JSON when the text is valid JSON (numbers, objects, ...), else the plain string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def cmd_leave(args: argparse.Namespace) -> int:
    cfg = _config(args.config)
    result = request(cfg, "leave", timeout_s=10.0)
    if args.json:
        _print_json(result)
    else:
        print("left the cluster; the node is stopping")
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    cfg = _config(args.config)
    ctx = zmq.Context()
    sub = make_socket(ctx, zmq.SUB, hwm=100000)
    try:
        for prefix in args.type or [""]:
            sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        secure_subscriber(sub, cfg)
        sub.connect(cfg.local.events)
        after = -1
        if args.snapshot:
            time.sleep(0.2)  # let the subscription reach the node before the snapshot
            snap = request(cfg, "snapshot")
            after = snap["seq"]
            if args.json:
                _print_json({"snapshot": snap})
            else:
                print(f"snapshot at seq {after}: {len(snap['members'])} members")
        return _stream(sub, args, after, _printer(args.json))
    finally:
        sub.close(linger=0)
        ctx.term()


def _stream(sub: zmq.Socket, args: argparse.Namespace, after: int,
            show: Callable[[dict[str, Any]], None]) -> int:
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen = 0
    while args.count is None or seen < args.count:
        wait_ms = 1000 if deadline is None else int(max(0.0, deadline - time.monotonic()) * 1000)
        if deadline is not None and wait_ms == 0:
            return EXIT_OK if args.count is None else EXIT_FAIL
        if not sub.poll(wait_ms, zmq.POLLIN):
            continue
        frames = sub.recv_multipart()
        try:
            event = unpack_untrusted(frames[-1])
        except DecodeError:
            continue
        if not isinstance(event, dict) or event.get("seq", 0) <= after:
            continue
        show(event)
        seen += 1
    return EXIT_OK


def _printer(as_json: bool) -> Callable[[dict[str, Any]], None]:
    tty = sys.stdout.isatty()

    def show(event: dict[str, Any]) -> None:
        if as_json:
            _print_json(event)
        else:
            print(format_event(event, tty))
        sys.stdout.flush()

    return show


def format_event(event: dict[str, Any], colour: bool) -> str:
    kind = str(event.get("type"))
    stamp = time.strftime("%H:%M:%S", time.localtime(event.get("timestamp") or 0))
    text = f"{kind:<16}"
    if colour:
        text = f"\033[{COLOURS.get(kind, 0)}m{text}\033[0m"
    data = dict(event.get("data") or {})
    if isinstance(data.get("metadata"), dict):  # lbc.* keys are the library's own plumbing
        data["metadata"] = {k: v for k, v in data["metadata"].items()
                            if not str(k).startswith("lbc.")}
    detail = " ".join(f"{k}={_cell(v)}" for k, v in sorted(data.items())
                      if k not in ("node_id",) and v not in (None, {}, []))
    return (f"{stamp} [{event.get('source')} #{event.get('seq')}] {text} "
            f"{event.get('node_id')}  {detail}")


def cmd_keygen(args: argparse.Namespace) -> int:
    if args.dir:
        from transport.security import write_keypair

        if not args.node_id:
            raise CliError("keygen: --dir needs --node-id (key files are named by node id)",
                           EXIT_USAGE)
        public_file, secret_file = write_keypair(Path(args.dir), args.node_id)
        doc = {"public_file": str(public_file), "secret_file": str(secret_file)}
        if args.json:
            _print_json(doc)
        else:
            print(f"wrote {public_file} (copy it into every node's allowed_keys_dir)\n"
                  f"wrote {secret_file} (keep it on this node only, mode 0600)")
        return EXIT_OK
    public, secret = zmq.curve_keypair()
    if args.json:
        _print_json({"public": public.decode(), "secret": secret.decode()})
    else:
        print(f"public = {public.decode()}\nsecret = {secret.decode()}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from actors.cli.demo import run_demo

    return run_demo(args.nodes, args.duration)


# -- parser -----------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lbcluster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def node_cmd(name: str, handler: Callable[[argparse.Namespace], int], helptext: str,
                 json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=helptext)
        p.add_argument("-c", "--config", required=True, help="the node's config file (TOML)")
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(handler=handler)
        return p

    node_cmd("run", cmd_run, "run one node in the foreground", json_flag=False)
    node_cmd("members", cmd_members, "list every known member")
    node_cmd("status", cmd_status, "actors, pids, restarts, cpu and memory")
    node_cmd("state", cmd_state, "the replicated state this node holds").add_argument(
        "--type", help="only this state type (provider)")
    node_cmd("leave", cmd_leave, "leave the cluster gracefully; the node then stops")
    events = node_cmd("events", cmd_events, "subscribe and print cluster events")
    events.add_argument("--type", action="append", help="event type prefix (repeatable)")
    events.add_argument("--count", type=int, help="stop after N events")
    events.add_argument("--timeout", type=float, help="stop after S seconds")
    events.add_argument("--snapshot", action="store_true",
                        help="print the current members and actors first (Clone pattern)")
    kv = sub.add_parser("kv", help="the built-in replicated key/value store")
    kv_sub = kv.add_subparsers(dest="kv_command", required=True)
    for name, helptext in (("set", "write a key (VALUE is JSON, or else a string)"),
                           ("get", "read a key"), ("del", "delete a key")):
        p = kv_sub.add_parser(name, help=helptext)
        p.add_argument("key")
        if name == "set":
            p.add_argument("value")
        p.add_argument("-c", "--config", required=True)
        p.add_argument("--json", action="store_true")
        p.set_defaults(handler=cmd_kv)
    demo = sub.add_parser("demo", help="a local cluster on 127.0.0.1, printing live events")
    demo.add_argument("--nodes", type=int, default=3)
    demo.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    demo.set_defaults(handler=cmd_demo)
    keygen = sub.add_parser("keygen", help="print a CURVE key pair for [security]")
    keygen.add_argument("--dir", help="write ZeroMQ key files into this folder")
    keygen.add_argument("--node-id", help="the node the key pair is for (names the files)")
    keygen.add_argument("--json", action="store_true")
    keygen.set_defaults(handler=cmd_keygen)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except CliError as exc:
        print(f"lbcluster: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
