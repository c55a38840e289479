"""`attach`: host a provider in this program and join it to a node's replication.

See the package docstring for how it works; the thread itself is host_loop.py.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from actors.providers.adapter import ProviderAdapter
from actors.sdk.client import NodeClient
from actors.sdk.host_loop import ChangeQueue, HostLoop
from transport.protocol import LamportClock, StateProvider
from transport.rpc import RpcTimeout
from transport.sockets import make_run_folder

_serial = itertools.count(1)  # with pid and a random token: one endpoint per attach

P = TypeVar("P", bound=StateProvider)
T = TypeVar("T")


@overload
def attach(provider: type[P], config: str | Path | None = None, *, control: str | None = None,
           options: Mapping[str, Any] | None = None, timeout_s: float = 5.0,
           retry_s: float = 2.0, reattach_s: float = 2.0) -> HostedProvider[P]: ...


@overload
def attach(provider: P, config: str | Path | None = None, *, control: str | None = None,
           options: Mapping[str, Any] | None = None, timeout_s: float = 5.0,
           retry_s: float = 2.0, reattach_s: float = 2.0) -> HostedProvider[P]: ...


def attach(provider: Any, config: str | Path | None = None, *, control: str | None = None,
           options: Mapping[str, Any] | None = None, timeout_s: float = 5.0,
           retry_s: float = 2.0, reattach_s: float = 2.0) -> HostedProvider[Any]:
    """Host `provider` in this program and join it to a running node's replication.

    Args:
        provider: a provider instance, or its class: a class is built as
            ``cls(node_id=<the node's id>, clock=<a clock the SDK keeps above the
            node's>, options=options)``, the same call as for ``[[providers]]``.
        config, control: the node, as for `NodeClient`.
        reattach_s: how often the registration is renewed (see the package docstring).

    Returns:
        The running `HostedProvider` (a context manager) once the node has
        registered it and the provider holds the node's states of its type.

    Raises:
        NodeUnavailable: the node is not running. RpcError: the node refused
        (for example it runs a provider of the same type itself).
    """
    node = NodeClient(config, control=control, timeout_s=timeout_s, retry_s=retry_s)
    try:
        clock = LamportClock()
        if isinstance(provider, type):
            provider = provider(node_id=node.node_id, clock=clock, options=dict(options or {}))
        if not isinstance(provider, StateProvider):
            raise TypeError(f"{type(provider).__name__} does not implement StateProvider")
        held_clock = getattr(provider, "clock", None)  # witness on the provider's own clock
        hosted = HostedProvider(provider, node,
                                held_clock if isinstance(held_clock, LamportClock) else clock,
                                reattach_s)
        hosted.start(timeout_s + retry_s + 1.0)
    except BaseException:
        node.close()
        raise
    return hosted


class HostedProvider(Generic[P]):
    """A provider served to a node by a daemon thread of this program (see `attach`).

    Attributes:
        provider: the provider; touch it only inside `writing()` or `read()` (or
            through methods it documents as thread-safe).
        node: a `NodeClient` for the same node.
        counters, errors: what the host thread did and what went wrong, by kind
            (``errors.<method>`` counts exceptions the provider raised).
    """

    def __init__(self, provider: P, node: NodeClient, clock: LamportClock,
                 reattach_s: float) -> None:
        self.provider = provider
        self.node = node
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._adapter = ProviderAdapter(provider, clock, self.errors)
        self.state_type = self._adapter.state_type
        # A private (0700) folder: the node's anti-entropy actor runs as the same user.
        self._folder = make_run_folder(f"{os.getpid()}-sdk.{next(_serial)}."
                                       f"{secrets.token_hex(4)}")
        self.endpoint = f"ipc://{self._folder}/provider"
        self._lock = threading.RLock()
        self._queue = ChangeQueue()
        self._closed = False
        self._loop = HostLoop(self._adapter, self._lock, self._queue, node, self.endpoint,
                              reattach_s, self.counters, self.errors)
        self._thread = threading.Thread(target=self._loop.run, daemon=True,
                                        name=f"lbcluster-attach-{self.state_type}")

    @property
    def node_id(self) -> str:
        return self.node.node_id

    @property
    def attached(self) -> bool:
        """Whether the last registration succeeded."""
        return self._loop.attached

    def start(self, wait_s: float) -> None:
        """Start the host thread; return after the first registration, or raise its error."""
        self._thread.start()
        if not self._loop.first.wait(wait_s):
            self.close()
            raise RpcTimeout("attach", wait_s)
        if self._loop.first_error is not None:
            self.close()
            raise self._loop.first_error

    @contextlib.contextmanager
    def writing(self) -> Iterator[P]:
        """Hold the provider's lock; on exit its changes are sent to the node."""
        with self._lock:
            try:
                yield self.provider
            finally:
                changes = self._adapter.changes(time.monotonic())
        if changes:
            self._queue.put(changes)

    def read(self, fn: Callable[[P], T]) -> T:
        """`fn(provider)` under the provider's lock."""
        with self._lock:
            return fn(self.provider)

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait until every change from `writing()` was accepted by the node; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while len(self._queue) or self._loop.in_flight:
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            time.sleep(0.01)
        return True

    def close(self, flush_s: float = 1.0) -> None:
        """Send what is queued (up to `flush_s`), stop the host thread, close the sockets."""
        if self._thread.is_alive():
            self.flush(flush_s)
            self._loop.stop.set()
            self._queue.wake()
            self._thread.join(5.0)
        if not self._thread.is_alive() and not self._closed:
            # (A thread stuck in a provider call keeps its sockets: leak, never hang.)
            self._closed = True
            self._queue.close()
            self.node.close()
            shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> HostedProvider[P]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
