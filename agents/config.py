"""An agent's YAML file, validated on load: an unknown key or a bad value stops start-up with the
key's path and the reason. Secrets are never inline: a key is an environment variable name, a
keyfile path, or (devnets only) a dev account name.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from yarl import URL

from decentralml_core.chain.model import (
    MAX_DISTINCT_CREATORS,
    AnnotationType,
    StorageType,
    TaskTerms,
    TaskType,
    ValidationStrategy,
)
from decentralml_core.keys import load_keypair
from decentralml_core.sandbox import SandboxLimits
from decentralml_core.storage import StorageConfig

from .streams import STOP_GRACE_S
from .validators import ModelUpdateParams, ValidatorParams

ROLE_TASK_TYPES = {"annotator": TaskType.DATA_ANNOTATORS, "engineer": TaskType.MODEL_ENGINEER,
                   "contributor": TaskType.MODEL_CONTRIBUTOR}
T = TypeVar("T")
ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key path."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeySection(Strict):
    """The agent's signing key: exactly one of ``env``, ``keyfile``, ``dev``. Never the secret itself."""

    env: str | None = Field(None, description="name of the environment variable holding the key URI or mnemonic")
    keyfile: Path | None = Field(None, description="a polkadot.js JSON keystore file")
    password_env: str = Field("DECENTRALML_KEY_PASSWORD", description="variable holding the keyfile's password")
    dev: str | None = Field(None, description="a dev account (Alice … Ferdie): devnets only")
    derive: str | None = Field(None, pattern=r"^(//?[^/]+)+$",
                               description="a derivation path on that key (//annotator/3): one secret, many accounts")

    @model_validator(mode="after")
    def exactly_one(self) -> KeySection:
        if sum(x is not None for x in (self.env, self.keyfile, self.dev)) != 1:
            raise ValueError("give exactly one of env, keyfile, dev")
        return self

    def load(self):
        if self.keyfile:
            if self.derive:
                raise ConfigError("key.derive: a keyfile's key cannot be derived from (it holds no secret URI)")
            return load_keypair(keyfile=self.keyfile, password=os.environ.get(self.password_env))
        if self.dev:
            secret = f"//{self.dev.capitalize()}"
        else:
            secret = os.environ.get(self.env or "")
            if not secret:
                raise ConfigError(f"key.env: ${self.env} is not set")
        return load_keypair(secret + (self.derive or ""))


def settings_of(source: type) -> dict[str, Any]:
    """pydantic field definitions mirroring a library settings dataclass: its fields' types and defaults,
    and the description and bounds each declares (``decentralml_core.settings``) — declared once, there."""
    hints = typing.get_type_hints(source)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(source):
        meta = dict(f.metadata)
        if f.default_factory in (list, dict):  # shown as `[]` in the docs rather than "computed"
            out[f.name] = (hints[f.name], Field(f.default_factory(), **meta))
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = (hints[f.name], Field(default_factory=f.default_factory, **meta))
        else:
            out[f.name] = (hints[f.name], Field(f.default, **meta))
    return out


def _settings(model: BaseModel, source: type[T]) -> T:
    """The library dataclass ``source`` from a section built with :func:`settings_of`."""
    return source(**{f.name: getattr(model, f.name) for f in dataclasses.fields(source)})


class _StorageMethods(Strict):
    def config(self) -> StorageConfig:
        return _settings(self, StorageConfig)


StorageSection = create_model(
    "StorageSection", __base__=_StorageMethods, __module__=__name__,
    __doc__="Where task assets and results are published and fetched; every fetched byte is checked against its CID.",
    **settings_of(StorageConfig))


class _SandboxMethods(Strict):
    def limits(self) -> SandboxLimits:
        return _settings(self, SandboxLimits)


SandboxSection = create_model(
    "SandboxSection", __base__=_SandboxMethods, __module__=__name__,
    __doc__="Limits for a task's start_task.sh, run under bubblewrap (no network, only the task dir writable).",
    **settings_of(SandboxLimits),
    allow_unsandboxed=(bool, Field(False, description="run scripts even where bubblewrap is unavailable (unsafe)")))


