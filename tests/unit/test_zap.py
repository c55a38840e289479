"""ZapHandler: the answers a node gives libzmq about CURVE handshakes (RFC 27)."""

from __future__ import annotations

import os
from pathlib import Path

import zmq
from zmq.utils import z85

from transport.security import Keyring
from transport.zap import VERSION, ZapHandler


def _handler(tmp_path: Path, admitted: dict[str, bytes]) -> tuple[ZapHandler, dict[str, int]]:
    keyring = Keyring(tmp_path)
    keyring.set({node: z85.encode(raw) for node, raw in admitted.items()})
    counters: dict[str, int] = {}
    return ZapHandler(zmq.Context.instance(), keyring, counters), counters


def _request(mechanism: bytes, *credentials: bytes) -> list[bytes]:
    return [VERSION, b"7", b"lbcluster", b"127.0.0.1", b"", mechanism, *credentials]


def test_an_admitted_key_is_let_in_as_its_node_id(tmp_path: Path) -> None:
    key = os.urandom(32)
    zap, counters = _handler(tmp_path, {"n1": key})
    try:
        assert zap.answer(_request(b"CURVE", key)) == [VERSION, b"7", b"200", b"OK", b"n1", b""]
        assert counters == {}
    finally:
        zap.close()


def test_any_other_key_is_refused_and_counted(tmp_path: Path) -> None:
    zap, counters = _handler(tmp_path, {"n1": os.urandom(32)})
    try:
        for credentials in ((os.urandom(32),), (b"short",), ()):
            reply = zap.answer(_request(b"CURVE", *credentials))
            assert reply[2] == b"400" and reply[4] == b""
        assert counters == {"zap_denied": 3}
    finally:
        zap.close()


def test_null_handshakes_and_malformed_requests(tmp_path: Path) -> None:
    zap, _ = _handler(tmp_path, {})
    try:
        assert zap.answer(_request(b"NULL"))[2] == b"200"  # another socket's, not ours to judge
        assert zap.answer([b"2.0", b"9", b"d", b"a", b"", b"CURVE", b"k"])[2] == b"500"
        assert zap.answer([])[2] == b"500"
    finally:
        zap.close()


def test_a_revoked_key_is_refused_after_reload(tmp_path: Path) -> None:
    key = os.urandom(32)
    zap, _ = _handler(tmp_path, {"n1": key})
    try:
        zap.keyring.set({})
        assert zap.answer(_request(b"CURVE", key))[2] == b"400"
    finally:
        zap.close()
