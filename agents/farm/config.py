"""A farm's YAML file: shared defaults, then groups of agents, each from an agent config plus overrides.

    state_root: ../.state/farm        # each agent's state_dir is <state_root>/<agent name>
    metrics_base_port: 9700           # agent n of the farm serves /healthz and /metrics on base + n
    defaults: {node: ws://127.0.0.1:9944, storage: {root: ../.state/store}}
    agents:
      creator: {config: creator.yaml}
      annotator: {count: 8, config: annotator.yaml, overrides: {key: {dev: Alice, derive: "//annotator/{index}"}}}

An agent's config is its group's ``config`` file over the farm's ``defaults``, then the group's
``overrides``; ``{index}`` (0-based within the group) and ``{name}`` in an override's strings make
each member distinct. Every resolved agent config is validated like ``decentralml agent check``;
errors name the key path (``agents.annotator[3].policy.min_pay: …``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.config import AgentConfig, ConfigError, absolute_paths, read_yaml_mapping, validate_config

GROUP_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RestartPolicy(Strict):
    backoff_initial_s: float = Field(1.0, gt=0, description="wait before the first restart")
    backoff_max_s: float = Field(60.0, gt=0, description="the wait doubles per crash up to this")
    reset_after_s: float = Field(60.0, gt=0, description="a run this long resets the wait to the initial one")
    stop_timeout_s: float = Field(120.0, gt=0, description="on SIGTERM, how long agents may finish work in flight")


class Peer(Strict):
    address: str = Field(..., min_length=1, description="the SS58 address of another host's worker")
    max_concurrent: int | None = Field(None, ge=1, le=256, description="its policy.max_concurrent (a worker "
                                       "holding this many assignments on chain is not waited for); unset: as "
                                       "this host's workers")
    role: Literal["annotator", "engineer", "contributor"] | None = Field(
        None, description="its role, which fixes the one task type it takes (it is ranked only for tasks of that "
                          "type); unset: as this host's workers, when they all share one role")

    @model_validator(mode="before")
    @classmethod
    def _address_alone(cls, value: Any) -> Any:
        return {"address": value} if isinstance(value, str) else value  # a plain address: its capacity unset


class Rendezvous(Strict):
    grace_s: float = Field(0.0, ge=0, le=60, description="per better-ranked worker of another host that can take "
                                                          "the task (up to 3), wait this long before claiming it: "
                                                          "0 races as before")
    peers: list[Peer] = Field([], description="the other hosts' workers, for the ranking: each an SS58 address, or "
                                              "{address, max_concurrent, role}")

    def capacities(self) -> dict[str, int | None]:
        """Each peer's address → its max_concurrent (None: as this host's workers)."""
        return {p.address: p.max_concurrent for p in self.peers}

    def roles(self) -> dict[str, str]:
        """Each peer's address → its role, for the peers that have one (after :func:`load_farm`: all)."""
        return {p.address: p.role for p in self.peers if p.role is not None}

    def with_roles(self, worker_roles: set[str]) -> Rendezvous:
        """The peers without a role given this host's workers' one role: a peer takes one task type, and
        ranked for another type's tasks it made the host of the task's workers wait graces for nobody.
        This host's workers of several roles and a peer without one: which type it takes is unknown."""
        unset = [i for i, p in enumerate(self.peers) if p.role is None]
        if not unset or not worker_roles:
            return self
        if len(worker_roles) > 1:
            raise ValueError(f"rendezvous.peers.{unset[0]}: this host's workers have several roles "
                             f"({', '.join(sorted(worker_roles))}): set role on this peer "
                             f"({{address: {self.peers[unset[0]].address}, role: annotator|engineer|contributor}})")
        (role,) = worker_roles
        return self.model_copy(update={"peers": [p if p.role else p.model_copy(update={"role": role})
                                                  for p in self.peers]})


class Group(Strict):
    config: Path | None = Field(None, description="an agent YAML file, relative to the farm file")
    count: int = Field(1, ge=1, le=256, description="how many agents: NAME-0 … NAME-(count-1), or NAME alone if 1")
    overrides: dict[str, Any] = Field({}, description="agent config keys over the file's; {index} and {name} in "
                                                       "strings make each member distinct")