class WorkerPolicy(Strict):
    """Which tasks a worker takes (unused by a creator); a declined task is journaled as skipped, with why."""

    annotation_types: list[AnnotationType] | None = Field(None, description="take only these annotation types "
                                                                             "(unset: any)")
    class_labels: list[str] | None = Field(None, description="take only tasks whose labels are all in this list")
    min_pay: int = Field(0, ge=0, description="take only tasks paying at least this (planck: 10^-12 UNIT)")
    max_concurrent: int = Field(2, ge=1, le=256, description="tasks worked on at once")
    max_asset_mb: int = Field(512, gt=0, description="refuse a task whose assets (or any file) exceed this")
    storage_types: list[StorageType] = Field([StorageType.IPFS], description="storage types this worker can fetch")
    min_blocks_left: int = Field(5, ge=0, description="skip tasks expiring in fewer blocks than this")
    distrust_after: int = Field(3, ge=0, description="skip a creator's tasks once it has rejected this many of "
                                                     "our results and accepted none (0: never)")
    max_epochs: int | None = Field(None, ge=1, description="contributors: skip a training round asking for more "
                                                          "local epochs than this (its settings.epochs)")


ValidatorSpec = Annotated[Annotated[str, Tag("by_name")] | Annotated[ValidatorParams, Tag("with_params")],
                          Discriminator(lambda v: "by_name" if isinstance(v, str) else "with_params")]
UNION_TAGS = {"by_name", "with_params"}  # left out of error locations: the operator never wrote them


class PublishedTask(Strict):
    """A task the creator publishes once (its pay x max_assignments escrowed), validates and pays."""

    name: str = Field(..., min_length=1, max_length=64, description="identifies the task across restarts "
                                                                     "(unique in the file)")
    task_type: TaskType = Field(TaskType.DATA_ANNOTATORS, description="which workers take it")
    assets: Path = Field(..., description="folder published with the task: annotation_files/, "
                                          "annotation_samples/, start_task.sh")
    question: str = Field(..., description="what the workers are asked (≤ 2048 bytes)")
    pays: int = Field(..., gt=0, description="paid to each accepted worker (planck: 10^-12 UNIT)")
    max_assignments: int = Field(1, ge=1, le=9999, description="how many workers may take it")
    expires_in: int = Field(600, gt=0, description="blocks from publishing until it expires and is closed")
    strategy: ValidationStrategy = Field(ValidationStrategy.MANUAL_ACCEPT,
                                         description="how results are validated: AutoAccept, ManualAccept, "
                                                     "CustomAccept")
    validator: ValidatorSpec | None = Field(
        None, description="CustomAccept: decides; ManualAccept: its scores and boxes advise the reviewer. "
                          "outputs_present, json_outputs, coco_schema, {name: iou_consensus, ...}, "
                          "{name: gold_standard, truth: FILE, ...} or 'package.module:function'")
    annotation_type: AnnotationType = Field(AnnotationType.IMAGE, description="data annotation tasks: the media")
    class_labels: str | None = Field(None, description="comma-separated labels; one sample per label")
    class_coordinates: dict[str, tuple[int, int, int, int]] | None = Field(
        None, description="where each label's object lies in its sample image, [x, y, w, h] px "
                          "(annotation_class_coordinates; the example detector crops the sample to it)")
    storage_type: StorageType = Field(StorageType.IPFS, description="where the assets are published")
    annotation_json: dict = Field({}, description="extra parameters for the task's script (e.g. detector)")
    submit_within: int | None = Field(None, ge=1, description="market rule: blocks a worker has after taking it to "
                                                               "submit; then the slot reopens (unset: no deadline)")
    review_window: int | None = Field(None, ge=1, description="market rule: blocks to decide a result; then the "
                                                               "worker may claim the pay (unset: no window)")
    min_accepted: int = Field(0, ge=0, description="market rule: only workers with this many accepted results")
    max_rejection_rate: float | None = Field(None, ge=0, le=1, description="market rule: only workers whose "
                                                                           "rejected / decided results are ≤ this")
    min_distinct_creators: int = Field(0, ge=0, le=MAX_DISTINCT_CREATORS, description=(
        "market rule: only workers whose accepted results come from this many creators besides this task's own"))
    max_abandonment_rate: float | None = Field(None, ge=0, le=1, description=(
        "market rule: only workers whose abandoned / (decided + abandoned) assignments are ≤ this (an assignment "
        "cut short by a task's expiry is not counted)"))

    def terms(self) -> TaskTerms:
        """The task's market rules; all unset (the default) publishes a task without rules, as before."""
        return TaskTerms(submit_within=self.submit_within, review_window=self.review_window,
                         min_accepted=self.min_accepted, max_rejection_rate=self.max_rejection_rate,
                         min_distinct_creators=self.min_distinct_creators,
                         max_abandonment_rate=self.max_abandonment_rate)

    @model_validator(mode="after")
    def validator_for_custom(self) -> PublishedTask:
        if self.strategy == ValidationStrategy.CUSTOM_ACCEPT and not self.validator:
            raise ValueError("strategy CustomAccept needs a validator")
        return self


