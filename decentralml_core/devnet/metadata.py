"""The devnet runtime, declared in Python and published as real metadata V14.

The declaration mirrors the upstream DecentralML node (polkadot-v1.0.0 node-template): pallet
names and indices, call/event/error order, storage names and hashers, the signed extensions and the
type paths clients map to their own classes. ``build_runtime`` turns it into a portable type registry,
SCALE-encodes the metadata with scalecodec, and keeps the lookups the runtime needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from scalecodec.base import RuntimeConfiguration
from scalecodec.type_registry import load_type_registry_preset

from ..chain.model import MAX_CLIENT_TOKEN
from .codec import Codec
from .hashing import storage_prefix
from .pallet_docs import BALANCES_ERROR_DOCS, CALL_DOCS, ERROR_DOCS, SYSTEM_ERROR_DOCS
from .typereg import Field, TypeRegistry

SPEC_NAME = "node-template"
SPEC_VERSION = 100
TRANSACTION_VERSION = 1
SS58_PREFIX = 42
TOKEN_DECIMALS = 12
TOKEN_SYMBOL = "UNIT"
EXISTENTIAL_DEPOSIT = 500
BLOCK_HASH_COUNT = 2400
MIN_CONTRIBUTION = 500
MAX_OPEN_TASKS = 10_000_000
MAX_SUBMISSIONS_PER_WORKER = 10_000_000
MAX_SUBMISSION_IDS = 10_000

METADATA_VERSION = 14  # the only metadata version published (_encode_metadata builds V14)

# Runtime APIs as (blake2_64 name hash, version), as a polkadot-v1.0.0 node-template lists them.
RUNTIME_APIS = [
    ("0xdf6acb689907609b", 4),  # Core
    ("0x37e397fc7c91f5e4", 2),  # Metadata (v2: metadata_versions / metadata_at_version; V14 only)
    ("0x40fe3ad401f8959a", 6),  # BlockBuilder
    ("0xd2bc9897eed08f15", 3),  # TaggedTransactionQueue
    ("0xbc9d89904f5b923f", 1),  # AccountNonceApi
    ("0x37c8bb1350a9a2a8", 4),  # TransactionPaymentApi
]


@dataclass
class Arg:
    name: str
    type_id: int
    type_name: str
    max_len: int | None = None  # BoundedVec bound (bytes or items), checked after decoding
    item_max_len: int | None = None  # bound of each item of a bounded list of byte strings


@dataclass
class Call:
    name: str
    args: list[Arg]
    docs: str | list[str] = ""
    """The call's doc lines in metadata (a ``str`` is one line)."""

    @property
    def doc_lines(self) -> list[str]:
        return [self.docs] if isinstance(self.docs, str) and self.docs else list(self.docs or [])


@dataclass
class Storage:
    name: str
    value: int
    keys: list[tuple[str, int]] = field(default_factory=list)  # (hasher, key type) per map key
    optional: bool = True  # OptionQuery; ValueQuery entries read their default when absent
    default: bytes = b"\x00"


@dataclass
class Pallet:
    name: str
    index: int
    module: str
    calls: list[Call] | None = None
    events: Sequence[tuple[str, Sequence[Field]]] | None = None
    errors: list[str] | None = None
    storage: list[Storage] = field(default_factory=list)
    constants: list[tuple[str, int, bytes]] = field(default_factory=list)
    error_docs: dict[str, list[str]] = field(default_factory=dict)  # error name → its doc lines


