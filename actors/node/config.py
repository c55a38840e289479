"""Node configuration: one TOML file loaded once into frozen dataclasses.

Every problem a user can cause (a missing file, bad TOML, an unknown key, a
wrong type, a malformed endpoint, an ipc path too long for a Unix socket)
becomes one `ConfigError` whose text names the file and the key; the CLI
prints it on one line and exits 2. Relative paths (``data_dir``, ``ipc://``
endpoints, key files) are resolved against the config file's folder, so
``lbcluster run -c F`` and ``lbcluster status -c F`` agree from any working
directory.

Every table is checked by the one settings validator (`transport.settings`).
The membership and anti-entropy keys are declared by the cores that own
them (`actors.membership.core.timing`, `actors.anti_entropy.core.engine`), so
a key is defined in exactly one place, and `Config` carries their typed
settings.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from actors.anti_entropy.core.engine import AntiEntropyConfig, ae_config_for
from actors.membership.core.timing import MembershipTiming, timing_for
from transport.settings import REQUIRED, Field, SettingsError, above_zero, read
from transport.validate import TCP_BIND_ENDPOINT

T = TypeVar("T")

# Unix-domain socket paths are limited to 107 bytes on Linux (sun_path).
IPC_PATH_MAX = 107
_CLUSTER_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_NODE_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
BUILTIN_PROVIDERS = ("kv", "health", "circuit_breaker", "rate", "stick_table")
# Reserved metadata key: each member advertises its anti-entropy endpoint here.
SYNC_META_KEY = "lbc.sync"


class ConfigError(Exception):
    """A user-facing configuration problem: ``FILE: key: what is wrong``."""

    def __init__(self, path: Path | str, key: str, message: str) -> None:
        self.path = str(path)
        self.key = key
        self.message = message
        super().__init__(f"{self.path}: {key}: {message}" if key else f"{self.path}: {message}")


@dataclass(frozen=True)
class NodeSection:
    id: str | None
    cluster: str
    data_dir: Path
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class NetworkSection:
    gossip: str
    sync: str
    advertise_host: str | None
    seeds: tuple[str, ...]
    # endpoint -> node id, for seeds written "node-id@tcp://host:port" (needed with CURVE:
    # a node's key file is named by its id, and a seed's key must be known to dial it)
    seed_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LocalSection:
    events: str
    control: str  # always ipc://<absolute path>
    # "HOST:PORT" of the monitoring endpoint (/metrics, /health); None: off
    http: str | None = None


@dataclass(frozen=True)
class SupervisorSection:
    max_restarts: int = 5
    max_restarts_window_s: float = 60.0
    # An actor silent this long is hung: killed and restarted.
    heartbeat_timeout_s: float = 5.0
    # Between TERM and KILL when stopping an actor.
    stop_grace_s: float = 3.0
    # A provider actor given up (it kept dying) is tried again after this long.
    provider_retry_s: float = 60.0


@dataclass(frozen=True)
class SecuritySection:
    curve_secret_key_file: Path | None = None
    curve_public_key_file: Path | None = None
    allowed_keys_dir: Path | None = None

    @property
    def enabled(self) -> bool:
        """The validator admits the three keys together or none of them."""
        return self.curve_secret_key_file is not None

    def key_files(self) -> tuple[Path, Path, Path]:
        """(public key, secret key, allowed keys folder) of an `enabled` section."""
        public, secret, allowed = (self.curve_public_key_file, self.curve_secret_key_file,
                                   self.allowed_keys_dir)
        if public is None or secret is None or allowed is None:
            raise ValueError("[security] is off")
        return public, secret, allowed


@dataclass(frozen=True)
class LogSection:
    level: str = "INFO"
    json: bool = False


@dataclass(frozen=True)
class ProviderSpec:
    type: str
    module: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def actor_name(self) -> str:
        return f"provider.{self.type}"


@dataclass(frozen=True)
class HAProxySection:
    """The HAProxy bridge (`actors.haproxy`): off unless the section is present."""

    runtime_api: str  # "unix:///abs/path" or "tcp://host:port"
    servers: Mapping[str, str]  # health backend name -> "backend/server"
    interval_s: float = 2.0  # how often `show servers state` is read and corrected


@dataclass(frozen=True)
class HandlerSpec:
    """`[[handlers]]`: run `command` for each event whose type starts with one of
    `events`, the event as JSON on stdin; killed after `timeout_s`."""

    events: tuple[str, ...]
    command: tuple[str, ...]
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Config:
    path: Path
    node: NodeSection
    network: NetworkSection
    local: LocalSection
    membership_profile: str
    membership: MembershipTiming  # the profile with the [membership] overrides
    anti_entropy: AntiEntropyConfig
    supervisor: SupervisorSection
    security: SecuritySection
    log: LogSection
    providers: tuple[ProviderSpec, ...]
    haproxy: HAProxySection | None = None
    handlers: tuple[HandlerSpec, ...] = ()


_SECTIONS = (
    "node", "network", "local", "membership", "anti_entropy", "supervisor", "security", "log",
    "providers", "haproxy", "handlers",
)
_ARRAYS = ("providers", "handlers")  # arrays of tables: [[providers]], [[handlers]]


class _Reader:
    """Pulls typed values out of one TOML table, remembering which keys it used.

    The checks are `transport.settings`'; this adds the file and section to the key."""

    def __init__(self, path: Path, table: Mapping[str, Any], prefix: str) -> None:
        self.path, self.table, self.prefix = path, table, prefix
        self.used: set[str] = set()

    def err(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.path, f"{self.prefix}.{key}" if self.prefix and key
                           else key or self.prefix, message)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = REQUIRED, *,
            check: Callable[[Any], str | None] | None = None) -> Any:
        return self.values((Field(key, kind, default, check=check),))[key]

    def values(self, fields: tuple[Field, ...]) -> dict[str, Any]:
        """Every field's value (absent ones their default), by attribute name."""
        self.used.update(f.key for f in fields)
        given = {f.key: self.table[f.key] for f in fields if f.key in self.table}
        try:
            return read(fields, given)
        except SettingsError as exc:
            raise self.err(exc.key, exc.reason) from None

    def build(self, cls: type[T], fields: tuple[Field, ...]) -> T:
        """A section dataclass of `fields`, unknown keys refused."""
        values = self.values(fields)
        self.reject_unknown()
        return cls(**values)

    def reject_unknown(self) -> None:
        for key in self.table:
            if key not in self.used:
                raise self.err(key, "unknown key")


