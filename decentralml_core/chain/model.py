"""The DecentralML pallet's types as Python objects: enums, tasks, submissions, and what a call sends.

Bounds are the pallet's (``BoundedVec<u8, N>`` limits), checked before anything is signed so an
operator gets an error naming the field and its limit instead of a node's "invalid format".
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, TypeVar

from .errors import FieldTooLong

E = TypeVar("E", bound=StrEnum)


class TaskType(StrEnum):
    DATA_ANNOTATORS = "DataAnnotators"
    MODEL_CONTRIBUTOR = "ModelContributor"
    MODEL_ENGINEER = "ModelEngineer"


class ValidationStrategy(StrEnum):
    AUTO_ACCEPT = "AutoAccept"
    MANUAL_ACCEPT = "ManualAccept"
    CUSTOM_ACCEPT = "CustomAccept"


class StorageType(StrEnum):
    IPFS = "IPFS"
    CRUST = "Crust"
    S3 = "S3"
    GCP = "GCP"
    AZURE = "Azure"


STORAGE_TYPES = (StorageType.IPFS.value, StorageType.S3.value)
"""The storage types decentralml_core.storage publishes to and fetches from (the commands offer these)."""


class AnnotationType(StrEnum):
    IMAGE = "Image"
    AUDIO = "Audio"
    TEXT = "Text"
    VIDEO = "Video"


class SubmissionStatus(StrEnum):
    ASSIGNED = "Assigned"
    PENDING_VALIDATION = "PendingValidation"
    VALIDATED = "Validated"
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    ABANDONED = "Abandoned"  # ours: the assignment's deadline passed without a result


class TaskStatus(StrEnum):
    CREATED = "Created"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    WITHDRAWN = "Withdrawn"


PATH, CREDENTIALS = 512, 1024
BOUNDS: dict[str, int] = {
    "question": 2048, "model_contributor_script_path": PATH, "model_contributor_script_storage_credentials": CREDENTIALS,
    "annotation_class_labels": 1024, "annotation_class_coordinates": 2048, "annotation_json": 4096,
    "annotation_files_storage_credentials": CREDENTIALS, "model_engineer_path": PATH,
    "model_engineer_storage_credentials": CREDENTIALS, "result": 2048, "result_path": PATH,
    "result_storage_credentials": CREDENTIALS, "reason": 1024,
}
"""Byte limits of the pallet's ``BoundedVec<u8, N>`` fields."""
MAX_FILES = 100
"""``annotation_media_samples`` and ``annotation_files`` hold at most this many names of ≤ 512 bytes."""


def _text(value: Any) -> str | None:
    """A chain byte string as text; substrate-interface gives str, or '0x…' for non-UTF-8 bytes."""
    return None if value is None else str(value)


def check_bytes(name: str, value: str | bytes | None) -> None:
    if value is None:
        return
    size = len(value.encode() if isinstance(value, str) else value)
    if size > BOUNDS[name]:
        raise _too_long(name, BOUNDS[name], size)


def check_files(name: str, values: list[str] | None) -> None:
    if values is None:
        return
    if len(values) > MAX_FILES:
        raise _too_long(name, MAX_FILES, len(values), "entries")
    for i, value in enumerate(values):
        size = len(value.encode())
        if size > PATH:
            raise _too_long(f"{name}[{i}]", PATH, size)


def _too_long(name: str, limit: int, actual: int, unit: str = "bytes") -> FieldTooLong:
    return FieldTooLong(name, limit, actual, unit)


