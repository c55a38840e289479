"""Which actors a node runs, and how each is built inside its process.

Actor names: ``membership``, ``anti_entropy`` and ``provider.<type>`` for
each ``[[providers]]`` entry. Every module an actor needs is imported here,
in the supervisor, before the zygote forks, so a restart costs a fork, not
an import; a user's provider that cannot be imported is a config error at
startup, not a crash loop later.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zmq

from actors.node.config import Config, ConfigError, ProviderSpec
from actors.node.routing import Route, RouteConflict, RoutingTable
from actors.providers.contract import ContractError, check_provider_class, load_provider_class
from actors.runtime import Actor, NodeEnv
from transport.protocol import generate_node_id

BUILTIN_CLASSES = {
    "kv": "actors.providers.kv:KvProvider",
    "health": "actors.providers.health:HealthProvider",
    "circuit_breaker": "actors.providers.circuit_breaker:CircuitBreakerProvider",
    "rate": "actors.providers.rate:RateProvider",
    "stick_table": "actors.providers.stick_table:StickTableProvider",
}
# Optional actors: present once their modules exist in this installation.
CORE_ACTORS = {
    "membership": "actors.membership.actor:MembershipActor",
    "anti_entropy": "actors.anti_entropy.actor:AntiEntropyActor",
}


def load_symbol(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def provider_class(cfg: Config, spec: ProviderSpec, index: int) -> type:
    """Import a provider class and check its options and its contract, or raise ConfigError."""
    target = spec.module or BUILTIN_CLASSES[spec.type]
    key = f"providers[{index}].module" if spec.module else f"providers[{index}].type"
    try:
        cls = load_provider_class(target)
    except ValueError as exc:
        raise ConfigError(cfg.path, key, str(exc)) from None
    validate = getattr(cls, "validate_options", None)
    if validate is not None:  # bad options fail at startup, not in a crash loop
        try:
            validate(dict(spec.options))
        except (ValueError, TypeError) as exc:
            option = getattr(exc, "option", None)  # a ProviderOptionError names its option
            where = f"providers[{index}].options" + (f".{option}" if option else "")
            raise ConfigError(cfg.path, where, getattr(exc, "reason", str(exc))) from None
    problem = check_in_child(cls, spec.options)
    if problem:
        raise ConfigError(cfg.path, key, problem)
    return cls


def check_in_child(cls: type, options: Mapping[str, Any]) -> str | None:
    """`check_provider_class` in a forked child: whatever a provider's constructor starts
    (threads, files, connections) must not live on in the supervisor, which forks the
    zygote next. Returns the violation, or None."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running any exit handler
        os.close(read_fd)
        try:
            check_provider_class(cls, options)
            message = b""
        except ContractError as exc:
            message = str(exc).encode("utf-8", "replace")
        except BaseException as exc:
            message = f"the contract check raised {type(exc).__name__}: {exc}".encode()
        os.write(write_fd, message[:4000])
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        message = pipe.read()
    _, status = os.waitpid(pid, 0)
    if message:
        return message.decode("utf-8", "replace")
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return f"the contract check of {cls.__qualname__} died (wait status {status})"
    return None


def plan_actors(cfg: Config) -> dict[str, Any]:
    """Import every actor class this node needs; name -> (class, extra)."""
    plan: dict[str, Any] = {name: (load_symbol(target), None)
                            for name, target in CORE_ACTORS.items()}
    from actors.providers.host import ProviderActor

    for i, spec in enumerate(cfg.providers):
        plan[spec.actor_name] = (ProviderActor, (spec, provider_class(cfg, spec, i)))
    if cfg.haproxy is not None:
        plan["haproxy"] = (haproxy_actor_class(cfg), None)
    if cfg.handlers:  # [[handlers]]: commands run on events (actors.node.handlers)
        from actors.node.handlers import HandlersActor

        plan["handlers"] = (HandlersActor, None)
    return plan


def haproxy_actor_class(cfg: Config) -> type:
    """The `[haproxy]` bridge acts on the health provider's verdicts: it needs one."""
    if not any(spec.type == "health" for spec in cfg.providers):
        raise ConfigError(cfg.path, "haproxy", "needs the health provider: add [[providers]] "
                          "type = \"health\" with the backends it checks")
    cls: type = load_symbol("actors.haproxy.actor:HAProxyActor")
    return cls


def is_essential(name: str) -> bool:
    """Giving up on an essential actor stops the node; any other is given up alone
    (and retried): a node without membership or anti-entropy would serve a partial
    view, a node without one provider still replicates everything else."""
    return name in CORE_ACTORS


def routes_of(plan: dict[str, Any]) -> list[Route]:
    """The control ops each actor serves, from what its class declares (`serves`).

    A core actor is sent the op unchanged. A provider serves ``provider.<type>.``;
    its class's `serves` prefixes (kv: ``kv.``) are short names for that namespace,
    so both are stripped.
    """
    routes: list[Route] = []
    for name, (cls, extra) in plan.items():
        if extra is None:
            routes += [Route(p, name) for p in getattr(cls, "serves", ())]
            continue
        _spec, provider_cls = extra
        routes.append(Route(f"{name}.", name, strip=True))
        routes += [Route(p, name, strip=True) for p in getattr(provider_cls, "serves", ())
                   if isinstance(p, str) and p.endswith(".")]
    return routes


def plan_routes(cfg: Config, plan: dict[str, Any]) -> RoutingTable:
    """The routing table of `plan`; two actors claiming one op is a config error."""
    try:
        return RoutingTable(routes_of(plan))
    except RouteConflict as exc:
        types = [spec.type for spec in cfg.providers]
        kind = exc.route.actor.removeprefix("provider.")
        key = f"providers[{types.index(kind)}].module" if kind in types else "providers"
        raise ConfigError(cfg.path, key, str(exc)) from None


def make_actor(plan: dict[str, Any], name: str, env: NodeEnv, ctx: zmq.Context) -> Actor:
    cls, extra = plan[name]
    if extra is None:
        actor: Actor = cls(name, env, ctx)
    else:
        spec, provider_cls = extra
        actor = cls(name, env, ctx, spec, provider_cls)
    return actor


def node_id_for(cfg: Config) -> str:
    """The configured id, or one generated on first start and kept in data_dir."""
    id_file = cfg.node.data_dir / "node_id"
    if cfg.node.id:
        stored = _read(id_file)
        if stored != cfg.node.id:
            _write_atomic(id_file, cfg.node.id)
        return cfg.node.id
    stored = _read(id_file)
    if stored:
        return stored
    new_id = generate_node_id()
    _write_atomic(id_file, new_id)
    return new_id


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