class Types:
    """The ids of the shared Substrate types every pallet refers to."""

    def __init__(self, reg: TypeRegistry) -> None:
        self.reg = reg
        r = reg
        self.u8, self.u16, self.u32, self.u64, self.u128 = (
            r.primitive(n) for n in ("u8", "u16", "u32", "u64", "u128")
        )
        self.bool = r.primitive("bool")
        self.str = r.primitive("str")
        self.bytes = r.bytes()
        self.bounded_bytes = r.bounded_vec(self.u8)
        self.bounded_u32s = r.bounded_vec(self.u32)
        self.bytes32 = r.array(32, self.u8)
        self.h256 = r.composite(["primitive_types", "H256"], [(None, self.bytes32, "[u8; 32]")])
        self.account = r.composite(["sp_core", "crypto", "AccountId32"], [(None, self.bytes32, "[u8; 32]")])
        self.compact_u32 = r.compact(self.u32)
        self.compact_u64 = r.compact(self.u64)
        self.compact_u128 = r.compact(self.u128)
        self.unit = r.unit()
        self.multi_address = r.variant(
            ["sp_runtime", "multiaddress", "MultiAddress"],
            [
                ("Id", [(None, self.account, "AccountId")]),
                ("Index", [(None, r.compact(self.unit), "AccountIndex")]),
                ("Raw", [(None, self.bytes, "Vec<u8>")]),
                ("Address32", [(None, self.bytes32, "[u8; 32]")]),
                ("Address20", [(None, r.array(20, self.u8), "[u8; 20]")]),
            ],
            [("AccountId", self.account), ("AccountIndex", self.unit)],
        )
        sig64 = r.array(64, self.u8)
        self.multi_signature = r.variant(
            ["sp_runtime", "MultiSignature"],
            [
                ("Ed25519", [(None, r.composite(["sp_core", "ed25519", "Signature"],
                                                [(None, sig64, "[u8; 64]")]), "ed25519::Signature")]),
                ("Sr25519", [(None, r.composite(["sp_core", "sr25519", "Signature"],
                                                [(None, sig64, "[u8; 64]")]), "sr25519::Signature")]),
                ("Ecdsa", [(None, r.composite(["sp_core", "ecdsa", "Signature"],
                                              [(None, r.array(65, self.u8), "[u8; 65]")]),
                            "ecdsa::Signature")]),
            ],
        )
        self.era = r.variant(
            ["sp_runtime", "generic", "era", "Era"],
            [("Immortal", [], 0)] + [(f"Mortal{i}", [(None, self.u8, None)], i) for i in range(1, 256)],
        )
        self.weight = r.composite(
            ["sp_weights", "weight_v2", "Weight"],
            [("ref_time", self.compact_u64, "u64"), ("proof_size", self.compact_u64, "u64")],
        )
        self.dispatch_class = r.variant(
            ["frame_support", "dispatch", "DispatchClass"], [("Normal", []), ("Operational", []), ("Mandatory", [])]
        )
        self.pays = r.variant(["frame_support", "dispatch", "Pays"], [("Yes", []), ("No", [])])
        self.dispatch_info = r.composite(
            ["frame_support", "dispatch", "DispatchInfo"],
            [("weight", self.weight, "Weight"), ("class", self.dispatch_class, "DispatchClass"),
             ("pays_fee", self.pays, "Pays")],
        )
        module_error = r.composite(
            ["sp_runtime", "ModuleError"],
            [("index", self.u8, "u8"), ("error", r.array(4, self.u8), "[u8; MAX_MODULE_ERROR_ENCODED_SIZE]")],
        )
        token_error = r.variant(["sp_runtime", "TokenError"], [(n, [], None, [d]) for n, d in (
            ("FundsUnavailable", "Funds are unavailable."),
            ("OnlyProvider", "Some part of the balance gives the only provider reference to the account and thus "
                             "cannot be (re)moved."),
            ("BelowMinimum", "Account cannot exist with the funds that would be given."),
            ("CannotCreate", "Account cannot be created."),
            ("UnknownAsset", "The asset in question is unknown."),
            ("Frozen", "Funds exist but are frozen."),
            ("Unsupported", "Operation is not supported by the asset."),
            ("CannotCreateHold", "Account cannot be created for recording amount on hold."),
            ("NotExpendable", "Account that is desired to remain would die."),
            ("Blocked", "Account cannot receive the assets."))], docs=[
            "Description of what went wrong when trying to complete an operation on a token."])
        arithmetic_error = r.variant(
            ["sp_arithmetic", "ArithmeticError"],
            [("Underflow", [], None, ["Underflow."]), ("Overflow", [], None, ["Overflow."]),
             ("DivisionByZero", [], None, ["Division by zero."])], docs=["Arithmetic errors."],
        )
        transactional_error = r.variant(
            ["sp_runtime", "TransactionalError"], [("LimitReached", []), ("NoLayer", [])]
        )
        self.dispatch_error = r.variant(
            ["sp_runtime", "DispatchError"],
            [
                ("Other", []), ("CannotLookup", []), ("BadOrigin", []),
                ("Module", [(None, module_error, "ModuleError")]),
                ("ConsumerRemaining", []), ("NoProviders", []), ("TooManyConsumers", []),
                ("Token", [(None, token_error, "TokenError")]),
                ("Arithmetic", [(None, arithmetic_error, "ArithmeticError")]),
                ("Transactional", [(None, transactional_error, "TransactionalError")]),
                ("Exhausted", []), ("Corruption", []), ("Unavailable", []), ("RootNotAllowed", []),
            ],
        )
        self.dispatch_result = r.result(self.unit, self.dispatch_error)
        self.account_data = r.composite(
            ["pallet_balances", "types", "AccountData"],
            [("free", self.u128, "Balance"), ("reserved", self.u128, "Balance"),
             ("frozen", self.u128, "Balance"),
             ("flags", r.composite(["pallet_balances", "types", "ExtraFlags"], [(None, self.u128, "u128")]),
              "ExtraFlags")],
            [("Balance", self.u128)],
        )
        self.account_info = r.composite(
            ["frame_system", "AccountInfo"],
            [("nonce", self.u32, "Nonce"), ("consumers", self.u32, "RefCount"),
             ("providers", self.u32, "RefCount"), ("sufficients", self.u32, "RefCount"),
             ("data", self.account_data, "AccountData")],
            [("Nonce", self.u32), ("AccountData", self.account_data)],
        )
        self.phase = r.variant(
            ["frame_system", "Phase"],
            [("ApplyExtrinsic", [(None, self.u32, "u32")]), ("Finalization", []), ("Initialization", [])],
        )
        self.digest = r.composite(
            ["sp_runtime", "generic", "digest", "Digest"],
            [("logs", r.sequence(r.variant(["sp_runtime", "generic", "digest", "DigestItem"], [
                ("PreRuntime", [(None, r.array(4, self.u8), "ConsensusEngineId"), (None, self.bytes, "Vec<u8>")], 6),
                ("Consensus", [(None, r.array(4, self.u8), "ConsensusEngineId"), (None, self.bytes, "Vec<u8>")], 4),
                ("Seal", [(None, r.array(4, self.u8), "ConsensusEngineId"), (None, self.bytes, "Vec<u8>")], 5),
                ("Other", [(None, self.bytes, "Vec<u8>")], 0),
                ("RuntimeEnvironmentUpdated", [], 8),
            ])), "Vec<DigestItem>")],
        )
        self.header = r.composite(
            ["sp_runtime", "generic", "header", "Header"],
            [("parent_hash", self.h256, "Hash::Output"), ("number", self.compact_u32, "Number"),
             ("state_root", self.h256, "Hash::Output"), ("extrinsics_root", self.h256, "Hash::Output"),
             ("digest", self.digest, "Digest")],
        )
        self.fixed_u128 = r.composite(["sp_arithmetic", "fixed_point", "FixedU128"], [(None, self.u128, "u128")])


