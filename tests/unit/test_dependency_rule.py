"""The dependency rule: pure cores never reach for ZeroMQ, a shell, the disk or the clock.

A module is a pure core when it lives in a package named ``core`` (for example
``actors/membership/core/``, ``actors/core/``). It may import the standard
library's pure modules, msgpack, other cores and the pure part of
``transport``. Time arrives as an argument and randomness as a
``random.Random`` given at construction, which is what lets the simulator
and the unit tests drive the same classes with a fake clock.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PURE_STDLIB = {
    "__future__", "_blake2", "abc", "bisect", "collections", "collections.abc", "dataclasses",
    "enum", "functools", "hashlib", "heapq", "itertools", "math", "operator", "random", "re",
    "struct", "typing", "weakref",
}
PURE_TRANSPORT = {"transport.protocol", "transport.validate", "transport.errors",
                  "transport.lamport", "transport.codec", "transport.settings"}
THIRD_PARTY = {"msgpack"}
# The transport modules cores may use must not pull in ZeroMQ or a shell themselves.
TRANSPORT_FORBIDDEN = {"zmq", "actors", "loguru", "psutil", "pathlib", "socket"}


def core_modules() -> list[Path]:
    return sorted(p for p in (REPO / "actors").rglob("*.py")
                  if p.parent.name == "core" and ".venv" not in p.parts)


def imports_of(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def global_random_calls(source: str) -> list[str]:
    """`random.random()`, `random.choice(...)`: the process-wide generator, not an injected one."""
    return [f"random.{node.func.attr}" for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "random"
            and node.func.attr != "Random"]


def violations(source: str) -> list[str]:
    found = []
    for name in sorted(imports_of(source)):
        is_core = name.startswith("actors.") and ".core" in f".{name}".replace("actors.", "", 1)
        allowed = (name in PURE_STDLIB or name.split(".")[0] in THIRD_PARTY
                   or name in PURE_TRANSPORT or (is_core and _is_core_module(name)))
        if not allowed:
            found.append(f"imports {name}")
    found += [f"calls {call}" for call in global_random_calls(source)]
    return found


def _is_core_module(dotted: str) -> bool:
    parts = dotted.split(".")
    return "core" in parts[:-1] or parts[-1] == "core"


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_a_pure_core_imports_nothing_impure(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("name", sorted(n for n in PURE_TRANSPORT
                                         if (REPO / (n.replace(".", "/") + ".py")).exists()))
def test_the_transport_modules_cores_use_stay_free_of_sockets_and_shells(name: str) -> None:
    path = REPO / (name.replace(".", "/") + ".py")
    bad = {n for n in imports_of(path.read_text(encoding="utf-8"))
           if n.split(".")[0] in TRANSPORT_FORBIDDEN}
    assert bad == set()


@pytest.mark.parametrize(("source", "expected"), [
    ("import zmq", ["imports zmq"]),
    ("import time", ["imports time"]),
    ("from pathlib import Path", ["imports pathlib"]),
    ("from actors.membership.actor import MembershipActor",
     ["imports actors.membership.actor"]),
    ("from actors.runtime import Actor", ["imports actors.runtime"]),
    ("from transport.sockets import make_socket", ["imports transport.sockets"]),
    ("import random\nx = random.random()", ["calls random.random"]),
    ("import random\nrng = random.Random(0)\nfrom actors.core.store import Store", []),
    ("from actors.membership.core.members import MemberTable", []),
])
def test_the_rule_itself_catches_what_it_should(source: str, expected: list[str]) -> None:
    assert violations(source) == expected


def test_there_are_cores_to_check() -> None:
    assert len(core_modules()) >= 15
