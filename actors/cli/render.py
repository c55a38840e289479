"""How the CLI and the demo show things: tables, event lines, colours and JSON.

`--json` output is strict JSON (RFC 8259) so that any parser reads it: bytes
become hex strings, map keys strings, and the floats JSON has no word for
(NaN, Infinity, -Infinity, which another client may have stored) become the
strings "NaN", "Infinity" and "-Infinity", as in protobuf's JSON mapping.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

COLOURS = {"node.joined": 32, "node.alive": 32, "node.suspect": 33, "node.failed": 31,
           "node.left": 35, "node.updated": 36, "state.changed": 34, "actor.started": 90,
           "actor.exited": 33, "actor.restarted": 36, "actor.gave_up": 31,
           "provider.error": 31, "snapshot": 1}
MEMBER_COLUMNS = ("node_id", "address", "status", "incarnation", "metadata")
STATE_COLUMNS = ("state_type", "key", "value", "version", "source_node")
ACTOR_COLUMNS = ("name", "pid", "state", "restarts", "cpu_percent", "rss_mb")


def strict(obj: Any) -> Any:
    """`obj` made of JSON types only (see the module docstring)."""
    match obj:
        case bool() | int() | str() | None:
            return obj
        case float():
            if math.isfinite(obj):
                return obj
            return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
        case bytes() | bytearray():
            return bytes(obj).hex()
        case dict():
            return {_key(k): strict(v) for k, v in obj.items()}
        case list() | tuple():
            return [strict(v) for v in obj]
    return str(obj)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(strict(key))


def to_json(doc: Any, indent: int | None = None) -> str:
    """One strict JSON document; keys sorted so output diffs cleanly."""
    return json.dumps(strict(doc), sort_keys=True, allow_nan=False, indent=indent)


def print_json(doc: Any, out: TextIO | None = None) -> None:
    print(to_json(doc), file=out or sys.stdout, flush=True)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list | tuple):
        return to_json(value)
    return str(strict(value))


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """Aligned columns under an upper-case header; a missing value shows as "-"."""
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def public_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """`row` without the lbc.* metadata keys, the library's own plumbing (text output only)."""
    if not isinstance(row.get("metadata"), dict):
        return row
    return {**row, "metadata": {k: v for k, v in row["metadata"].items()
                                if not str(k).startswith("lbc.")}}


def actor_rows(actors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Status rows with resident memory in MiB, the unit people read."""
    return [{**a, "rss_mb": None if a.get("rss_bytes") is None else
             round(a["rss_bytes"] / 2**20, 1)} for a in actors]


def status_header(status: dict[str, Any]) -> str:
    return (f"node {status.get('node_id')}  cluster {status.get('cluster')}  "
            f"gossip {status.get('gossip')}  uptime {float(status.get('uptime_s') or 0):.0f} s")


def paint(text: str, kind: str, colour: bool) -> str:
    """`text` in the colour of event type `kind` (ANSI), when `colour` is on."""
    return f"\033[{COLOURS.get(kind, 0)}m{text}\033[0m" if colour else text


def format_event(event: dict[str, Any], colour: bool) -> str:
    """One line: time, [source #seq], type, subject node and the data as key=value."""
    kind = str(event.get("type"))
    stamp = time.strftime("%H:%M:%S", time.localtime(event.get("timestamp") or 0))
    data = public_metadata(dict(event.get("data") or {}))
    detail = " ".join(f"{k}={cell(v)}" for k, v in sorted(data.items(), key=lambda kv: str(kv[0]))
                      if k != "node_id" and v not in (None, {}, []))
    return (f"{stamp} [{event.get('source')} #{event.get('seq')}] "
            f"{paint(f'{kind:<16}', kind, colour)} {event.get('node_id')}  {detail}").rstrip()


def format_snapshot(snapshot: dict[str, Any], colour: bool) -> str:
    """The line that stands for a snapshot (NodeClient.events' first item) in text mode."""
    data = snapshot.get("data") or {}
    text = (f"snapshot of {snapshot.get('node_id')} at seq {snapshot.get('seq')}: "
            f"{len(data.get('members') or [])} members, {len(data.get('actors') or [])} actors")
    return paint(text, "snapshot", colour)


def snapshot_document(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A stream's snapshot item as the `--json` line `{"snapshot": {seq, node_id, ...}}`."""
    data = snapshot.get("data") or {}
    return {"snapshot": {"seq": snapshot.get("seq"), "node_id": snapshot.get("node_id"),
                         "members": data.get("members", []), "actors": data.get("actors", [])}}