class AggregationSection(Strict):
    """How a round's accepted updates become the next global model (Flower's aggregation functions)."""

    rule: Literal["fedavg", "fedmedian", "trimmed_mean", "krum"] = Field(
        "fedavg", description="fedavg (weighted by example count), fedmedian, trimmed_mean or krum")
    trim: float = Field(0.2, ge=0, lt=0.5, description="trimmed_mean: share cut off at each end")
    num_malicious: int = Field(1, ge=0, description="krum: how many updates may be malicious")
    to_keep: int = Field(0, ge=0, description="krum: average this many best updates (Multi-Krum; 0: pick one)")
    server_momentum: float = Field(0.0, ge=0, lt=1, description="FedAvgM: the server steps along global − "
                                   "aggregate with this momentum (0: off; 0.9 damps non-IID drift)")
    server_lr: float = Field(1.0, gt=0, le=2, description="FedAvgM: the server's step size (with server_momentum)")


class EngineeringSection(Strict):
    """After the last round, a ModelEngineer task restructures the final model toward a target."""

    assets: Path = Field(..., description="folder with start_task.sh (and its files); model/model.npz is added")
    question: str = Field("Make this model smaller without losing accuracy", description="what the engineer "
                                                                                           "is asked")
    pays: int = Field(..., gt=0, description="paid for an accepted result (planck)")
    max_bytes: int = Field(..., gt=0, description="the size target: largest accepted model file, in bytes")
    max_drop: float = Field(0.02, ge=0, le=1, description="largest accepted loss of test accuracy")
    model_file: str = Field("model_int8.npz", description="the result's model file")
    expires_in: int = Field(600, gt=0, description="blocks until the task expires")


