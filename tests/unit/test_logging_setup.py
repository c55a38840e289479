"""configure_logging: a forked actor keeps the handler its parent built for the same settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MINIMAL_CONFIG
from loguru import logger

from actors import runtime
from actors.node.config import Config, load_config


def _config(tmp_path: Path, level: str) -> Config:
    path = tmp_path / f"{level}.toml"
    path.write_text(MINIMAL_CONFIG + f'[log]\nlevel = "{level}"\n', encoding="utf-8")
    return load_config(path)


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    runtime._logging_for = None
    yield
    runtime._logging_for = None
    logger.remove()


def test_same_settings_keep_the_handlers(tmp_path: Path, fresh_logging: None) -> None:
    cfg = _config(tmp_path, "INFO")
    runtime.configure_logging(cfg)
    seen: list[str] = []
    logger.add(lambda message: seen.append(str(message)), format="{message}")
    runtime.configure_logging(cfg)  # what each forked actor does
    logger.info("kept")
    assert seen == ["kept\n"]


def test_other_settings_rebuild_the_handlers(tmp_path: Path, fresh_logging: None) -> None:
    runtime.configure_logging(_config(tmp_path, "INFO"))
    seen: list[str] = []
    logger.add(lambda message: seen.append(str(message)), format="{message}")
    runtime.configure_logging(_config(tmp_path, "DEBUG"))
    logger.info("gone")
    assert seen == []
