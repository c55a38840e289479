"""`lbcluster`: run a node, watch it, and talk to it through its control socket.

Every command that talks to a node goes through the SDK's `NodeClient`
(actors/sdk/client.py); this module only parses arguments and renders
(actors/cli/render.py). Each command is one `cmd_*` function and one row of
COMMANDS; a new command is a new row.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from actors.cli import render
from actors.cli.errors import EXIT_FAIL, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, CliError
from actors.cli.values import parse_json_args, read_value
from actors.node.config import ConfigError
from actors.sdk.client import NodeClient
from transport.rpc import RpcError

CONFIG_ENV = "LBCLUSTER_CONFIG"
RETRY_S = 1.0  # how long a command waits for a node that is (re)starting
GRACE_S = 5.0  # default of `events --grace`

EPILOG = f"""\
examples:
  lbcluster demo                                 a 3-node cluster on 127.0.0.1
  lbcluster run -c configs/node-a.toml           run a node in the foreground
  export {CONFIG_ENV}=configs/node-a.toml    then -c may be left out
  lbcluster members                              who is in the cluster
  lbcluster kv set weight '{{"a": 3}}'             write a key (JSON, or else a string)
  lbcluster kv set cert @server.pem              ... from a file (- reads stdin)
  lbcluster events --snapshot --type node.       watch members come and go
  lbcluster call kv.get '{{"key": "weight"}}'      any control operation