@dataclass(frozen=True)
class TaskSpec:
    """Everything ``create_task`` sends, named as the pallet names its arguments."""

    task_type: TaskType
    question: str
    pays_amount: int
    expiration_block: int
    max_assignments: int
    validation_strategy: ValidationStrategy
    model_contributor_script_path: str | None = None
    model_contributor_script_storage_type: StorageType | None = None
    model_contributor_script_storage_credentials: str | None = None
    annotation_type: AnnotationType | None = None
    annotation_media_samples: list[str] | None = None
    annotation_files: list[str] | None = None
    annotation_class_labels: str | None = None
    annotation_class_coordinates: str | None = None
    annotation_json: str | None = None
    annotation_files_storage_type: StorageType | None = None
    annotation_files_storage_credentials: str | None = None
    model_engineer_path: str | None = None
    model_engineer_storage_type: StorageType | None = None
    model_engineer_storage_credentials: str | None = None

    @classmethod
    def for_type(cls, task_type: TaskType | str, location: str | None, storage_type: StorageType | str | None,
                 credentials: str | None = "", annotation: dict[str, Any] | None = None,
                 **common: Any) -> TaskSpec:
        """The spec of a task of ``task_type`` whose files are at ``location`` (a folder's reference): the
        pallet keeps it, its storage type and credentials in different fields per task type
        (``model_engineer_path``, ``model_contributor_script_path``; a data-annotation task names its files
        in ``annotation`` — ``annotation_files`` etc. — and its folder in ``annotation_json``). ``common``:
        question, pays_amount, expiration_block, max_assignments, validation_strategy, annotation_json."""
        storage = None if storage_type is None else StorageType(storage_type)
        task_type = TaskType(task_type)
        common["validation_strategy"] = ValidationStrategy(common["validation_strategy"])
        if task_type == TaskType.MODEL_ENGINEER:
            return cls(task_type=task_type, **common, model_engineer_path=location,
                       model_engineer_storage_type=storage, model_engineer_storage_credentials=credentials)
        if task_type == TaskType.MODEL_CONTRIBUTOR:
            return cls(task_type=task_type, **common, model_contributor_script_path=location,
                       model_contributor_script_storage_type=storage,
                       model_contributor_script_storage_credentials=credentials)
        return cls(task_type=task_type, **common, **(annotation or {}), annotation_files_storage_type=storage,
                   annotation_files_storage_credentials=credentials)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in BOUNDS:
                check_bytes(f.name, value)
            elif f.name in ("annotation_media_samples", "annotation_files"):
                check_files(f.name, value)

    def call_params(self) -> dict[str, Any]:
        """The ``create_task`` arguments as substrate-interface composes them.

        A list of ``BoundedVec`` is a one-field tuple struct in metadata, so scalecodec wants the
        list wrapped once more, as upstream's own client sends it.
        """
        params = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("annotation_media_samples", "annotation_files"):
            if params[name] is not None:
                params[name] = [list(params[name])]
        return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in params.items()}


MAX_CLIENT_TOKEN = 64
"""``create_task_with_terms``'s ``client_token`` is a ``BoundedVec<u8, 64>`` (MTurk's UniqueRequestToken: 64)."""
PERMILL = 1_000_000
MAX_DISTINCT_CREATORS = 16
"""The largest ``min_distinct_creators`` our pallet accepts (its constant ``MaxDistinctCreators``)."""


@dataclass(frozen=True)
class WorkerStats:
    """A worker's on-chain record (``WorkerStats``): what qualifications are checked against.

    Only dealings with others count (nothing on the worker's own tasks); ``abandoned`` counts only the
    assignments the worker let lapse (not those the task's expiry cut short); ``creators`` are the
    distinct creators who accepted one of its results (the chain keeps at most 17).
    """

    accepted: int = 0
    rejected: int = 0
    abandoned: int = 0
    creators: tuple[str, ...] = ()

    @classmethod
    def from_chain(cls, value: dict[str, Any]) -> WorkerStats:
        return cls(accepted=value["accepted"], rejected=value["rejected"], abandoned=value["abandoned"],
                   creators=tuple(value.get("creators") or ()))

    @property
    def rejection_rate(self) -> float:
        decided = self.accepted + self.rejected
        return self.rejected / decided if decided else 0.0

    def distinct_creators(self, besides: str) -> int:
        """How many creators other than ``besides`` (the asking task's) accepted this worker's results."""
        return sum(1 for c in self.creators if c != besides)

    def summary(self) -> str:
        return (f"{self.accepted} accepted, {self.rejected} rejected, {self.abandoned} abandoned, "
                f"accepted by {len(self.creators)} creator(s)")


def _above(count: int, limit: int | None, total: int) -> bool:
    """``count / total > limit`` (Permill) in integers, as the pallet; nothing to judge is never above."""
    return limit is not None and total > 0 and count * PERMILL > limit * total