DECENTRALML_UPSTREAM_ERRORS = (
    "TaskInvalidPaysAmount", "TaskEndTooEarly", "Overflow", "MissingAnnotationType", "MissingAnnotationFiles",
    "MissingAnnotationFilesStorageType", "MissingModelContributorScriptPath",
    "MissingModelContributorScriptStorageType", "MissingModelEngineerPath", "MissingModelEngineerStorageType",
    "InvalidMaxAssignments", "InvalidQuestion", "InvalidTaskType", "TaskNotFound", "MaxAssignmentsReached",
    "OpenTasksLimitReached", "SubmissionNotFound", "InvalidStatus", "NotAuthorized", "WorkerSubmissionLimit",
    "InvalidResultSubmission",
)
"""Upstream's error names in upstream's order (the order is their on-chain index)."""
DECENTRALML_ADDED_ERRORS = ("TaskExpired", "AlreadyAssigned", "TaskNotExpired", "TaskClosed", "AlreadyDecided",
                            "ResultNotSubmitted", "InsufficientEscrow",
                            # the market rules: deadlines, worker protection, qualifications, client tokens
                            "SubmissionDeadlinePassed", "ReviewWindowOpen", "ReviewWindowClosed", "NoReviewWindow",
                            "TooFewAccepted", "RejectionRateTooHigh", "DuplicateClientToken", "InvalidTaskTerms",
                            "TooManyDeadlines",
                            # no escrow strands, no qualification bought by self-dealing
                            "TooFewDistinctCreators", "AbandonmentRateTooHigh", "EmptyClientToken")
"""Ours, appended so upstream's indices stay."""
MAX_DEADLINES_PER_BLOCK = 10_000
"""``AssignmentDeadlines``: at most this many assignments may fall due at one block (bounded on_initialize)."""
PERMILL = 1_000_000
MAX_DISTINCT_CREATORS = 16
"""The largest ``min_distinct_creators`` a task may ask. ``WorkerStats.creators`` keeps at most one more
(17 × 32 B = 544 B per worker, read by each ``assign_task`` that checks it), so that leaving out the
asking task's own creator still leaves enough; past that a worker qualifies for any such term, and the
set stops growing: the record stays bounded however long the worker's history."""


def _opt(r: TypeRegistry, type_id: int) -> int:
    return r.option(type_id)