class FarmFile(Strict):
    """A farm file (``decentralml farm run FARM.yaml``)."""

    state_root: Path = Field(..., description="agent NAME keeps its journal in <state_root>/NAME; relative to the file")
    metrics_base_port: int = Field(9700, ge=1, le=65000, description="the farm's n-th agent serves /healthz and "
                                                                     "/metrics on 127.0.0.1:<this + n>")
    defaults: dict[str, Any] = Field({}, description="agent config keys under every agent's own file (node, storage…)")
    restart: RestartPolicy = Field(RestartPolicy(), description="how crashed agents come back and how all stop")
    rendezvous: Rendezvous = Field(Rendezvous(), description="fewer lost races across hosts: which host's worker "
                                                             "claims a task first, by rendezvous hashing")
    agents: dict[str, Group] = Field(..., min_length=1, description="groups of agents by name: {config, count, "
                                                                     "overrides}")


@dataclass(frozen=True)
class AgentSpec:
    """One supervised agent: its name in the farm and its resolved, validated config."""

    name: str
    group: str
    config: AgentConfig
    raw: dict  # what is written to the agent's YAML (``${VAR}`` left for the agent to expand)


@dataclass(frozen=True)
class Farm:
    path: Path
    state_root: Path
    restart: RestartPolicy
    agents: list[AgentSpec]
    rendezvous: Rendezvous = Rendezvous()


WHOLE = ("key",)  # replaced, never merged: a key is exactly one source


def merge(base: dict, over: dict) -> dict:
    """``over`` on ``base``, mappings merged key by key (except :data:`WHOLE`), anything else replaced."""
    merged = dict(base)
    for key, value in over.items():
        mergeable = isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in WHOLE
        merged[key] = merge(merged[key], value) if mergeable else value
    return merged


def substitute(value: Any, index: int, name: str) -> Any:
    if isinstance(value, dict):
        return {k: substitute(v, index, name) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, index, name) for v in value]
    if isinstance(value, str):
        return value.replace("{index}", str(index)).replace("{name}", name)
    return value


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in (*([prefix] if prefix else []), *first["loc"])) or "(top)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def load_farm(path: str | Path) -> Farm:
    path = Path(path)
    try:
        farm = FarmFile.model_validate(read_yaml_mapping(path, "farm"))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None
    base = path.parent.resolve()
    state_root = farm.state_root if farm.state_root.is_absolute() else (base / farm.state_root).resolve()
    defaults = absolute_paths(farm.defaults, base)
    specs: list[AgentSpec] = []
    for group_name, group in farm.agents.items():
        if not GROUP_NAME.match(group_name):
            raise ConfigError(f"{path}: agents.{group_name}: a group name is lower-case letters, digits, - and _")
        file_raw: dict = {}
        if group.config is not None:
            config_path = group.config if group.config.is_absolute() else base / group.config
            file_raw = absolute_paths(read_yaml_mapping(config_path, f"agents.{group_name}.config"), config_path.parent)
        for index in range(group.count):
            name = group_name if group.count == 1 else f"{group_name}-{index}"
            where = f"agents.{group_name}" + (f"[{index}]" if group.count > 1 else "")
            overrides = absolute_paths(substitute(group.overrides, index, name), base)
            raw = merge(merge(defaults, file_raw), overrides)
            # the farm owns where each agent keeps its state and serves its health
            raw.update(state_dir=str(state_root / name), metrics_port=farm.metrics_base_port + len(specs))
            try:
                config = validate_config(raw)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {where}.{exc}") from None
            specs.append(AgentSpec(name, group_name, config, raw))
    _distinct_keys(path, specs)
    try:
        rendezvous = farm.rendezvous.with_roles({s.config.role for s in specs if s.config.task_type is not None})
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return Farm(path, state_root, farm.restart, specs, rendezvous)


def _distinct_keys(path: Path, specs: list[AgentSpec]) -> None:
    """Two agents signing with one key would race each other's nonces and claims."""
    seen: dict[tuple, str] = {}
    for spec in specs:
        key = spec.config.key
        ident = (key.env, str(key.keyfile) if key.keyfile else None, key.dev, key.derive)
        if ident in seen:
            raise ConfigError(f"{path}: agents {seen[ident]} and {spec.name} sign with the same key: give each its "
                              "own (e.g. overrides: {key: {dev: Alice, derive: \"//{name}\"}})")
        seen[ident] = spec.name