class CampaignSection(Strict):
    """A federated training campaign: one ModelContributor task per round, whose assets hold the global
    model, the training script and the round's settings; accepted updates are paid and aggregated."""

    name: str = Field(..., min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="identifies the campaign across restarts; rounds are NAME/round-N")
    model: Path = Field(..., description="folder holding global.npz: the initial model's weights")
    script: Path = Field(..., description="folder with start_task.sh and the training script it runs")
    question: str = Field("Train the global model on your own data for one round",
                          description="what the contributors are asked")
    rounds: int = Field(..., ge=1, le=1000, description="rounds at most (the stop rule, with target_accuracy)")
    max_assignments: int = Field(..., ge=1, le=9999, description="contributors per round")
    min_updates: int = Field(1, ge=1, description="accepted updates needed to aggregate a round once it expired")
    pays: int = Field(..., gt=0, description="paid for each accepted update (planck)")
    expires_in: int = Field(100, gt=0, description="blocks a round stays open; it closes early once every "
                                                   "slot's result is decided")
    settings: dict = Field({}, description="the round's training settings, given to the script as round.json "
                                           "(e.g. epochs, lr, batch_size)")
    aggregation: AggregationSection = Field(AggregationSection(), description="how updates are federated")
    validator: ModelUpdateParams = Field(..., description="how each update is judged ({name: model_update, "
                                                          "validation: FILE, ...}); global_model is filled in")
    test: Path | None = Field(None, description="the creator's private test set (.npz x, y) for the global "
                                                "model's metric per round (unset: the validation set)")
    target_accuracy: float | None = Field(None, gt=0, le=1, description="stop once the global model reaches this")
    storage_type: StorageType = Field(StorageType.IPFS, description="where round assets are published")
    submit_within: int | None = Field(None, ge=1, description="market rule: blocks a contributor has to submit")
    review_window: int | None = Field(None, ge=1, description="market rule: blocks to decide an update")
    engineering: EngineeringSection | None = Field(None, description="hand the final model to a ModelEngineer "
                                                                     "task")

    @model_validator(mode="after")
    def updates_fit(self) -> CampaignSection:
        if self.min_updates > self.max_assignments:
            raise ValueError("min_updates cannot exceed max_assignments (contributors per round)")
        for key, path in (("model", self.model / "global.npz"), ("script", self.script / "start_task.sh"),
                          ("validator.validation", self.validator.validation), ("test", self.test)):
            if path is not None and not path.is_file():  # at start-up, not at the first round
                raise ValueError(f"{key}: {path} is not a file")
        return self