def _decentralml(t: Types, include_extensions: bool) -> Pallet:
    upstream = not include_extensions
    """The DecentralML pallet: upstream's calls, storage, events and errors, then ours appended."""
    r = t.reg
    m = "pallet_decentralml"
    task_type = r.variant([m, "types", "TaskType"], [(n, []) for n in
                                                    ("DataAnnotators", "ModelContributor", "ModelEngineer")])
    strategy = r.variant([m, "types", "ValidationStrategy"], [(n, []) for n in
                                                             ("AutoAccept", "ManualAccept", "CustomAccept")])
    storage_type = r.variant([m, "types", "StorageType"], [(n, []) for n in ("IPFS", "Crust", "S3", "GCP", "Azure")])
    annotation_type = r.variant([m, "types", "AnnotationType"], [(n, []) for n in ("Image", "Audio", "Text", "Video")])
    sub_status = r.variant([m, "types", "ResultSubmissionStatus"], [(n, []) for n in (
        "Assigned", "PendingValidation", "Validated", "Accepted", "Rejected") + (
        ("Abandoned",) if include_extensions else ())])  # appended: upstream's indices stay
    task_status = r.variant([m, "types", "TaskStatus"], [(n, []) for n in (
        "Created", "InProgress", "Completed", "Withdrawn")])
    bb = t.bounded_bytes
    obb = _opt(r, bb)
    task_terms = worker_stats = -1  # type ids, declared below by the full pallet only (and used only by it)
    if include_extensions:  # only the full pallet declares the market rules' types
        ou32 = _opt(r, t.u32)
        permill = r.composite(["sp_arithmetic", "per_things", "Permill"], [(None, t.u32, "u32")])
        task_terms = r.composite([m, "types", "TaskTerms"], [
            ("submit_within", ou32, "Option<BlockNumber>"), ("review_window", ou32, "Option<BlockNumber>"),
            ("min_accepted", t.u32, "u32"), ("max_rejection_rate", _opt(r, permill), "Option<Permill>"),
            ("min_distinct_creators", t.u32, "u32"), ("max_abandonment_rate", _opt(r, permill), "Option<Permill>"),
        ], docs=["Market rules of a task: blocks to submit after assign_task, blocks the creator has to decide "
                 "a result, and who qualifies (accepted results, rejection rate, distinct creators other than "
                 "this task's who accepted the worker, abandonment rate)."])
        worker_stats = r.composite([m, "types", "WorkerStats"], [
            ("accepted", t.u32, "u32"), ("rejected", t.u32, "u32"), ("abandoned", t.u32, "u32"),
            ("creators", r.bounded_vec(t.account), "BoundedVec<AccountId>"),
        ], docs=["A worker's record from dealings with others (results on its own tasks do not count): "
                 "accepted (claims included), rejected, abandoned by the worker (not ended by the task's "
                 "expiry), and the distinct creators who accepted its results (at most MaxDistinctCreators + 1)."])
    files = _opt(r, r.bounded_vec(bb))
    ost = _opt(r, storage_type)
    b = "BoundedVec<u8, T::"

    def ob(name: str, bound: int, bound_name: str) -> Arg:
        return Arg(name, obb, f"Option<{b}{bound_name}>>", max_len=bound)

    create_args = [
        Arg("task_type", task_type, "TaskType"),
        ob("question", 2048, "MaxQuestionLength"),
        Arg("pays_amount", t.u128, "BalanceOf<T>"),
        Arg("expiration_block", t.u32, "T::BlockNumber"),
        Arg("max_assignments", t.u32, "u32"),
        Arg("validation_strategy", strategy, "ValidationStrategy"),
        ob("model_contributor_script_path", 512, "MaxPathLength"),
        Arg("model_contributor_script_storage_type", ost, "Option<StorageType>"),
        ob("model_contributor_script_storage_credentials", 1024, "MaxCredentialsLength"),
        Arg("annotation_type", _opt(r, annotation_type), "Option<AnnotationType>"),
        Arg("annotation_media_samples", files, "Option<BoundedVec<BoundedVec<u8, T::MaxPathLength>, T::MaxFiles>>",
            max_len=100, item_max_len=512),
        Arg("annotation_files", files, "Option<BoundedVec<BoundedVec<u8, T::MaxPathLength>, T::MaxFiles>>",
            max_len=100, item_max_len=512),
        ob("annotation_class_labels", 1024, "MaxLabelsLength"),
        ob("annotation_class_coordinates", 2048, "MaxCoordinatesLength"),
        ob("annotation_json", 4096, "MaxJsonLength"),
        Arg("annotation_files_storage_type", ost, "Option<StorageType>"),
        ob("annotation_files_storage_credentials", 1024, "MaxCredentialsLength"),
        ob("model_engineer_path", 512, "MaxPathLength"),
        Arg("model_engineer_storage_type", ost, "Option<StorageType>"),
        ob("model_engineer_storage_credentials", 1024, "MaxCredentialsLength"),
    ]
    calls = [
        Call("create_task", create_args, "Create a task and escrow pays_amount x max_assignments."),
        Call("assign_task", [Arg("task_id", t.u32, "TaskIndex")], "Take one assignment of an open task."),
        Call("send_task_result", [
            Arg("submission_id", t.u32, "u32"),
            ob("result", 2048, "MaxResultLength"),
            ob("result_path", 512, "MaxPathLength"),
            Arg("result_storage_type", ost, "Option<StorageType>"),
            ob("result_storage_credentials", 1024, "MaxCredentialsLength"),
        ], "Submit the result of an assignment."),
    ]
    if include_extensions:
        calls += [
            Call("accept_task_result", [Arg("submission_id", t.u32, "u32")],
                 "Creator accepts a result: the worker is paid from the task's escrow."),
            Call("reject_task_result", [Arg("submission_id", t.u32, "u32"),
                                        Arg("reason", bb, f"{b}MaxReasonLength>", max_len=1024)],
                 "Creator rejects a result, with a reason."),
            Call("close_task", [Arg("task_id", t.u32, "TaskIndex")],
                 "Creator closes an expired or finished task; unused escrow is refunded."),
            Call("create_task_with_terms", create_args + [
                Arg("terms", task_terms, "TaskTerms"),
                Arg("client_token", obb, "Option<BoundedVec<u8, T::MaxClientTokenLength>>", max_len=MAX_CLIENT_TOKEN),
            ], "create_task with market rules (deadlines, review window, qualifications) and an optional "
               "client token: a second call with the same token from the same creator is refused."),
            Call("claim_payment", [Arg("submission_id", t.u32, "u32")],
                 "The worker takes the pay of a result the creator left undecided past the review window."),
        ]
    u32, blk, acc = t.u32, t.u32, t.account
    events = [
        ("TaskCreated", [("taskid", u32, "TaskIndex"), ("created", blk, "T::BlockNumber")]),
        ("TaskAssigned", [("task_id", u32, "TaskIndex"), ("submission_index", u32, "u32"),
                          ("modified_block", blk, "T::BlockNumber")]),
    ] + [(n, [(None, u32, "TaskIndex"), (None, blk, "T::BlockNumber")]) for n in (
        "TaskInprogress", "TaskCompleted", "TaskRejected", "ValidationStrategyAutoAccept",
        "ValidationStrategyManualAccept", "ValidationStrategyCustomAccept", "TaskWithdrawal", "TaskDissolved",
        "TaskDispensed")]
    if include_extensions:
        events += [
            ("TaskResultSubmitted", [("task_id", u32, "TaskIndex"), ("submission_id", u32, "u32"),
                                     ("worker", acc, "T::AccountId"), ("block", blk, "T::BlockNumber")]),
            ("TaskResultAccepted", [("task_id", u32, "TaskIndex"), ("submission_id", u32, "u32"),
                                    ("worker", acc, "T::AccountId"), ("amount", t.u128, "BalanceOf<T>"),
                                    ("block", blk, "T::BlockNumber")]),
            ("TaskResultRejected", [("task_id", u32, "TaskIndex"), ("submission_id", u32, "u32"),
                                    ("worker", acc, "T::AccountId"), ("reason", bb, "BoundedVec<u8>"),
                                    ("block", blk, "T::BlockNumber")]),
            ("TaskClosed", [("task_id", u32, "TaskIndex"), ("refunded", t.u128, "BalanceOf<T>"),
                            ("block", blk, "T::BlockNumber")]),
            ("AssignmentAbandoned", [("task_id", u32, "TaskIndex"), ("submission_id", u32, "u32"),
                                     ("worker", acc, "T::AccountId"), ("block", blk, "T::BlockNumber")]),
            ("PaymentClaimed", [("task_id", u32, "TaskIndex"), ("submission_id", u32, "u32"),
                                ("worker", acc, "T::AccountId"), ("amount", t.u128, "BalanceOf<T>"),
                                ("block", blk, "T::BlockNumber")]),
            # a verdict on a closed task: the pay it freed goes back to the creator at once
            ("EscrowRefunded", [("task_id", u32, "TaskIndex"), ("submission_id", u32, "u32"),
                                ("refunded", t.u128, "BalanceOf<T>"), ("block", blk, "T::BlockNumber")]),
        ]
    errors = list(DECENTRALML_UPSTREAM_ERRORS) + (list(DECENTRALML_ADDED_ERRORS) if include_extensions else [])
    task_info = r.composite([m, "types", "TaskInfo"], [
        ("status", task_status, "TaskStatus"), ("task_type", task_type, "TaskType"),
        ("creator", acc, "AccountId"), ("pays_amount", t.u128, "Balance"),
        ("creation_block", blk, "BlockNumber"), ("expiration_block", blk, "BlockNumber"),
        ("max_assignments", u32, "u32"), ("validation_strategy", strategy, "ValidationStrategy"),
    ] + [(a.name, a.type_id, a.type_name) for a in create_args if a.name not in (
        "task_type", "pays_amount", "expiration_block", "max_assignments", "validation_strategy")],
        [("AccountId", acc), ("Balance", t.u128), ("BlockNumber", blk)])
    submission = r.composite([m, "types", "TaskResultSubmission"], [
        ("task_id", u32, "TaskIndex"), ("submission_id", u32, "u32"), ("worker", acc, "AccountId"),
        ("created_block", blk, "BlockNumber"), ("result", obb, "Option<BoundedVec<u8>>"),
        ("result_path", obb, "Option<BoundedVec<u8>>"), ("result_storage_type", ost, "Option<StorageType>"),
        ("result_storage_credentials", obb, "Option<BoundedVec<u8>>"), ("status", sub_status, "ResultSubmissionStatus"),
        ("paid_amount", _opt(r, t.u128), "Option<Balance>"), ("paid_block", _opt(r, blk), "Option<BlockNumber>"),
    ], [("AccountId", acc), ("Balance", t.u128), ("BlockNumber", blk)])
    bc = "Blake2_128Concat"
    storage = [
        Storage("Tasks", task_info, [(bc, u32)]),
        Storage("TaskCount", u32, optional=False, default=b"\x00" * 4),
        Storage("OpenTasks", t.bounded_u32s, optional=False, default=b"\x00"),
        Storage("TaskResultSubmissions", submission, [(bc, u32)]),
        Storage("TaskResultSubmissionCount", u32, optional=False, default=b"\x00" * 4),
        Storage("TaskResultSubmissionCountByTaskId", u32, [(bc, u32)]),
        # Upstream's [u32; 10000] is longer than @polkadot/api accepts (≤ 2048): it cannot connect to
        # an upstream node. Ours keeps the same ids, in order, as a BoundedVec<u32, 10000>.
        Storage("TaskResultSubmissionIds", r.array(MAX_SUBMISSION_IDS, u32) if upstream else t.bounded_u32s,
                [(bc, u32)]),
        Storage("WorkerSubmissions", t.bounded_u32s, [(bc, acc)], optional=False, default=b"\x00"),
    ]
    if include_extensions:  # the market rules' storage, appended; Tasks keeps upstream's encoding
        storage += [
            Storage("TaskTerms", task_terms, [(bc, u32)]),
            Storage("WorkerStats", worker_stats, [(bc, acc)], optional=False, default=b"\x00" * 13),
            Storage("TaskByClientToken", u32, [(bc, acc), (bc, bb)]),
            Storage("ResultSubmittedAt", blk, [(bc, u32)]),
            Storage("AssignmentDeadlines", t.bounded_u32s, [(bc, blk)], optional=False, default=b"\x00"),
        ]
    consts = [
        ("MinContribution", t.u128, MIN_CONTRIBUTION.to_bytes(16, "little")),
        ("TaskReward", t.u128, MIN_CONTRIBUTION.to_bytes(16, "little")),
        ("MaxOpenTasks", u32, MAX_OPEN_TASKS.to_bytes(4, "little")),
        ("MaxSubmissionsPerWorker", u32, MAX_SUBMISSIONS_PER_WORKER.to_bytes(4, "little")),
        ("PalletId", r.composite(["frame_support", "PalletId"], [(None, r.array(8, t.u8), "[u8; 8]")]),
         b"decentml"),
    ]
    if include_extensions:
        consts.append(("MaxDistinctCreators", u32, MAX_DISTINCT_CREATORS.to_bytes(4, "little")))
    for c in calls:
        c.docs = CALL_DOCS[c.name]
    return Pallet("DecentralMLModule", 7, m, calls, events, errors, storage, consts,
                  error_docs={e: ERROR_DOCS[e] for e in errors})


