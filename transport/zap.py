"""The ZAP handler of a node's public sockets (CURVE on): admits the listed keys.

Its own module because pyzmq's ThreadAuthenticator imports asyncio, ssl and socket
(~9 MiB): only a supervisor with [security] on imports it, after the actors forked.
"""

from __future__ import annotations

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from transport.security import Keyring


class NodeAuthenticator(ThreadAuthenticator):
    """ZAP for a node's public sockets: admits listed keys; User-Id = node id."""

    def __init__(self, ctx: zmq.Context, keyring: Keyring) -> None:
        super().__init__(ctx)
        self.keyring = keyring

    def start(self) -> None:
        super().start()
        self.refresh()

    def refresh(self) -> None:
        self.keyring.reload()
        admitted = {key: True for key in self.keyring.by_key}  # z85 keys, as pyzmq checks
        self.certs = {"*": admitted, "lbcluster": admitted}

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.keyring.by_key.get(z85.encode(client_public_key), "")