exit codes: {EXIT_OK} success; {EXIT_FAIL} the node is not running, stopped, refused the
request, or a value cannot be encoded; {EXIT_USAGE} bad arguments or a bad config file;
{EXIT_TIMEOUT} `events --timeout` ended before any event (or before --count events).
--json output is strict JSON, one document (for `events`, one per line), and is the
stable interface for scripts.
"""


@dataclass(frozen=True)
class Command:
    """One subcommand: its handler, one-line help, and the arguments it adds."""

    name: str
    handler: Callable[[argparse.Namespace], int]
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    node: bool = True  # talks to a node: gets -c/--config and --json
    epilog: str = ""


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[NodeClient]:
    try:
        client = NodeClient(args.config, retry_s=RETRY_S)
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    try:
        yield client
    finally:
        client.close()


def _show(args: argparse.Namespace, doc: Any, text: Callable[[], str]) -> int:
    """`doc` as JSON with --json, else the text rendering."""
    print(render.to_json(doc) if args.json else text(), flush=True)
    return EXIT_OK


# -- commands ---------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from supervisor import run_node

    return run_node(args.config)


def cmd_members(args: argparse.Namespace) -> int:
    with _client(args) as node:
        members = node.members()
    return _show(args, {"members": members},
                 lambda: render.table([render.public_metadata(m) for m in members],
                                      render.MEMBER_COLUMNS))


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as node:
        status = node.status()
    return _show(args, status, lambda: render.status_header(status) + "\n" + render.table(
        render.actor_rows(status.get("actors", [])), render.ACTOR_COLUMNS))


def cmd_state(args: argparse.Namespace) -> int:
    with _client(args) as node:
        states = node.state(args.type)
    return _show(args, {"states": states}, lambda: render.table(states, render.STATE_COLUMNS))


def cmd_kv(args: argparse.Namespace) -> int:
    call_args: dict[str, Any] = {"key": args.key}
    if args.kv_command == "set":
        call_args["value"] = read_value(args.value, sys.stdin)
    with _client(args) as node:
        result = node.call(f"kv.{args.kv_command}", call_args)
    if args.json:
        render.print_json(result)
        return EXIT_OK
    if args.kv_command == "get":
        if not result.get("found"):
            raise CliError(f"{args.key}: not found")
        print(render.to_json(result.get("value")))
    else:
        print(f"{args.kv_command} {args.key} (version {result.get('version')})")
    return EXIT_OK


def cmd_call(args: argparse.Namespace) -> int:
    call_args = parse_json_args(args.json_args) if args.json_args is not None else {}
    with _client(args) as node:
        result = node.call(args.op, call_args, timeout_s=args.timeout)
    print(render.to_json(result, indent=None if args.json else 2))
    return EXIT_OK


def cmd_leave(args: argparse.Namespace) -> int:
    with _client(args) as node:
        result = node.call("leave", timeout_s=10.0)
    return _show(args, result, lambda: "left the cluster; the node is stopping")


def cmd_events(args: argparse.Namespace) -> int:
    colour = sys.stdout.isatty() and not args.json
    seen = 0
    with _client(args) as node, closing(node.events(
            tuple(args.type or [""]), snapshot=args.snapshot, timeout_s=args.timeout,
            give_up_s=args.grace)) as stream:
        for item in stream:
            if args.snapshot and item.get("type") == "snapshot":
                print(render.to_json(render.snapshot_document(item)) if args.json
                      else render.format_snapshot(item, colour), flush=True)
                continue
            print(render.to_json(item) if args.json else render.format_event(item, colour),
                  flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                return EXIT_OK
    if args.timeout is not None and (seen == 0 or args.count is not None):
        wanted = "no event" if seen == 0 else f"{seen} of {args.count} events"
        print(f"lbcluster: events: {wanted} within {args.timeout:g} s", file=sys.stderr)
        return EXIT_TIMEOUT
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    import zmq

    from transport.security import write_keypair

    if not args.dir:
        public, secret = (k.decode() for k in zmq.curve_keypair())
        return _show(args, {"public": public, "secret": secret},
                     lambda: f"public = {public}\nsecret = {secret}")
    if not args.node_id:
        raise CliError("keygen: --dir needs --node-id (key files are named by node id)",
                       EXIT_USAGE)
    public_file, secret_file = write_keypair(Path(args.dir), args.node_id)
    return _show(args, {"public_file": str(public_file), "secret_file": str(secret_file)},
                 lambda: f"wrote {public_file} (copy it into every node's allowed_keys_dir)\n"
                         f"wrote {secret_file} (keep it on this node only, mode 0600)")


def cmd_demo(args: argparse.Namespace) -> int:
    from actors.cli.demo import run_demo

    return run_demo(args.nodes, args.duration)


# -- arguments --------------------------------------------------------------------
def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _state_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--type", metavar="T", help="only this state type (a provider's type)")


def _events_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--type", action="append", metavar="PREFIX",
                   help="only events whose type starts with PREFIX (repeatable), e.g. node.")
    p.add_argument("--count", type=_positive_int, metavar="N", help="exit 0 after N events")
    p.add_argument("--timeout", type=float, metavar="S",
                   help=f"stop after S seconds; exit {EXIT_TIMEOUT} if no event came "
                        "(or fewer than --count)")
    p.add_argument("--snapshot", action="store_true",
                   help="first print the current members and actors, then only newer "
                        "events (again after a node restart)")
    p.add_argument("--grace", type=float, default=GRACE_S, metavar="S",
                   help=f"a node that stopped may come back within S seconds (default "
                        f"{GRACE_S:g}); after that exit {EXIT_FAIL}")


def _kv_args(kv: argparse.ArgumentParser) -> None:
    sub = kv.add_subparsers(dest="kv_command", required=True, metavar="{set,get,del}")
    for name, helptext in (("set", "write a key"), ("get", "read a key (exit 1 if unset)"),
                           ("del", "delete a key")):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("key", metavar="KEY", help="the key")
        if name == "set":
            p.add_argument("value", metavar="VALUE",
                           help="JSON (number, object, quoted string...) or else a plain "
                                "string; - reads stdin, @FILE reads a file")
        _node_options(p)


def _call_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("op", metavar="OP",
                   help="the operation: status, snapshot, members, state, kv.get, "
                        "provider.TYPE.COMMAND, ...")
    p.add_argument("json_args", nargs="?", metavar="JSON_ARGS",
                   help="its arguments as a JSON object (default {})")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="wait S seconds for the reply (default 5)")


def cmd_check_provider(args: argparse.Namespace) -> int:
    from actors.providers.contract import (
        ContractError,
        check_provider_class,
        load_provider_class,
    )

    options = parse_json_args(args.options) if args.options is not None else {}
    try:
        cls = load_provider_class(args.target)
        validate = getattr(cls, "validate_options", None)
        if validate is not None:
            validate(dict(options))
        state_type = check_provider_class(cls, options)
    except ContractError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except (ValueError, TypeError) as exc:
        raise CliError(f"{args.target}: {exc}", EXIT_USAGE) from None
    print(f"{args.target} keeps the provider contract (state type {state_type!r})")
    return EXIT_OK


def _check_provider_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="MODULE:CLASS",
                   help="the provider class, importable as for [[providers]] module")
    p.add_argument("--options", metavar="JSON",
                   help="its options as a JSON object, as in [[providers]] options")


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=3, metavar="N",
                   help="how many nodes (default 3)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="stop after S seconds (default: at Ctrl-C)")


def _keygen_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", help="write ZeroMQ key files into this folder instead")
    p.add_argument("--node-id", help="the node the key pair is for (names the files)")
    p.add_argument("--json", action="store_true", help="print one JSON document")


def _run_args(p: argparse.ArgumentParser) -> None:
    _node_options(p, json_flag=False)


COMMANDS: list[Command] = [
    Command("run", cmd_run, "run one node in the foreground", _run_args, node=False),
    Command("members", cmd_members, "list every known member"),
    Command("status", cmd_status, "actors, pids, restarts, cpu and memory"),
    Command("state", cmd_state, "the replicated state this node holds", _state_args),
    Command("events", cmd_events, "subscribe and print cluster events", _events_args),
    Command("kv", cmd_kv, "the built-in replicated key/value store", _kv_args, node=False),
    Command("call", cmd_call, "any control operation, with JSON arguments", _call_args,
            epilog="example: lbcluster call provider.kv.set '{\"key\": \"a\", \"value\": 1}'\n"
                   f"An error reply prints CODE: MESSAGE and exits {EXIT_FAIL}."),
    Command("check-provider", cmd_check_provider,
            "check that a provider class keeps the StateProvider contract",
            _check_provider_args, node=False,
            epilog="example: lbcluster check-provider examples.sticky:StickyProvider "
                   "--options '{\"max_entries\": 10}'\n"
                   f"A violation prints CLASS.METHOD: PROBLEM and exits {EXIT_USAGE}."),
    Command("leave", cmd_leave, "leave the cluster gracefully; the node then stops"),
    Command("demo", cmd_demo, "a local cluster on 127.0.0.1, printing live events",
            _demo_args, node=False),
    Command("keygen", cmd_keygen, "print a CURVE key pair for [security]", _keygen_args,
            node=False),
]


def _node_options(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    default = os.environ.get(CONFIG_ENV) or None
    p.add_argument("-c", "--config", metavar="FILE", default=default, required=default is None,
                   help=f"the node's config file (TOML); default ${CONFIG_ENV}")
    if json_flag:
        p.add_argument("--json", action="store_true",
                       help="machine-readable output: strict JSON")


def _version() -> str:
    try:
        return metadata.version("lbcluster")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The parser; -c defaults to $LBCLUSTER_CONFIG as it is when this is called."""
    parser = argparse.ArgumentParser(prog="lbcluster", description=__doc__.splitlines()[0],
                                     epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lbcluster {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help,
                           epilog=command.epilog or None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if command.node:
            _node_options(p)
        command.arguments(p)
        p.set_defaults(handler=command.handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except CliError as exc:
        print(f"lbcluster: {exc}", file=sys.stderr)
        return exc.code
    except RpcError as exc:
        print(f"lbcluster: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # e.g. `lbcluster events | head`: the reader is done
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