def _pallets(t: Types, pallet_mode: str) -> list[Pallet]:
    r = t.reg
    acc, u128, u32 = t.account, t.u128, t.u32
    addr = t.multi_address
    system = Pallet(
        "System", 0, "frame_system",
        calls=[
            Call("remark", [Arg("remark", t.bytes, "Vec<u8>")], "Make some on-chain remark."),
            Call("remark_with_event", [Arg("remark", t.bytes, "Vec<u8>")], "Make some on-chain remark and emit event."),
        ],
        events=[
            ("ExtrinsicSuccess", [("dispatch_info", t.dispatch_info, "DispatchInfo")]),
            ("ExtrinsicFailed", [("dispatch_error", t.dispatch_error, "DispatchError"),
                                 ("dispatch_info", t.dispatch_info, "DispatchInfo")]),
            ("CodeUpdated", []),
            ("NewAccount", [("account", acc, "T::AccountId")]),
            ("KilledAccount", [("account", acc, "T::AccountId")]),
            ("Remarked", [("sender", acc, "T::AccountId"), ("hash", t.h256, "T::Hash")]),
        ],
        errors=list(SYSTEM_ERROR_DOCS), error_docs=SYSTEM_ERROR_DOCS,
        constants=[
            ("BlockHashCount", u32, BLOCK_HASH_COUNT.to_bytes(4, "little")),
            ("SS58Prefix", t.u16, SS58_PREFIX.to_bytes(2, "little")),
        ],
    )
    # System's storage needs the event record type, built once the outer event enum exists.
    timestamp = Pallet(
        "Timestamp", 1, "pallet_timestamp",
        calls=[Call("set", [Arg("now", t.compact_u64, "T::Moment")], "Set the current time (inherent).")],
        storage=[Storage("Now", t.u64, optional=False, default=b"\x00" * 8),
                 Storage("DidUpdate", t.bool, optional=False, default=b"\x00")],
        constants=[("MinimumPeriod", t.u64, (3000).to_bytes(8, "little"))],
    )
    balances = Pallet(
        "Balances", 4, "pallet_balances",
        calls=[
            Call("transfer_allow_death", [Arg("dest", addr, "AccountIdLookupOf<T>"),
                                          Arg("value", t.compact_u128, "T::Balance")], "Transfer some balance."),
            Call("set_balance_deprecated", [Arg("who", addr, "AccountIdLookupOf<T>"),
                                            Arg("new_free", t.compact_u128, "T::Balance"),
                                            Arg("old_reserved", t.compact_u128, "T::Balance")], "Deprecated."),
            Call("force_transfer", [Arg("source", addr, "AccountIdLookupOf<T>"),
                                    Arg("dest", addr, "AccountIdLookupOf<T>"),
                                    Arg("value", t.compact_u128, "T::Balance")], "Root: move balance."),
            Call("transfer_keep_alive", [Arg("dest", addr, "AccountIdLookupOf<T>"),
                                         Arg("value", t.compact_u128, "T::Balance")],
                 "Transfer, keeping the sender above the existential deposit."),
            Call("transfer_all", [Arg("dest", addr, "AccountIdLookupOf<T>"), Arg("keep_alive", t.bool, "bool")],
                 "Transfer the whole free balance."),
            Call("force_unreserve", [Arg("who", addr, "AccountIdLookupOf<T>"), Arg("amount", u128, "T::Balance")],
                 "Root: unreserve."),
            Call("upgrade_accounts", [Arg("who", r.sequence(acc), "Vec<T::AccountId>")], "No-op here."),
            Call("transfer", [Arg("dest", addr, "AccountIdLookupOf<T>"), Arg("value", t.compact_u128, "T::Balance")],
                 "Alias of transfer_allow_death."),
            Call("force_set_balance", [Arg("who", addr, "AccountIdLookupOf<T>"),
                                       Arg("new_free", t.compact_u128, "T::Balance")], "Root: set a balance."),
        ],
        events=[
            ("Endowed", [("account", acc, "T::AccountId"), ("free_balance", u128, "T::Balance")]),
            ("DustLost", [("account", acc, "T::AccountId"), ("amount", u128, "T::Balance")]),
            ("Transfer", [("from", acc, "T::AccountId"), ("to", acc, "T::AccountId"), ("amount", u128, "T::Balance")]),
            ("BalanceSet", [("who", acc, "T::AccountId"), ("free", u128, "T::Balance")]),
            ("Reserved", [("who", acc, "T::AccountId"), ("amount", u128, "T::Balance")]),
            ("Unreserved", [("who", acc, "T::AccountId"), ("amount", u128, "T::Balance")]),
            ("ReserveRepatriated", [("from", acc, "T::AccountId"), ("to", acc, "T::AccountId"),
                                    ("amount", u128, "T::Balance"),
                                    ("destination_status", r.variant(
                                        ["frame_support", "traits", "tokens", "misc", "BalanceStatus"],
                                        [("Free", []), ("Reserved", [])]), "Status")]),
            ("Deposit", [("who", acc, "T::AccountId"), ("amount", u128, "T::Balance")]),
            ("Withdraw", [("who", acc, "T::AccountId"), ("amount", u128, "T::Balance")]),
            ("Slashed", [("who", acc, "T::AccountId"), ("amount", u128, "T::Balance")]),
        ],
        errors=list(BALANCES_ERROR_DOCS), error_docs=BALANCES_ERROR_DOCS,
        storage=[Storage("TotalIssuance", u128, optional=False, default=b"\x00" * 16),
                 Storage("InactiveIssuance", u128, optional=False, default=b"\x00" * 16)],
        constants=[("ExistentialDeposit", u128, EXISTENTIAL_DEPOSIT.to_bytes(16, "little")),
                   ("MaxLocks", u32, (50).to_bytes(4, "little")),
                   ("MaxReserves", u32, (0).to_bytes(4, "little")),
                   ("MaxHolds", u32, (0).to_bytes(4, "little")),
                   ("MaxFreezes", u32, (0).to_bytes(4, "little"))],
    )
    payment = Pallet(
        "TransactionPayment", 5, "pallet_transaction_payment",
        events=[("TransactionFeePaid", [("who", acc, "T::AccountId"), ("actual_fee", u128, "BalanceOf<T>"),
                                        ("tip", u128, "BalanceOf<T>")])],
        storage=[Storage("NextFeeMultiplier", t.fixed_u128, optional=False,
                         default=(10**18).to_bytes(16, "little"))],
        constants=[("OperationalFeeMultiplier", t.u8, b"\x05")],
    )
    sudo = Pallet(
        "Sudo", 6, "pallet_sudo",
        calls=None,  # filled in once RuntimeCall exists (sudo wraps a call)
        events=[
            ("Sudid", [("sudo_result", t.dispatch_result, "DispatchResult")]),
            ("KeyChanged", [("old_sudoer", _opt(r, acc), "Option<T::AccountId>")]),
            ("SudoAsDone", [("sudo_result", t.dispatch_result, "DispatchResult")]),
        ],
        errors=["RequireSudo"], error_docs={"RequireSudo": ["Sender must be the Sudo account"]},
        storage=[Storage("Key", acc)],
    )
    return [system, timestamp, balances, payment, sudo, _decentralml(t, pallet_mode == "full")]