@dataclass(frozen=True)
class TaskTerms:
    """A task's market rules (``TaskTerms``; our pallet only). The defaults are a task without rules.

    ``submit_within``: blocks after ``assign_task`` to send the result, else the assignment is
    abandoned; ``review_window``: blocks after the result the creator has to decide, else the worker
    may ``claim_payment``; ``min_accepted``, ``max_rejection_rate`` (a fraction, 0–1, kept on chain
    in parts per million), ``min_distinct_creators`` (creators other than this task's who accepted the
    worker's results, at most 16) and ``max_abandonment_rate`` (abandoned / (accepted + rejected +
    abandoned), a fraction): who ``assign_task`` admits.
    """

    submit_within: int | None = None
    review_window: int | None = None
    min_accepted: int = 0
    max_rejection_rate: float | None = None
    min_distinct_creators: int = 0
    max_abandonment_rate: float | None = None

    def __post_init__(self) -> None:
        for name in ("submit_within", "review_window"):
            value = getattr(self, name)
            if value is not None and not 1 <= value < 1 << 32:
                raise ValueError(f"{name} is a number of blocks, at least 1 (or None for no limit)")
        if not 0 <= self.min_accepted < 1 << 32:
            raise ValueError("min_accepted is a count (u32)")
        for name in ("max_rejection_rate", "max_abandonment_rate"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{name} is a fraction from 0 to 1 (or None for no limit)")
        if not 0 <= self.min_distinct_creators <= MAX_DISTINCT_CREATORS:
            raise ValueError(f"min_distinct_creators is a count from 0 to {MAX_DISTINCT_CREATORS}")

    @property
    def is_default(self) -> bool:
        return self == TaskTerms()

    @property
    def qualifies_anyone(self) -> bool:
        """No qualification asked: every worker passes, without reading its record."""
        return (self.min_accepted == 0 and self.max_rejection_rate is None and self.min_distinct_creators == 0
                and self.max_abandonment_rate is None)

    @property
    def max_rejection_permill(self) -> int | None:
        return _permill(self.max_rejection_rate)

    @property
    def max_abandonment_permill(self) -> int | None:
        return _permill(self.max_abandonment_rate)

    def call_params(self) -> dict[str, Any]:
        return {"submit_within": self.submit_within, "review_window": self.review_window,
                "min_accepted": self.min_accepted, "max_rejection_rate": self.max_rejection_permill,
                "min_distinct_creators": self.min_distinct_creators,
                "max_abandonment_rate": self.max_abandonment_permill}

    @classmethod
    def from_chain(cls, value: dict[str, Any] | None) -> TaskTerms:
        if value is None:
            return cls()
        rates = {k: None if value.get(k) is None else value[k] / PERMILL
                 for k in ("max_rejection_rate", "max_abandonment_rate")}
        return cls(submit_within=value.get("submit_within"), review_window=value.get("review_window"),
                   min_accepted=value.get("min_accepted") or 0,
                   min_distinct_creators=value.get("min_distinct_creators") or 0, **rates)

    def refusal(self, stats: WorkerStats, creator: str) -> str | None:
        """The error ``assign_task`` would fail with for a worker with ``stats`` on a task of ``creator``
        (as the pallet checks)."""
        decided = stats.accepted + stats.rejected
        if stats.accepted < self.min_accepted:
            return "TooFewAccepted"
        if _above(stats.rejected, self.max_rejection_permill, decided):
            return "RejectionRateTooHigh"
        if stats.distinct_creators(besides=creator) < self.min_distinct_creators:
            return "TooFewDistinctCreators"
        if _above(stats.abandoned, self.max_abandonment_permill, decided + stats.abandoned):
            return "AbandonmentRateTooHigh"
        return None

    def requirements(self) -> str:
        """The qualifications asked, for a worker's log line."""
        return (f"≥ {self.min_accepted} accepted, a rejection rate ≤ {self.max_rejection_rate}, "
                f"≥ {self.min_distinct_creators} other creator(s) and an abandonment rate ≤ {self.max_abandonment_rate}")


def _permill(fraction: float | None) -> int | None:
    return None if fraction is None else round(fraction * PERMILL)


@dataclass(frozen=True)
class ResultSpec:
    """What ``send_task_result`` sends: an inline result, or a path in some storage, or both."""

    submission_id: int
    result: str | None = None
    result_path: str | None = None
    result_storage_type: StorageType | None = None
    result_storage_credentials: str | None = None

    def __post_init__(self) -> None:
        for name in ("result", "result_path", "result_storage_credentials"):
            check_bytes(name, getattr(self, name))

    def call_params(self) -> dict[str, Any]:
        return {f.name: (str(v) if isinstance(v, StrEnum) else v) for f in fields(self)
                for v in [getattr(self, f.name)]}


def parse_class_labels(text: str | None) -> list[str]:
    """Class labels as the chain stores them ("cat, dog,,bird") → ``["cat", "dog", "bird"]``."""
    return [label.strip() for label in (text or "").split(",") if label.strip()]


@dataclass(frozen=True)
class Task:
    """A task as stored on chain (``Tasks``), with its id."""

    task_id: int
    status: TaskStatus
    task_type: TaskType
    creator: str
    pays_amount: int
    creation_block: int
    expiration_block: int
    max_assignments: int
    validation_strategy: ValidationStrategy
    question: str | None
    annotation_type: AnnotationType | None = None
    annotation_media_samples: list[str] = field(default_factory=list)
    annotation_files: list[str] = field(default_factory=list)
    annotation_class_labels: str | None = None
    annotation_class_coordinates: str | None = None
    annotation_json: str | None = None
    annotation_files_storage_type: StorageType | None = None
    annotation_files_storage_credentials: str | None = None
    model_contributor_script_path: str | None = None
    model_contributor_script_storage_type: StorageType | None = None
    model_contributor_script_storage_credentials: str | None = None
    model_engineer_path: str | None = None
    model_engineer_storage_type: StorageType | None = None
    model_engineer_storage_credentials: str | None = None
    terms: TaskTerms = field(default_factory=TaskTerms)  # from TaskTerms, beside Tasks (our pallet)

    @property
    def class_labels(self) -> list[str]:
        """``annotation_class_labels`` parsed: the chain holds one comma-separated string; blanks dropped."""
        return parse_class_labels(self.annotation_class_labels)

    @classmethod
    def from_chain(cls, task_id: int, value: dict[str, Any], terms: TaskTerms | None = None) -> Task:
        def opt(enum: type[E], key: str) -> E | None:
            return None if value.get(key) is None else enum(value[key])

        return cls(
            task_id=task_id, status=TaskStatus(value["status"]), task_type=TaskType(value["task_type"]),
            creator=value["creator"], pays_amount=value["pays_amount"], creation_block=value["creation_block"],
            expiration_block=value["expiration_block"], max_assignments=value["max_assignments"],
            validation_strategy=ValidationStrategy(value["validation_strategy"]), question=_text(value["question"]),
            annotation_type=opt(AnnotationType, "annotation_type"),
            annotation_media_samples=[str(v) for v in value.get("annotation_media_samples") or []],
            annotation_files=[str(v) for v in value.get("annotation_files") or []],
            annotation_class_labels=_text(value.get("annotation_class_labels")),
            annotation_class_coordinates=_text(value.get("annotation_class_coordinates")),
            annotation_json=_text(value.get("annotation_json")),
            annotation_files_storage_type=opt(StorageType, "annotation_files_storage_type"),
            annotation_files_storage_credentials=_text(value.get("annotation_files_storage_credentials")),
            model_contributor_script_path=_text(value.get("model_contributor_script_path")),
            model_contributor_script_storage_type=opt(StorageType, "model_contributor_script_storage_type"),
            model_contributor_script_storage_credentials=_text(value.get("model_contributor_script_storage_credentials")),
            model_engineer_path=_text(value.get("model_engineer_path")),
            model_engineer_storage_type=opt(StorageType, "model_engineer_storage_type"),
            model_engineer_storage_credentials=_text(value.get("model_engineer_storage_credentials")),
            terms=terms or TaskTerms(),
        )

    @property
    def escrow(self) -> int:
        return self.pays_amount * self.max_assignments


@dataclass(frozen=True)
class Submission:
    """A worker's assignment and, once sent, its result (``TaskResultSubmissions``)."""

    submission_id: int
    task_id: int
    worker: str
    created_block: int
    status: SubmissionStatus
    result: str | None = None
    result_path: str | None = None
    result_storage_type: StorageType | None = None
    result_storage_credentials: str | None = None
    paid_amount: int | None = None
    paid_block: int | None = None
    submitted_block: int | None = None  # ResultSubmittedAt (our pallet): when the review window opened
    submit_deadline_block: int | None = None  # the last block to send the result, if the task sets one
    review_deadline_block: int | None = None  # the creator's last block to decide; the worker claims after

    def review_blocks_left(self, now: int) -> int | None:
        """Blocks after ``now`` in which the creator can still decide (0: the worker may claim); None:
        the task has no review window or no result was sent."""
        return None if self.review_deadline_block is None else max(self.review_deadline_block - now, 0)

    def with_terms(self, terms: TaskTerms, submitted_block: int | None) -> Submission:
        """The submission with its deadlines, from the task's terms and ``ResultSubmittedAt``."""
        return replace(
            self, submitted_block=submitted_block,
            submit_deadline_block=None if terms.submit_within is None else self.created_block + terms.submit_within,
            review_deadline_block=None if terms.review_window is None or submitted_block is None
            else submitted_block + terms.review_window)

    @classmethod
    def from_chain(cls, value: dict[str, Any]) -> Submission:
        storage = value.get("result_storage_type")
        return cls(
            submission_id=value["submission_id"], task_id=value["task_id"], worker=value["worker"],
            created_block=value["created_block"], status=SubmissionStatus(value["status"]),
            result=_text(value.get("result")), result_path=_text(value.get("result_path")),
            result_storage_type=None if storage is None else StorageType(storage),
            result_storage_credentials=_text(value.get("result_storage_credentials")),
            paid_amount=value.get("paid_amount"), paid_block=value.get("paid_block"),
        )