def load_config(path: str | Path) -> Config:
    """Read and validate a node config; raises `ConfigError` only."""
    cfg_path = Path(path)
    try:
        raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(cfg_path, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(cfg_path, "", f"cannot read file ({exc.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(cfg_path, "", f"invalid TOML: {exc}") from None
    return parse_config(raw, cfg_path)


def parse_config(raw: Mapping[str, Any], cfg_path: Path) -> Config:
    base = cfg_path.resolve().parent
    top = _Reader(cfg_path, raw, "")
    for name in _SECTIONS:
        top.get(name, list if name in _ARRAYS else dict, [] if name in _ARRAYS else {})
    top.reject_unknown()
    node = _node(_Reader(cfg_path, raw.get("node", {}), "node"), base)
    network = _network(_Reader(cfg_path, raw.get("network", {}), "network"))
    local = _local(_Reader(cfg_path, raw.get("local", {}), "local"), base)
    membership = dict(raw.get("membership", {}))
    profile = membership.pop("profile", "lan")
    if not isinstance(profile, str):
        raise ConfigError(cfg_path, "membership.profile", "must be a string")
    timing = _core_settings(cfg_path, "membership", lambda: timing_for(profile, membership))
    ae = _core_settings(cfg_path, "anti_entropy",
                        lambda: ae_config_for(raw.get("anti_entropy", {})))
    security = _security(_Reader(cfg_path, raw.get("security", {}), "security"), base)
    if security.enabled:
        for i, seed in enumerate(network.seeds):
            if seed not in network.seed_ids:
                raise ConfigError(cfg_path, f"network.seeds[{i}]", "with [security] on, name "
                                  "the seed's node: \"node-id@tcp://host:port\"")
    return Config(
        path=cfg_path.resolve(),
        node=node,
        network=network,
        local=local,
        membership_profile=profile,
        membership=timing,
        anti_entropy=ae,
        supervisor=_supervisor(_Reader(cfg_path, raw.get("supervisor", {}), "supervisor")),
        security=security,
        log=_log(_Reader(cfg_path, raw.get("log", {}), "log")),
        providers=_providers(cfg_path, raw.get("providers", [])),
        haproxy=_haproxy(_Reader(cfg_path, raw["haproxy"], "haproxy"))
        if "haproxy" in raw else None,
        handlers=_handlers(cfg_path, raw.get("handlers", [])),
    )


def _node(r: _Reader, base: Path) -> NodeSection:
    def node_id_ok(v: str) -> str | None:
        return None if _NODE_ID_RE.match(v) else "must be 1-128 characters of A-Z a-z 0-9 _ . -"

    def cluster_ok(v: str) -> str | None:
        return None if _CLUSTER_RE.match(v) else "must be 1-64 characters of A-Z a-z 0-9 _ . -"

    section = NodeSection(
        id=r.get("id", str, None, check=node_id_ok),
        cluster=r.get("cluster", str, "default", check=cluster_ok),
        data_dir=(base / r.get("data_dir", str)).resolve(),
        metadata=dict(r.get("metadata", dict, {})),
    )
    r.reject_unknown()
    return section


def _network(r: _Reader) -> NetworkSection:
    seeds, seed_ids = [], {}
    for i, seed in enumerate(r.get("seeds", list, [])):
        node_id, _, endpoint = seed.rpartition("@") if isinstance(seed, str) else ("", "", "")
        if not isinstance(seed, str) or tcp_endpoint_problem(endpoint) or (
                node_id and not _NODE_ID_RE.match(node_id)):
            raise r.err(f"seeds[{i}]", "must be an endpoint like tcp://host:port "
                        "(or node-id@tcp://host:port)")
        seeds.append(endpoint)
        if node_id:
            seed_ids[endpoint] = node_id
    section = NetworkSection(
        gossip=r.get("gossip", str, check=tcp_endpoint_problem),
        sync=r.get("sync", str, check=tcp_endpoint_problem),
        advertise_host=r.get("advertise_host", str, None),
        seeds=tuple(seeds),
        seed_ids=seed_ids,
    )
    r.reject_unknown()
    if section.gossip == section.sync:
        raise r.err("sync", "must differ from network.gossip")
    host = TCP_BIND_ENDPOINT.match(section.gossip)["host"]  # type: ignore[index]
    if host in ("0.0.0.0", "*", "[::]") and section.advertise_host is None:
        raise r.err("advertise_host", "is required when network.gossip binds every interface "
                    "(peers must know which address to dial)")
    return section


def _local(r: _Reader, base: Path) -> LocalSection:
    events = r.get("events", str, check=endpoint_problem)
    control = r.get("control", str, check=lambda v: None if v.startswith("ipc://")
                    else "must be an ipc:// endpoint (file mode 0600 keeps it private)")
    control = resolve_ipc(control, base)
    if len(control) - len("ipc://") > IPC_PATH_MAX:
        raise r.err("control", f"ipc path is longer than {IPC_PATH_MAX} bytes: {control}")
    if events.startswith("ipc://"):
        events = resolve_ipc(events, base)
        if len(events) - len("ipc://") > IPC_PATH_MAX:
            raise r.err("events", f"ipc path is longer than {IPC_PATH_MAX} bytes: {events}")
    http = r.get("http", str, None, check=http_address_problem)
    r.reject_unknown()
    return LocalSection(events=events, control=control, http=http)


_SUPERVISOR = (
    Field("max_restarts", int, 5, low=0, why="restarts within the window before giving up"),
    Field("max_restarts_window_s", float, 60.0, check=above_zero, why="the restart window"),
    Field("heartbeat_timeout_s", float, 5.0, check=above_zero,
          why="an actor silent this long is hung: killed and restarted"),
    Field("stop_grace_s", float, 3.0, check=above_zero, why="between TERM and KILL"),
    Field("provider_retry_s", float, 60.0, check=above_zero,
          why="a provider (or the handlers actor) given up is tried again after this long"),
)


def _supervisor(r: _Reader) -> SupervisorSection:
    return r.build(SupervisorSection, _SUPERVISOR)


def _security(r: _Reader, base: Path) -> SecuritySection:
    def path_of(key: str) -> Path | None:
        value = r.get(key, str, None)
        return None if value is None else (base / value).resolve()

    section = SecuritySection(
        curve_secret_key_file=path_of("curve_secret_key_file"),
        curve_public_key_file=path_of("curve_public_key_file"),
        allowed_keys_dir=path_of("allowed_keys_dir"),
    )
    r.reject_unknown()
    keys = ("curve_secret_key_file", "curve_public_key_file", "allowed_keys_dir")
    given = [k for k in keys if getattr(section, k) is not None]
    if given and len(given) != len(keys):
        missing = next(k for k in keys if k not in given)
        raise r.err(missing, "is required when [security] is used (all three keys go together)")
    for key in given:
        target = getattr(section, key)
        if not target.exists():
            raise r.err(key, f"no such file or folder: {target}")
    if section.enabled:
        from transport.security import KeyError_, load_keypair

        try:
            load_keypair(*section.key_files()[:2])
        except KeyError_ as exc:
            raise r.err("curve_secret_key_file", str(exc)) from None
    return section


_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
_LOG = (
    Field("level", str, "INFO", why="log level, any case (TRACE and SUCCESS as in loguru)",
          check=lambda v: None if v.upper() in _LEVELS else f"must be one of {', '.join(_LEVELS)}"),
    Field("json", bool, False, why="one JSON object per line, for log collectors"),
)


def _log(r: _Reader) -> LogSection:
    section = r.build(LogSection, _LOG)
    return replace(section, level=section.level.upper())


def _haproxy(r: _Reader) -> HAProxySection:
    from actors.haproxy.core.names import parse_runtime_api, parse_server_ref

    def problem(parse: Callable[[str], object]) -> Callable[[str], str | None]:
        def check(value: str) -> str | None:
            try:
                parse(value)
            except ValueError as exc:
                return str(exc)
            return None
        return check

    runtime_api = r.get("runtime_api", str, check=problem(parse_runtime_api))
    servers = r.get("servers", dict, check=lambda v: None if v else "must name at least one "
                    "server: { web1 = \"be_app/web1\" }")
    seen: dict[str, str] = {}
    for name in servers:
        ref = _Reader(r.path, servers, "haproxy.servers").get(name, str,
                                                             check=problem(parse_server_ref))
        if ref in seen:
            raise r.err(f"servers.{name}", f"names the same server as servers.{seen[ref]}")
        seen[ref] = name
    interval_ms = r.get("interval_ms", (int, float), 2000, check=above_zero)
    r.reject_unknown()
    return HAProxySection(runtime_api=runtime_api, servers=dict(servers),
                          interval_s=interval_ms / 1000)


def _providers(cfg_path: Path, raw: list[Any]) -> tuple[ProviderSpec, ...]:
    specs: list[ProviderSpec] = []
    for i, table in enumerate(raw):
        if not isinstance(table, dict):
            raise ConfigError(cfg_path, f"providers[{i}]", "must be a table ([[providers]])")
        r = _Reader(cfg_path, table, f"providers[{i}]")
        kind = r.get("type", str, check=lambda v: None if _NODE_ID_RE.match(v)
                     else "must be 1-128 characters of A-Z a-z 0-9 _ . -")
        module = r.get("module", str, None, check=lambda v: None if ":" in v
                       else "must look like package.module:ClassName")
        if module is None and kind not in BUILTIN_PROVIDERS:
            raise r.err("type", f"is not built in ({', '.join(BUILTIN_PROVIDERS)}); "
                        "give module = \"package.module:Class\"")
        spec = ProviderSpec(type=kind, module=module, options=dict(r.get("options", dict, {})))
        r.reject_unknown()
        if any(s.type == kind for s in specs):
            raise r.err("type", f"provider type {kind!r} is listed twice")
        specs.append(spec)
    return tuple(specs)


def _core_settings(cfg_path: Path, section: str, make: Callable[[], T]) -> T:
    """Build a core's typed settings from the fields it declares (one definition per key)."""
    try:
        return make()
    except SettingsError as exc:
        raise ConfigError(cfg_path, f"{section}.{exc.key}" if exc.key else section,
                          exc.reason) from None


def _strings(value: list[Any]) -> str | None:
    if not value or not all(isinstance(x, str) and x for x in value):
        return "must be a non-empty array of non-empty strings"
    return None


def _handlers(cfg_path: Path, raw: list[Any]) -> tuple[HandlerSpec, ...]:
    specs: list[HandlerSpec] = []
    for i, table in enumerate(raw):
        if not isinstance(table, dict):
            raise ConfigError(cfg_path, f"handlers[{i}]", "must be a table ([[handlers]])")
        r = _Reader(cfg_path, table, f"handlers[{i}]")
        specs.append(HandlerSpec(
            events=tuple(r.get("events", list, check=_strings)),
            command=tuple(r.get("command", list, check=_strings)),
            timeout_s=float(r.get("timeout_s", (int, float), 10.0, check=above_zero))))
        r.reject_unknown()
    return tuple(specs)


def tcp_endpoint_problem(value: str) -> str | None:
    match = TCP_BIND_ENDPOINT.match(value)
    if not match:
        return "must be an endpoint like tcp://127.0.0.1:7946"
    if not 0 < int(match["port"]) < 65536:
        return "port must be between 1 and 65535"
    return None


_HTTP_RE = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):(?P<port>\d{1,5})$")


def http_address_problem(value: str) -> str | None:
    match = _HTTP_RE.match(value)
    if not match:
        return "must look like HOST:PORT, e.g. 127.0.0.1:9190"
    if not 0 < int(match["port"]) < 65536:
        return "port must be between 1 and 65535"
    return None


def http_address(value: str) -> tuple[str, int]:
    """(host, port) of a valid `[local] http` value; brackets of an IPv6 host removed."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def endpoint_problem(value: str) -> str | None:
    if value.startswith("ipc://"):
        return None if len(value) > len("ipc://") else "ipc endpoint needs a path"
    return tcp_endpoint_problem(value)


def resolve_ipc(endpoint: str, base: Path) -> str:
    """ipc paths are relative to the config file's folder; '@name' is Linux's abstract namespace."""
    target = endpoint[len("ipc://"):]
    if target.startswith("@"):
        return endpoint
    return "ipc://" + str((base / target).resolve())


def advertised(endpoint: str, advertise_host: str | None) -> str:
    """The address peers dial: the bind endpoint with its host replaced when one is advertised."""
    match = TCP_BIND_ENDPOINT.match(endpoint)
    if not match or advertise_host is None:
        return endpoint
    return f"tcp://{advertise_host}:{match['port']}"


def endpoint_port(endpoint: str) -> int | None:
    """The port of a tcp:// endpoint (None for ipc or a malformed one)."""
    match = TCP_BIND_ENDPOINT.match(endpoint)
    return int(match["port"]) if match else None