class DeclaredRuntime:
    """The declared runtime: type registry, encoded metadata, and lookups for dispatch."""

    def __init__(self, pallet_mode: str = "full") -> None:
        if pallet_mode not in ("full", "upstream"):
            raise ValueError(f"pallet mode must be 'full' or 'upstream', not {pallet_mode!r}")
        self.pallet_mode = pallet_mode
        self.registry = reg = TypeRegistry()
        self.types = t = Types(reg)
        self.pallets = _pallets(t, pallet_mode)
        self.runtime_call = reg.reserve()
        sudo = self.pallet("Sudo")
        boxed = (self.runtime_call, "Box<<T as Config>::RuntimeCall>")
        sudo.calls = [
            Call("sudo", [Arg("call", *boxed)], "Dispatch a call with Root origin."),
            Call("sudo_unchecked_weight", [Arg("call", *boxed), Arg("weight", t.weight, "Weight")],
                 "Dispatch a call with Root origin, weight given."),
            Call("set_key", [Arg("new", t.multi_address, "AccountIdLookupOf<T>")], "Change the sudo key."),
            Call("sudo_as", [Arg("who", t.multi_address, "AccountIdLookupOf<T>"), Arg("call", *boxed)],
                 "Dispatch a call with a Signed origin of another account."),
        ]
        self.call_types: dict[str, int] = {}
        self.event_types: dict[str, int] = {}
        self.error_types: dict[str, int] = {}
        for p in self.pallets:
            if p.calls is not None:
                self.call_types[p.name] = reg.variant(
                    [p.module, "pallet", "Call"],
                    [(c.name, [(a.name, a.type_id, a.type_name) for a in c.args], None, c.doc_lines)
                     for c in p.calls],
                    [("T", None)],
                )
            if p.events is not None:
                self.event_types[p.name] = reg.variant([p.module, "pallet", "Event"], p.events, [("T", None)])
            if p.errors is not None:
                self.error_types[p.name] = reg.variant(
                    [p.module, "pallet", "Error"], [(e, [], None, p.error_docs.get(e, [])) for e in p.errors],
                    [("T", None)]
                )
        reg.fill(self.runtime_call, TypeRegistry.variant_def(
            (p.name, [(None, self.call_types[p.name], f"CallableCallFor<{p.name}, Runtime>")], p.index)
            for p in self.pallets if p.name in self.call_types
        ), ["node_template_runtime", "RuntimeCall"])
        self.runtime_event = reg.variant(["node_template_runtime", "RuntimeEvent"], [
            (p.name, [(None, self.event_types[p.name], f"{p.module}::Event<Runtime>")], p.index)
            for p in self.pallets if p.name in self.event_types
        ])
        self.event_record = reg.composite(
            ["frame_system", "EventRecord"],
            [("phase", t.phase, "Phase"), ("event", self.runtime_event, "E"),
             ("topics", reg.sequence(t.h256), "Vec<T>")],
            [("E", self.runtime_event), ("T", t.h256)],
        )
        self.event_records = reg.sequence(self.event_record)
        self.pallet("System").storage = [
            Storage("Account", t.account_info, [("Blake2_128Concat", t.account)], optional=False,
                    default=bytes(16 + 64)),
            Storage("ExtrinsicCount", t.u32),
            Storage("BlockHash", t.h256, [("Twox64Concat", t.u32)], optional=False, default=bytes(32)),
            Storage("Number", t.u32, optional=False, default=bytes(4)),
            Storage("ParentHash", t.h256, optional=False, default=bytes(32)),
            Storage("Events", self.event_records, optional=False, default=b"\x00"),
            Storage("EventCount", t.u32, optional=False, default=bytes(4)),
            Storage("LastRuntimeUpgrade", reg.composite(["frame_system", "LastRuntimeUpgradeInfo"], [
                ("spec_version", t.compact_u32, "codec::Compact<u32>"), ("spec_name", t.str, "sp_runtime::RuntimeString")])),
        ]
        self._build_extrinsic_types()
        self.runtime_type = reg.composite(["node_template_runtime", "Runtime"], [])
        self.codec = Codec(reg.portable())
        self._index()
        self.metadata_bytes = self._encode_metadata()

    # -- construction helpers -------------------------------------------------------------------
    def _build_extrinsic_types(self) -> None:
        reg, t = self.registry, self.types
        fs = "frame_system::extensions::"

        def ext(path: str, fields: Iterable[Field] = ()) -> int:
            parts = path.split("::")
            return reg.composite(parts, list(fields), [("T", None)])

        self.signed_extensions = [
            ("CheckNonZeroSender", ext(fs + "check_non_zero_sender::CheckNonZeroSender"), t.unit),
            ("CheckSpecVersion", ext(fs + "check_spec_version::CheckSpecVersion"), t.u32),
            ("CheckTxVersion", ext(fs + "check_tx_version::CheckTxVersion"), t.u32),
            ("CheckGenesis", ext(fs + "check_genesis::CheckGenesis"), t.h256),
            ("CheckMortality", ext(fs + "check_mortality::CheckMortality", [(None, t.era, "Era")]), t.h256),
            ("CheckNonce", ext(fs + "check_nonce::CheckNonce", [(None, t.compact_u32, "T::Nonce")]), t.unit),
            ("CheckWeight", ext(fs + "check_weight::CheckWeight"), t.unit),
            ("ChargeTransactionPayment", reg.composite(
                ["pallet_transaction_payment", "ChargeTransactionPayment"],
                [(None, t.compact_u128, "BalanceOf<T>")], [("T", None)]), t.unit),
        ]
        extra = reg.tuple(*(ty for _, ty, _ in self.signed_extensions))
        self.extrinsic = reg.composite(
            ["sp_runtime", "generic", "unchecked_extrinsic", "UncheckedExtrinsic"],
            [(None, t.bytes, None)],
            [("Address", t.multi_address), ("Call", self.runtime_call),
             ("Signature", t.multi_signature), ("Extra", extra)],
        )

    def _index(self) -> None:
        self.calls_by_index: dict[tuple[int, int], tuple[Pallet, Call]] = {}
        self.event_index: dict[tuple[str, str], int] = {}
        self.error_index: dict[tuple[str, str], tuple[int, int]] = {}
        self.storage: dict[tuple[str, str], tuple[Storage, bytes]] = {}
        for p in self.pallets:
            for i, c in enumerate(p.calls or []):
                self.calls_by_index[(p.index, i)] = (p, c)
            for i, (name, _) in enumerate(p.events or []):
                self.event_index[(p.name, name)] = i
            for i, e in enumerate(p.errors or []):
                self.error_index[(p.name, e)] = (p.index, i)
            for s in p.storage:
                self.storage[(p.name, s.name)] = (s, storage_prefix(p.name, s.name))

    def pallet(self, name: str) -> Pallet:
        return next(p for p in self.pallets if p.name == name)

    def _encode_metadata(self) -> bytes:
        pallets = []
        for p in self.pallets:
            pallets.append({
                "name": p.name,
                "storage": {"prefix": p.name, "entries": [{
                    "name": s.name,
                    "modifier": "Optional" if s.optional else "Default",
                    "type": {"Plain": s.value} if not s.keys else {"Map": {
                        "hashers": [h for h, _ in s.keys],
                        "key": s.keys[0][1] if len(s.keys) == 1 else self.registry.tuple(*(k for _, k in s.keys)),
                        "value": s.value}},
                    "default": "0x" + (b"\x00" if s.optional else s.default).hex(),
                    "documentation": [],
                } for s in p.storage]} if p.storage else None,
                "calls": {"ty": self.call_types[p.name]} if p.name in self.call_types else None,
                "event": {"ty": self.event_types[p.name]} if p.name in self.event_types else None,
                "constants": [{"name": n, "type": ty, "value": "0x" + v.hex(), "documentation": []}
                              for n, ty, v in p.constants],
                "error": {"ty": self.error_types[p.name]} if p.name in self.error_types else None,
                "index": p.index,
            })
        value = ["0x6d657461", {"V14": {
            "types": {"types": self.registry.portable()},
            "pallets": pallets,
            "extrinsic": {"ty": self.extrinsic, "version": 4, "signed_extensions": [
                {"identifier": n, "ty": ty, "additional_signed": add} for n, ty, add in self.signed_extensions]},
            "runtime_type": self.runtime_type,
        }}]
        rc = RuntimeConfiguration()
        rc.update_type_registry(load_type_registry_preset("core"))
        return bytes(rc.create_scale_object("MetadataVersioned").encode(value).data)

    # -- lookups used by the runtime ------------------------------------------------------------
    def storage_entry(self, pallet: str, item: str) -> tuple[Storage, bytes]:
        return self.storage[(pallet, item)]


@lru_cache(maxsize=2)
def runtime(pallet_mode: str = "full") -> DeclaredRuntime:
    """The runtime declaration for a pallet mode, built once per process."""
    return DeclaredRuntime(pallet_mode)
