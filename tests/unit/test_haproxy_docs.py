"""docs/haproxy.md's two-balancer example is valid as written."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from actors.node.config import parse_config
from actors.node.plan import plan_actors

DOC = (Path(__file__).resolve().parents[2] / "docs" / "haproxy.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)


def test_both_node_configs_load_with_the_bridge(tmp_path):
    configs = [b for b in blocks("toml") if "[node]" in b]
    assert len(configs) == 2
    for text in configs:
        cfg = parse_config(tomllib.loads(text), tmp_path / "node.toml")
        assert cfg.haproxy is not None and set(cfg.haproxy.servers) == {"web1", "web2"}
        assert "haproxy" in plan_actors(cfg)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs the haproxy binary")
def test_both_haproxy_configs_pass_haproxy_c(tmp_path):
    configs = blocks("haproxy")
    assert len(configs) == 2
    for i, text in enumerate(configs):
        path = tmp_path / f"lb{i + 1}.cfg"
        path.write_text(text)
        proc = subprocess.run([shutil.which("haproxy") or "haproxy", "-c", "-f", str(path)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stdout + proc.stderr
