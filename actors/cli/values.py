"""Values typed on the command line: `kv set KEY VALUE` and `call OP JSON_ARGS`.

VALUE is JSON when it parses as JSON (numbers, objects, quoted strings, ...)
and otherwise the text itself; `-` reads it from stdin and `@FILE` from a
file. Whatever cannot cross the wire is refused here, with the reason, before
anything is sent: integers beyond msgpack's 64 bits, NaN and Infinity (which
strict JSON, and so `--json` output, cannot carry), and text msgpack cannot
encode (unpaired surrogates).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, NoReturn, TextIO

from actors.cli.errors import EXIT_FAIL, EXIT_USAGE, CliError
from transport.codec import pack
from transport.errors import ProtocolError

INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what msgpack can carry


def read_value(text: str, stdin: TextIO) -> Any:
    """VALUE of `kv set`: from `text`, stdin (`-`) or a file (`@FILE`), then parsed.

    Raises:
        CliError: EXIT_USAGE for a file that cannot be read; EXIT_FAIL for a
            value that cannot be encoded.
    """
    if text == "-":
        return parse_value(stdin.read().removesuffix("\n"))
    if text.startswith("@") and len(text) > 1:
        return parse_value(_read_file(Path(text[1:])).removesuffix("\n"))
    return parse_value(text)


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file", EXIT_USAGE) from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text", EXIT_USAGE) from None
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}", EXIT_USAGE) from None


def parse_value(text: str) -> Any:
    """JSON when `text` is valid JSON, else `text` as a string; checked for the wire."""
    try:
        value = json.loads(text, parse_constant=_non_finite)
    except _NonFinite as exc:
        raise CliError(f"value: {exc} cannot be encoded (not JSON; quote it for the string)",
                       EXIT_FAIL) from None
    except ValueError:
        return check_encodable(text)
    return check_encodable(value)


def parse_json_args(text: str) -> dict[str, Any]:
    """JSON_ARGS of `call`: a JSON object, checked for the wire.

    Raises:
        CliError: EXIT_USAGE for text that is not a JSON object; EXIT_FAIL for
            a value that cannot be encoded.
    """
    try:
        value = json.loads(text, parse_constant=_non_finite)
    except _NonFinite as exc:
        raise CliError(f"JSON_ARGS: {exc} cannot be encoded", EXIT_FAIL) from None
    except ValueError as exc:
        raise CliError(f"JSON_ARGS: invalid JSON ({exc})", EXIT_USAGE) from None
    if not isinstance(value, dict):
        raise CliError('JSON_ARGS must be a JSON object, like \'{"key": "a"}\'', EXIT_USAGE)
    return check_encodable(value, "JSON_ARGS")


def check_encodable(value: Any, what: str = "value") -> Any:
    """`value` itself when msgpack can carry it; else CliError (EXIT_FAIL) saying why."""
    _check_numbers(value, what)
    try:
        pack(value)
    except ProtocolError:
        raise CliError(f"{what} cannot be encoded (text with unpaired surrogates?)",
                       EXIT_FAIL) from None
    return value


def _check_numbers(value: Any, what: str) -> None:
    match value:
        case bool():
            return
        case int() if not INT_MIN <= value <= INT_MAX:
            digits = str(value)
            shown = digits if len(digits) <= 24 else f"{digits[:20]}...({len(digits)} digits)"
            raise CliError(f"{what}: the integer {shown} cannot be encoded: out of range "
                           "(-2**63 to 2**64-1); quote it to store a string", EXIT_FAIL)
        case float() if not math.isfinite(value):
            raise CliError(f"{what}: {value} cannot be encoded (not JSON)", EXIT_FAIL)
        case dict():
            for item in value.values():
                _check_numbers(item, what)
        case list():
            for item in value:
                _check_numbers(item, what)


class _NonFinite(ValueError):
    pass


def _non_finite(name: str) -> NoReturn:
    raise _NonFinite(name)
