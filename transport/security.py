"""CURVE security: key files, the keyring of admitted nodes, socket setup.

With ``[security]`` on, every TCP socket between nodes uses CURVE
(encryption and authentication with Curve25519 keys). Each node has its own
key pair; ``allowed_keys_dir`` holds one public key file per admitted node,
named ``<node_id>.key`` (what ``lbcluster keygen --dir D --node-id ID``
writes), so a key *is* a node id: the supervisor's ZAP handler admits only
those keys and stamps every message with the node id of the key that sent
it, and the actors drop a message whose claimed sender differs (a spoofed
sender). Reloading the folder (SIGHUP) admits new keys and revokes removed
ones — including on connections already open, because the check is made
per message, not only at the handshake.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth


class KeyError_(Exception):
    """A key file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class KeyPair:
    public: bytes
    secret: bytes


def load_keypair(public_file: Path, secret_file: Path) -> KeyPair:
    try:
        public, _ = zmq.auth.load_certificate(str(public_file))
        pub2, secret = zmq.auth.load_certificate(str(secret_file))
    except (OSError, ValueError) as exc:
        raise KeyError_(f"cannot read key file: {exc}") from None
    if secret is None:
        raise KeyError_(f"{secret_file} holds no secret key")
    if public != pub2:
        raise KeyError_(f"{public_file} and {secret_file} are not one key pair")
    return KeyPair(public, secret)


def load_allowed(folder: Path) -> dict[str, bytes]:
    """node id -> public key, from ``<node_id>.key`` files."""
    keys: dict[str, bytes] = {}
    for path in sorted(folder.glob("*.key")):
        try:
            public, _ = zmq.auth.load_certificate(str(path))
        except (OSError, ValueError):
            continue  # an unreadable file admits nobody
        keys[path.stem] = public
    return keys


def write_keypair(folder: Path, node_id: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(folder), node_id)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


class Keyring:
    """The admitted nodes' keys, reloadable; shared by the authenticator and shells."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.by_node: dict[str, bytes] = {}
        self.by_key: dict[bytes, str] = {}
        self.reload()

    def reload(self) -> None:
        self.set(load_allowed(self.folder))

    def set(self, keys: Mapping[str, bytes]) -> None:
        self.by_node = dict(keys)
        self.by_key = {key: node for node, key in keys.items()}

    def key_for(self, node_id: str) -> bytes | None:
        return self.by_node.get(node_id)

    def admits(self, node_id: str) -> bool:
        return node_id in self.by_node


def secure_server(sock: zmq.Socket, keys: KeyPair) -> None:
    sock.curve_server = True
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.zap_domain = b"lbcluster"


def secure_client(sock: zmq.Socket, keys: KeyPair, server_public: bytes) -> None:
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = server_public


def secure_subscriber(sub: zmq.Socket, cfg: Any) -> None:
    """With [security] on, a tcp events socket speaks CURVE: subscribe with the node's keys
    (the node's own key must then be among its admitted keys). `cfg`: actors.node.config.Config."""
    sec = cfg.security
    if cfg.local.events.startswith("tcp://") and sec.enabled:
        keys = load_keypair(*sec.key_files()[:2])
        secure_client(sub, keys, keys.public)
