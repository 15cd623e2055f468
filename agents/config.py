"""An agent's YAML file, validated on load: an unknown key or a bad value stops start-up with the
key's path and the reason. Secrets are never inline: a key is an environment variable name, a
keyfile path, or (devnets only) a dev account name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from decentralml_core.chain.model import AnnotationType, StorageType, TaskType, ValidationStrategy
from decentralml_core.keys import load_keypair
from decentralml_core.sandbox import SandboxLimits
from decentralml_core.storage import StorageConfig

ROLE_TASK_TYPES = {"annotator": TaskType.DATA_ANNOTATORS, "engineer": TaskType.MODEL_ENGINEER,
                   "contributor": TaskType.MODEL_CONTRIBUTOR}
ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key path."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeySection(Strict):
    env: str | None = Field(None, description="variable holding a key URI or mnemonic")
    keyfile: Path | None = None
    password_env: str = "DECENTRALML_KEY_PASSWORD"
    dev: str | None = Field(None, description="a dev account (Alice … Ferdie): devnets only")

    @model_validator(mode="after")
    def exactly_one(self) -> KeySection:
        if sum(x is not None for x in (self.env, self.keyfile, self.dev)) != 1:
            raise ValueError("give exactly one of env, keyfile, dev")
        return self

    def load(self):
        if self.dev:
            return load_keypair(f"//{self.dev.capitalize()}")
        if self.keyfile:
            return load_keypair(keyfile=self.keyfile, password=os.environ.get(self.password_env))
        secret = os.environ.get(self.env or "")
        if not secret:
            raise ConfigError(f"key.env: ${self.env} is not set")
        return load_keypair(secret)


class StorageSection(Strict):
    root: Path = Field(default_factory=lambda: StorageConfig().local_root)
    gateways: list[str] = []
    ipfs_api: str | None = None
    s3_bucket: str | None = None
    s3_endpoint: str | None = None

    def config(self) -> StorageConfig:
        return StorageConfig(local_root=self.root, gateways=list(self.gateways), ipfs_api=self.ipfs_api,
                             s3_bucket=self.s3_bucket, s3_endpoint=self.s3_endpoint)


class SandboxSection(Strict):
    timeout_s: float = Field(SandboxLimits.timeout_s, gt=0)
    cpu_s: int = Field(SandboxLimits.cpu_s, gt=0)
    memory_mb: int = Field(SandboxLimits.memory_mb, gt=0)
    max_procs: int = Field(SandboxLimits.max_procs, gt=0)
    max_file_mb: int = Field(SandboxLimits.max_file_mb, gt=0)
    max_output_mb: int = Field(SandboxLimits.max_output_mb, gt=0)
    allow_unsandboxed: bool = False
    share_python: bool = Field(False, description="scripts may run the agent's python3 and its packages (numpy)")

    def limits(self) -> SandboxLimits:
        return SandboxLimits(timeout_s=self.timeout_s, cpu_s=self.cpu_s, memory_mb=self.memory_mb,
                             max_procs=self.max_procs, max_file_mb=self.max_file_mb,
                             max_output_mb=self.max_output_mb, share_python=self.share_python)


class WorkerPolicy(Strict):
    annotation_types: list[AnnotationType] | None = None
    class_labels: list[str] | None = Field(None, description="take only tasks whose labels are all in this list")
    min_pay: int = Field(0, ge=0)
    max_concurrent: int = Field(2, ge=1, le=256)
    max_asset_mb: int = Field(512, gt=0)
    storage_types: list[StorageType] = [StorageType.IPFS]
    min_blocks_left: int = Field(5, ge=0)


class PublishedTask(Strict):
    name: str = Field(..., min_length=1, max_length=64)
    task_type: TaskType = TaskType.DATA_ANNOTATORS
    assets: Path
    question: str
    pays: int = Field(..., gt=0)
    max_assignments: int = Field(1, ge=1, le=9999)
    expires_in: int = Field(600, gt=0, description="blocks")
    strategy: ValidationStrategy = ValidationStrategy.MANUAL_ACCEPT
    validator: str | None = Field(None, description="CustomAccept: outputs_present, json_outputs, coco_schema "
                                                    "or 'package.module:function'")
    annotation_type: AnnotationType = AnnotationType.IMAGE
    class_labels: str | None = None
    storage_type: StorageType = StorageType.IPFS
    annotation_json: dict = Field({}, description="extra parameters for the task's script (e.g. detector)")

    @model_validator(mode="after")
    def validator_for_custom(self) -> PublishedTask:
        if self.strategy == ValidationStrategy.CUSTOM_ACCEPT and not self.validator:
            raise ValueError("strategy CustomAccept needs a validator")
        return self


class ReviewSection(Strict):
    auto_approve_after_s: float | None = Field(None, gt=0, description="ManualAccept: accept if not reviewed in time")


class AgentConfig(Strict):
    role: Literal["creator", "annotator", "engineer", "contributor"]
    node: str = "ws://127.0.0.1:9944"
    key: KeySection
    state_dir: Path
    storage: StorageSection = StorageSection()
    sandbox: SandboxSection = SandboxSection()
    policy: WorkerPolicy = WorkerPolicy()
    tasks: list[PublishedTask] = []
    review: ReviewSection = ReviewSection()
    metrics_port: int | None = Field(None, ge=0, le=65535, description="serve /metrics and /healthz on 127.0.0.1")

    @model_validator(mode="after")
    def role_sections(self) -> AgentConfig:
        if self.role != "creator" and self.tasks:
            raise ValueError(f"tasks: only a creator publishes tasks, this agent is a {self.role}")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError("tasks: names must be unique (they identify a task across restarts)")
        return self

    @property
    def task_type(self) -> TaskType | None:
        return ROLE_TASK_TYPES.get(self.role)


def _expand(value, path: str):
    """``${VAR}`` anywhere in a string value is replaced from the environment."""
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        def sub(match: re.Match) -> str:
            if match.group(1) not in os.environ:
                raise ConfigError(f"{path}: ${{{match.group(1)}}} is not set")
            return os.environ[match.group(1)]
        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, value)
    return value


def load_config(path: str | Path) -> AgentConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top")
    if isinstance(raw.get("key"), str):
        raise ConfigError(f"{path}: key: secrets are never inline; use key: {{env: VAR}}, {{keyfile: PATH}} "
                          "or {dev: NAME}")
    raw = _expand(raw, "")
    base = path.parent
    try:
        config = AgentConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise ConfigError(f"{path}: {where}: {first['msg']}" + (
            f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")) from None
    # relative paths are relative to the config file
    def rel(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    return config.model_copy(update={
        "state_dir": rel(config.state_dir),
        "storage": config.storage.model_copy(update={"root": rel(config.storage.root)}),
        "tasks": [t.model_copy(update={"assets": rel(t.assets)}) for t in config.tasks],
    })
