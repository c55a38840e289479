"""Structured logs: one line per record on stderr, through the standard library's `logging`.

    log = logs.get(actor="membership", node="n1")
    log.bind(peer=peer, reason=err.reason).debug("dropped undecodable message")

Why not loguru: importing it imports asyncio, and with it ssl and socket: 9-10 MiB
of heap that every process of a node carried, a third of the node's 28 MiB budget
(docs/perf/issue15-small.md). `logging` costs about 0.6 MiB, and the SDK already logs
through it inside users' programs, so a node and an LB program now log one way.

Records go to the ``lbcluster`` logger. `configure` gives it a stderr handler that
writes ``HH:MM:SS.mmm LEVEL node/actor message key=value ...``, or with ``json`` one
object per line: ``time``, ``level``, ``message``, the bound fields and, after a
failure, ``exception`` (the traceback).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

NAME = "lbcluster"
LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "SUCCESS": 25, "WARNING": 30,
          "ERROR": 40, "CRITICAL": 50}
for _name in ("TRACE", "SUCCESS"):
    logging.addLevelName(LEVELS[_name], _name)

_configured_for: tuple[str, bool] | None = None  # what the inherited handler was made for


class Log:
    """A logger with fields bound to it; `bind` returns a new one with more."""

    __slots__ = ("_logger", "fields")

    def __init__(self, logger: logging.Logger, fields: dict[str, Any]) -> None:
        self._logger = logger
        self.fields = fields

    def bind(self, **fields: Any) -> Log:
        return Log(self._logger, {**self.fields, **fields})

    def log(self, level: str, message: str, exc_info: bool = False) -> None:
        number = LEVELS[level.upper()]
        if self._logger.isEnabledFor(number):
            self._logger.log(number, message, exc_info=exc_info,
                             extra={"fields": self.fields})

    def debug(self, message: str) -> None:
        self.log("DEBUG", message)

    def info(self, message: str) -> None:
        self.log("INFO", message)

    def warning(self, message: str) -> None:
        self.log("WARNING", message)

    def error(self, message: str) -> None:
        self.log("ERROR", message)

    def exception(self, message: str) -> None:
        """An error with the traceback of the exception being handled."""
        self.log("ERROR", message, exc_info=True)


def get(**fields: Any) -> Log:
    return Log(logging.getLogger(NAME), fields)


def _value(v: Any) -> str:
    text = str(v)
    return json.dumps(text) if not text or any(c in text for c in ' ="\n') else text


class LineFormat(logging.Formatter):
    """``17:20:01.123 WARNING n1/membership node.suspect member=n3 incarnation=2``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(getattr(record, "fields", {}))
        where = f"{fields.pop('node', '-')}/{fields.pop('actor', '-')}"
        fields.pop("pid", None)  # the process title and the actor name say it
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = (f"{clock}.{int(record.msecs):03d} {record.levelname:<7} {where} "
                f"{record.getMessage()}")
        if fields:
            line += " " + " ".join(f"{k}={_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormat(logging.Formatter):
    """One JSON object per line; the record's own keys win over bound fields of the same name."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = dict(getattr(record, "fields", {}))
        out.update(time=round(record.created, 3), level=record.levelname,
                   message=record.getMessage())
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str, as_json: bool) -> None:
    """Send the ``lbcluster`` logger's records at `level` and above to stderr.

    A process forked from one that already did this for the same settings keeps the
    inherited handler rather than build one more."""
    global _configured_for
    wanted = (level.upper(), as_json)
    if _configured_for == wanted:
        return
    _configured_for = wanted
    logger = logging.getLogger(NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormat() if as_json else LineFormat())
    logger.addHandler(handler)
    logger.setLevel(LEVELS[wanted[0]])
    logger.propagate = False  # a node's lines are its own; nothing else prints them twice