class ReviewSection(Strict):
    """ManualAccept results wait for `decentralml review accept|reject`."""

    auto_approve_after_s: float | None = Field(None, gt=0, description="ManualAccept: accept if not reviewed in time")
    web_port: int | None = Field(None, ge=0, le=65535, description="serve the review page on this port "
                                                                   "(log in with the review token)")
    web_host: str = Field("127.0.0.1", description="the review page's address; another than loopback only "
                                                  "behind a TLS proxy")
    token_env: str = Field("DECENTRALML_REVIEW_TOKEN", description="variable holding the review page's login "
                                                                   "token (16 characters or more); unset: one is "
                                                                   "generated into state_dir/review.token (mode 0600)")
    public_origin: str | None = Field(None, description="the page's address as browsers reach it through a TLS "
                                                        "proxy, e.g. https://review.example.org: requests whose Host "
                                                        "is its host (the proxy passes Host on) take their forms "
                                                        "from it and get Secure cookies")

    @field_validator("public_origin")
    @classmethod
    def an_origin(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = URL(value)
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/") or url.query_string:
            raise ValueError("an origin is scheme://host[:port], e.g. https://review.example.org")
        return str(url.origin())


class AgentConfig(Strict):
    """One agent's YAML (`decentralml agent run FILE`). Relative paths are relative to the file;
    ``${VAR}`` in a string value is replaced from the environment."""

    role: Literal["creator", "annotator", "engineer", "contributor"] = Field(
        ..., description="creator publishes and pays; the others take tasks of their type")
    node: str = Field("ws://127.0.0.1:9944", description="the chain node's WebSocket URL")
    key: KeySection = Field(..., description="the signing key")
    state_dir: Path = Field(..., description="the journal (journal.sqlite), work dirs and fetched results")
    storage: StorageSection = Field(StorageSection(), description="where assets and results are published")
    sandbox: SandboxSection = Field(SandboxSection(), description="limits for task scripts (workers)")
    policy: WorkerPolicy = Field(WorkerPolicy(), description="which tasks to take (workers)")
    tasks: list[PublishedTask] = Field([], description="tasks to publish (creator only)")
    campaigns: list[CampaignSection] = Field([], description="federated training campaigns to run (creator only)")
    data: Path | None = Field(None, description="contributor: its private data folder, mounted read-only at /data "
                                                "in the sandbox ($DECENTRALML_DATA); never uploaded")
    review: ReviewSection = Field(ReviewSection(), description="ManualAccept review (creator)")
    metrics_port: int | None = Field(None, ge=0, le=65535, description="serve /metrics and /healthz on 127.0.0.1")
    # At most the default: a creator may take it twice (a handler, then the decisions in flight), and an agent
    # still running 30 s after SIGTERM reports itself stuck (runtime.STOP_OVERDUE_S).
    stop_grace_s: float = Field(STOP_GRACE_S, ge=0, le=STOP_GRACE_S, description="after SIGTERM, how long the steps "
                                "in flight get to finish; then they are cancelled where they stand and resume at the "
                                "next start (a service manager's stop timeout must be longer)")

    @model_validator(mode="after")
    def role_sections(self) -> AgentConfig:
        if self.role != "creator" and (self.tasks or self.campaigns):
            raise ValueError(f"tasks: only a creator publishes tasks, this agent is a {self.role}")
        if self.data is not None and not self.data.is_dir():
            raise ValueError(f"data: {self.data} is not a folder")
        names = [t.name for t in self.tasks] + [c.name for c in self.campaigns]
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


def validate_config(raw: dict) -> AgentConfig:
    """``${VAR}`` expanded, then validated; the error names the first bad key's path."""
    try:
        return AgentConfig.model_validate(_expand(raw, ""))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p not in UNION_TAGS
                         and not str(p).startswith("tagged-union[")) or "(top)"
        raise ConfigError(f"{where}: {first['msg']}" + (
            f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")) from None


VALIDATOR_PATHS = ("truth", "validation", "global_model", "reference", "test")  # validators' file parameters


def absolute_paths(raw: dict, base: Path) -> dict:
    """The path-valued keys of an agent's YAML made absolute against ``base``, the folder of the file
    they were written in — before validation, so a farm can merge pieces from several files. A value
    still holding ``${VAR}`` is left for the environment to complete."""
    def rel(p: Any) -> Any:
        if not isinstance(p, str) or "${" in p or Path(p).is_absolute():
            return p
        return str((base / p).resolve())

    def validator_paths(validator: Any) -> Any:
        if not isinstance(validator, dict):
            return validator
        return {k: rel(v) if k in VALIDATOR_PATHS else v for k, v in validator.items()}

    def task(t: Any) -> Any:
        if not isinstance(t, dict):
            return t
        t = {**t, "assets": rel(t["assets"])} if "assets" in t else t
        return {**t, "validator": validator_paths(t["validator"])} if "validator" in t else t

    def campaign(c: Any) -> Any:
        if not isinstance(c, dict):
            return c
        c = {**c, **{k: rel(c[k]) for k in ("model", "script", "test") if k in c}}
        if isinstance(c.get("engineering"), dict) and "assets" in c["engineering"]:
            c["engineering"] = {**c["engineering"], "assets": rel(c["engineering"]["assets"])}
        return {**c, "validator": validator_paths(c["validator"])} if "validator" in c else c

    out = dict(raw)
    if "state_dir" in out:
        out["state_dir"] = rel(out["state_dir"])
    if isinstance(out.get("storage"), dict) and "root" in out["storage"]:
        out["storage"] = {**out["storage"], "root": rel(out["storage"]["root"])}
    if isinstance(out.get("key"), dict) and "keyfile" in out["key"]:
        out["key"] = {**out["key"], "keyfile": rel(out["key"]["keyfile"])}
    if isinstance(out.get("tasks"), list):
        out["tasks"] = [task(t) for t in out["tasks"]]
    if "data" in out:
        out["data"] = rel(out["data"])
    if isinstance(out.get("campaigns"), list):
        out["campaigns"] = [campaign(c) for c in out["campaigns"]]
    return out


def read_yaml_mapping(path: Path, what: str = "") -> dict:
    """A YAML file whose top is a mapping; any failure is a one-line ConfigError naming ``what`` and the file."""
    where = f"{what}: {path}" if what else str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top")
    return raw


def load_config(path: str | Path) -> AgentConfig:
    path = Path(path)
    raw = read_yaml_mapping(path)
    if isinstance(raw.get("key"), str):
        raise ConfigError(f"{path}: key: secrets are never inline; use key: {{env: VAR}}, {{keyfile: PATH}} "
                          "or {dev: NAME}")
    try:
        return validate_config(absolute_paths(_expand(raw, ""), path.parent))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
