"""The DecentralML pallet's rules: tasks, assignments, results, escrowed pay.

Calls 0–2 keep upstream's names, arguments, storage and events (``../shared/spec/upstream-pallet.md``),
with its defects fixed: assignments are capped at ``max_assignments`` (upstream allowed one more),
expired tasks take no new work, a worker holds one assignment per task, and only the assigned worker
submits. What upstream lacks is added as calls 3–5: the creator accepts (pays the worker from the
task's escrow, at most once), rejects (with a reason) or closes (refunds what no pending result can
still claim). ``create_task`` escrows ``pays_amount × max_assignments`` in the task's sub-account.

The market rules an unattended market needs (MTurk's AssignmentDurationInSeconds,
AutoApprovalDelayInSeconds, QualificationRequirements, UniqueRequestToken), enforced on chain:

- ``create_task_with_terms`` (call 6) is ``create_task`` plus :data:`TaskTerms <DEFAULT_TERMS>` and an
  optional client token. The terms live in their own map ``TaskTerms`` keyed by task id, so ``Tasks``
  keeps upstream's encoding; a task made by plain ``create_task`` has :data:`DEFAULT_TERMS` (no
  deadline, no review window, anyone qualifies: the behaviour before the rules). A token (1–64
  bytes; an empty one fails ``EmptyClientToken``, as the client refuses it) is remembered in
  ``TaskByClientToken[(creator, token)]``; reusing it fails ``DuplicateClientToken``.
- Assignment deadline: ``submit_within`` blocks after ``assign_task`` the worker may still submit
  (through block ``created_block + submit_within``). Abandonment is applied eagerly, in
  :func:`on_initialize` of the next block, from an agenda ``AssignmentDeadlines[block]`` written by
  ``assign_task`` (bounded per block, like a scheduler's agenda): the worker's ``abandoned`` counter
  goes up, the slot returns (the live-slot count drops, the task re-enters ``OpenTasks``) and the
  event ``AssignmentAbandoned`` tells other workers. Eager rather than lazy because a refused call
  is rolled back: a late ``send_task_result`` could never record the abandonment itself, and a slot
  held by a silent worker would otherwise stay taken until someone else happened to ask.
  ``send_task_result`` also checks the deadline itself, so the rule never depends on the hook alone.
  The counter counts only what the worker caused: an assignment whose deadline falls after the task's
  expiration block was ended by the expiry (the worker had less than ``submit_within`` blocks).
- Review window: ``review_window`` blocks after a result is sent (``ResultSubmittedAt``) the creator
  decides; past it the worker may ``claim_payment`` (call 7) from escrow. Past the window the creator
  can no longer reject (``ReviewWindowClosed``) but may still accept: either way the worker is paid
  exactly once, and whichever of accept and claim comes second fails ``AlreadyDecided``.
- Qualifications: ``WorkerStats[worker]`` counts accepted (claims included), rejected and abandoned
  results and keeps the distinct creators who accepted one (:data:`MAX_DISTINCT_CREATORS` + 1 at
  most). Only dealings with others count: nothing on a task the worker created moves its record, so
  a worker cannot buy a record by accepting its own results (a second account as creator cannot be
  told apart on chain; ``min_distinct_creators`` makes that cost one funded account per creator).
  ``assign_task`` refuses a worker with fewer than ``min_accepted`` accepted results
  (``TooFewAccepted``), a rejection rate rejected / (accepted + rejected) above
  ``max_rejection_rate`` (Permill; ``RejectionRateTooHigh``), fewer than ``min_distinct_creators``
  creators *other than this task's* who accepted its results (``TooFewDistinctCreators``: the term
  asks for others' judgement, which the creator cannot get from its own records), or an abandonment
  rate abandoned / (accepted + rejected + abandoned) above ``max_abandonment_rate``
  (``AbandonmentRateTooHigh``).
- Escrow: every path out of a task's escrow is a payment (accept, claim) or a refund to the creator
  (``close_task``'s ``TaskClosed.refunded``; after the close, a verdict frees its result's pay and it
  goes back at once, ``EscrowRefunded``). So a closed task's escrow always holds exactly the pay of
  its pending results, and 0 once none is pending: :func:`escrow_discrepancy` checks it.
- ``TaskResultSubmissionCountByTaskId`` counts the slots held (abandoned ones released);
  ``TaskResultSubmissionIds`` keeps every assignment, abandoned ones included, in order.

Every function takes the dispatch :class:`~.base.Env`, the signer's AccountId and the call's
arguments; a refusal raises :class:`~.base.DispatchError` and the executive rolls the call back.

With ``env.upstream`` (``decentralml devnet --pallet upstream``) the rules are upstream's, defects
included (one assignment too many, no expiry or duplicate check, only ``pays_amount`` moved to the
task account), so clients can be tested against what an upstream node does.
"""

from __future__ import annotations

from typing import Any

from ..metadata import (
    DECENTRALML_ADDED_ERRORS,
    DECENTRALML_UPSTREAM_ERRORS,
    MAX_DEADLINES_PER_BLOCK,
    MAX_DISTINCT_CREATORS,
    MAX_OPEN_TASKS,
    MAX_SUBMISSION_IDS,
    MAX_SUBMISSIONS_PER_WORKER,
    MIN_CONTRIBUTION,
    PERMILL,
)
from .base import DispatchError, Env

PALLET = "DecentralMLModule"
PALLET_ID = b"decentml"
U32_MAX = (1 << 32) - 1
U128_MAX = (1 << 128) - 1
MAX_ASSIGNMENTS = MAX_SUBMISSION_IDS - 1
"""Upstream records submission ids in a ``[u32; 10000]`` at 1-based slots, so 9,999 fit."""

UPSTREAM_ERRORS, ADDED_ERRORS = DECENTRALML_UPSTREAM_ERRORS, DECENTRALML_ADDED_ERRORS
DEFAULT_TERMS = {"submit_within": None, "review_window": None, "min_accepted": 0, "max_rejection_rate": None,
                 "min_distinct_creators": 0, "max_abandonment_rate": None}
"""The terms of a task created without any: no deadline, no review window, everyone qualifies."""
NO_STATS = {"accepted": 0, "rejected": 0, "abandoned": 0, "creators": []}
MAX_TRACKED_CREATORS = MAX_DISTINCT_CREATORS + 1
"""``WorkerStats.creators`` holds one more than the largest term: without the asking task's creator,
a full set still counts :data:`MAX_DISTINCT_CREATORS`."""


def fail(error: str, detail: str = "") -> DispatchError:
    return DispatchError(PALLET, error, detail)


def task_account(task_id: int) -> bytes:
    """The task's escrow: ``PalletId(b"decentml").into_sub_account_truncating(task_id)``, as upstream."""
    return (b"modl" + PALLET_ID + task_id.to_bytes(4, "little")).ljust(32, b"\x00")


def _checked_add(value: int, step: int = 1) -> int:
    if value + step > U32_MAX:
        raise fail("Overflow")
    return value + step


def _is_expired(env: Env, task: dict[str, Any]) -> bool:
    """A task takes work through its expiration block and not after."""
    expiration: int = task["expiration_block"]
    return env.block_number > expiration


def _is_closed(task: dict[str, Any]) -> bool:
    return task["status"] in ("Completed", "Withdrawn")


def _check_task_fields(task_type: str, args: dict[str, Any]) -> None:
    """Upstream's per-type requirements, in upstream's order."""
    if task_type == "DataAnnotators":
        if args.get("annotation_type") is None:
            raise fail("MissingAnnotationType")
        if not args.get("annotation_files"):
            raise fail("MissingAnnotationFiles")
        if args.get("annotation_files_storage_type") is None:
            raise fail("MissingAnnotationFilesStorageType")
    elif task_type == "ModelContributor":
        if args.get("model_contributor_script_path") is None:
            raise fail("MissingModelContributorScriptPath")
        if args.get("model_contributor_script_storage_type") is None:
            raise fail("MissingModelContributorScriptStorageType")
    elif task_type == "ModelEngineer":
        if args.get("model_engineer_path") is None:
            raise fail("MissingModelEngineerPath")
        if args.get("model_engineer_storage_type") is None:
            raise fail("MissingModelEngineerStorageType")
    else:
        raise fail("InvalidTaskType")


def create_task(env: Env, creator: bytes, *, task_type: str, question: bytes | None, pays_amount: int,
                expiration_block: int, max_assignments: int, validation_strategy: str, **fields: Any) -> int:
    """Validate, escrow ``pays_amount × max_assignments`` from the creator, store and open the task."""
    if pays_amount < (1 if env.upstream else MIN_CONTRIBUTION):
        raise fail("TaskInvalidPaysAmount", f"at least {MIN_CONTRIBUTION}")
    if not 0 < max_assignments <= MAX_ASSIGNMENTS:
        raise fail("InvalidMaxAssignments", f"1 to {MAX_ASSIGNMENTS}")
    if expiration_block <= env.block_number:
        raise fail("TaskEndTooEarly")
    if not question:
        raise fail("InvalidQuestion")
    _check_task_fields(task_type, fields)
    escrow = pays_amount if env.upstream else pays_amount * max_assignments
    if escrow > U128_MAX:
        raise fail("Overflow")
    task_id: int = env.get(PALLET, "TaskCount")
    env.set(PALLET, "TaskCount", _checked_add(task_id))
    env.transfer(creator, task_account(task_id), escrow, keep_alive=not env.upstream)
    env.set(PALLET, "Tasks", task_id, {
        "status": "Created", "task_type": task_type, "creator": creator, "pays_amount": pays_amount,
        "creation_block": env.block_number, "expiration_block": expiration_block,
        "max_assignments": max_assignments, "validation_strategy": validation_strategy, "question": question,
        **fields,
    })
    open_tasks = env.get(PALLET, "OpenTasks")
    if len(open_tasks) >= MAX_OPEN_TASKS:
        raise fail("OpenTasksLimitReached")
    env.set(PALLET, "OpenTasks", [*open_tasks, task_id])
    env.deposit_event(PALLET, "TaskCreated", {"taskid": task_id, "created": env.block_number})
    return task_id


def create_task_with_terms(env: Env, creator: bytes, *, terms: dict[str, Any], client_token: bytes | None, **task_args: Any) -> None:
    """``create_task`` under market rules, at most once per ``(creator, client_token)``."""
    _check_terms(terms)
    if client_token is not None and not client_token:
        raise fail("EmptyClientToken", "a client token is 1 to 64 bytes, or None for no idempotence")
    if client_token is not None and env.get(PALLET, "TaskByClientToken", creator, client_token) is not None:
        raise fail("DuplicateClientToken", "this creator already created a task with this token")
    task_id = create_task(env, creator, **task_args)
    env.set(PALLET, "TaskTerms", task_id, terms)
    if client_token is not None:
        env.set(PALLET, "TaskByClientToken", creator, client_token, task_id)


def _check_terms(terms: dict[str, Any]) -> None:
    for name in ("submit_within", "review_window"):
        if terms[name] == 0:
            raise fail("InvalidTaskTerms", f"{name} is at least 1 block (or None)")
    for name in ("max_rejection_rate", "max_abandonment_rate"):
        if terms[name] is not None and terms[name] > PERMILL:
            raise fail("InvalidTaskTerms", f"{name} is in parts per million (at most 1,000,000)")
    if terms["min_distinct_creators"] > MAX_DISTINCT_CREATORS:
        raise fail("InvalidTaskTerms", f"min_distinct_creators is at most {MAX_DISTINCT_CREATORS}")


def task_terms(env: Env, task_id: int) -> dict[str, Any]:
    """The task's market rules; a task created by plain ``create_task`` has :data:`DEFAULT_TERMS`."""
    if env.upstream:
        return DEFAULT_TERMS
    return env.get(PALLET, "TaskTerms", task_id) or DEFAULT_TERMS


def _above(count: int, limit: int | None, total: int) -> bool:
    """``count / total > limit`` (Permill) in integers; nothing to judge (``total`` 0) is never above."""
    return limit is not None and total > 0 and count * PERMILL > limit * total


def qualification_error(terms: dict[str, Any], stats: dict[str, Any], creator: bytes) -> str | None:
    """The error ``assign_task`` raises for a worker with ``stats`` on a task of ``creator``, or None if
    they qualify."""
    accepted, rejected, abandoned = stats["accepted"], stats["rejected"], stats["abandoned"]
    if accepted < terms["min_accepted"]:
        return "TooFewAccepted"
    if _above(rejected, terms["max_rejection_rate"], accepted + rejected):
        return "RejectionRateTooHigh"
    if sum(1 for c in stats["creators"] if c != creator) < terms["min_distinct_creators"]:
        return "TooFewDistinctCreators"
    if _above(abandoned, terms["max_abandonment_rate"], accepted + rejected + abandoned):
        return "AbandonmentRateTooHigh"
    return None


def _count(env: Env, task: dict[str, Any], worker: bytes, outcome: str) -> None:
    """One more accepted / rejected / abandoned result on the worker's record — unless the worker
    created the task: a record is what others made of one's work."""
    if task["creator"] == worker:
        return
    stats = env.get(PALLET, "WorkerStats", worker)
    stats = {**stats, outcome: _checked_add(stats[outcome])}
    creators = stats["creators"]
    if outcome == "accepted" and task["creator"] not in creators and len(creators) < MAX_TRACKED_CREATORS:
        stats["creators"] = [*creators, task["creator"]]
    env.set(PALLET, "WorkerStats", worker, stats)


def _submission_ids(env: Env, task_id: int) -> list[int]:
    """The task's submission ids in assignment order.

    Upstream's layout is a ``[u32; 10000]`` with 1-based slots up to the task's count; ours (full
    pallet) is a ``BoundedVec<u32>`` of just the ids.
    """
    ids = env.get(PALLET, "TaskResultSubmissionIds", task_id) or []
    if env.upstream:
        return ids[1:(env.get(PALLET, "TaskResultSubmissionCountByTaskId", task_id) or 0) + 1]
    return list(ids)


def _record_submission_id(env: Env, task_id: int, count: int, submission_id: int) -> None:
    if env.upstream:
        ids = list(env.get(PALLET, "TaskResultSubmissionIds", task_id) or [0] * MAX_SUBMISSION_IDS)
        ids[count] = submission_id
    else:
        ids = [*_submission_ids(env, task_id), submission_id]
        if len(ids) > MAX_SUBMISSION_IDS:  # abandoned assignments stay listed, so the history can fill up
            raise fail("Overflow", f"a task records at most {MAX_SUBMISSION_IDS} assignments")
    env.set(PALLET, "TaskResultSubmissionIds", task_id, ids)


def _assigned_workers(env: Env, task_id: int) -> set[bytes]:
    return {env.get(PALLET, "TaskResultSubmissions", i)["worker"] for i in _submission_ids(env, task_id)}


def assign_task(env: Env, worker: bytes, *, task_id: int) -> None:
    """Give ``worker`` one of the task's ``max_assignments`` slots, as a submission in ``Assigned``."""
    task = env.get(PALLET, "Tasks", task_id)
    if task is None:
        raise fail("TaskNotFound")
    count = env.get(PALLET, "TaskResultSubmissionCountByTaskId", task_id) or 0
    if env.upstream:
        if count > task["max_assignments"]:  # upstream's `<=`: one assignment more than asked
            raise fail("MaxAssignmentsReached")
    else:
        if _is_closed(task):
            raise fail("TaskClosed")
        if _is_expired(env, task):
            raise fail("TaskExpired")
        if worker in _assigned_workers(env, task_id):  # an abandoner too: the slot goes to another worker
            raise fail("AlreadyAssigned")
        if count >= task["max_assignments"]:
            raise fail("MaxAssignmentsReached")
        terms = task_terms(env, task_id)
        unqualified = qualification_error(terms, env.get(PALLET, "WorkerStats", worker), task["creator"])
        if unqualified:
            raise fail(unqualified)
    count = _checked_add(count)
    env.set(PALLET, "TaskResultSubmissionCountByTaskId", task_id, count)
    submission_id = env.get(PALLET, "TaskResultSubmissionCount")
    env.set(PALLET, "TaskResultSubmissionCount", _checked_add(submission_id))
    env.set(PALLET, "TaskResultSubmissions", submission_id, {
        "task_id": task_id, "submission_id": submission_id, "worker": worker, "created_block": env.block_number,
        "result": None, "result_path": None, "result_storage_type": None, "result_storage_credentials": None,
        "status": "Assigned", "paid_amount": None, "paid_block": None,
    })
    _record_submission_id(env, task_id, count, submission_id)
    mine = env.get(PALLET, "WorkerSubmissions", worker)
    if len(mine) >= MAX_SUBMISSIONS_PER_WORKER:
        raise fail("WorkerSubmissionLimit")
    env.set(PALLET, "WorkerSubmissions", worker, [*mine, submission_id])
    if task["status"] == "Created" and not env.upstream:
        env.set(PALLET, "Tasks", task_id, {**task, "status": "InProgress"})
    if count == task["max_assignments"]:
        env.set(PALLET, "OpenTasks", [t for t in env.get(PALLET, "OpenTasks") if t != task_id])
    if not env.upstream and terms["submit_within"] is not None:
        _schedule_deadline(env, _checked_add(env.block_number, terms["submit_within"]), submission_id)
    env.deposit_event(PALLET, "TaskAssigned", {"task_id": task_id, "submission_index": submission_id,
                                               "modified_block": env.block_number})


def _schedule_deadline(env: Env, deadline: int, submission_id: int) -> None:
    due = env.get(PALLET, "AssignmentDeadlines", deadline)
    if len(due) >= MAX_DEADLINES_PER_BLOCK:
        raise fail("TooManyDeadlines", f"{MAX_DEADLINES_PER_BLOCK} assignments already fall due at block {deadline}")
    env.set(PALLET, "AssignmentDeadlines", deadline, [*due, submission_id])


def submit_deadline(env: Env, submission: dict[str, Any]) -> int | None:
    """The last block in which the assigned worker may send the result, if the task sets one."""
    within = task_terms(env, submission["task_id"])["submit_within"]
    return None if within is None else submission["created_block"] + within


def on_initialize(env: Env) -> None:
    """Abandon the assignments whose deadline was the previous block and are still unsubmitted."""
    if env.upstream or env.block_number < 1:
        return
    due_block = env.block_number - 1
    due = env.get(PALLET, "AssignmentDeadlines", due_block)
    if not due:
        return
    env.remove(PALLET, "AssignmentDeadlines", due_block)
    for submission_id in due:
        _abandon(env, submission_id)


def _abandon(env: Env, submission_id: int) -> None:
    submission = env.get(PALLET, "TaskResultSubmissions", submission_id)
    if submission is None or submission["status"] != "Assigned":  # sent in time
        return
    task_id, worker = submission["task_id"], submission["worker"]
    env.set(PALLET, "TaskResultSubmissions", submission_id, {**submission, "status": "Abandoned"})
    env.set(PALLET, "TaskResultSubmissionCountByTaskId", task_id,
            (env.get(PALLET, "TaskResultSubmissionCountByTaskId", task_id) or 1) - 1)
    task = env.get(PALLET, "Tasks", task_id)
    if submit_deadline(env, submission) <= task["expiration_block"]:  # else the expiry cut its time short
        _count(env, task, worker, "abandoned")
    open_tasks = env.get(PALLET, "OpenTasks")
    if (not _is_closed(task) and not _is_expired(env, task) and task_id not in open_tasks
            and len(open_tasks) < MAX_OPEN_TASKS):
        env.set(PALLET, "OpenTasks", [*open_tasks, task_id])  # the slot is back in the pool
    env.deposit_event(PALLET, "AssignmentAbandoned", {
        "task_id": task_id, "submission_id": submission_id, "worker": worker, "block": env.block_number})


def send_task_result(env: Env, worker: bytes, *, submission_id: int, result: bytes | None, result_path: bytes | None,
                     result_storage_type: str | None, result_storage_credentials: bytes | None) -> None:
    """Record the assigned worker's result; it then waits for the creator's decision.

    As upstream: a result or a path is required, and a path needs a storage type and credentials
    (``b""`` for public storage such as IPFS).
    """
    submission = env.get(PALLET, "TaskResultSubmissions", submission_id)
    if submission is None:
        raise fail("SubmissionNotFound")
    if submission["worker"] != worker:
        raise fail("NotAuthorized", "only the assigned worker submits")
    if not env.upstream:
        deadline = submit_deadline(env, submission)
        if submission["status"] == "Abandoned" or (deadline is not None and env.block_number > deadline):
            raise fail("SubmissionDeadlinePassed", f"the result was due by block {deadline}")
    if submission["status"] != "Assigned":
        raise fail("InvalidStatus", f"submission is {submission['status']}")
    task = env.get(PALLET, "Tasks", submission["task_id"])
    if not env.upstream and _is_closed(task):
        raise fail("TaskClosed")
    if not env.upstream and _is_expired(env, task):
        raise fail("TaskExpired")
    if (result is None and result_path is None) or (
            result_path is not None and (result_storage_type is None or result_storage_credentials is None)):
        raise fail("InvalidResultSubmission")
    env.set(PALLET, "TaskResultSubmissions", submission_id, {
        **submission, "result": result, "result_path": result_path, "result_storage_type": result_storage_type,
        "result_storage_credentials": result_storage_credentials, "status": "PendingValidation",
    })
    if not env.upstream:
        env.set(PALLET, "ResultSubmittedAt", submission_id, env.block_number)
    if env.declares_event(PALLET, "TaskResultSubmitted"):  # upstream emits nothing here
        env.deposit_event(PALLET, "TaskResultSubmitted", {
            "task_id": submission["task_id"], "submission_id": submission_id, "worker": worker,
            "block": env.block_number})


def _decidable(env: Env, signer: bytes, submission_id: int, by: str = "creator") -> tuple[dict[str, Any], dict[str, Any]]:
    """The submission and its task, if ``signer`` — the task's creator (accept, reject) or, ``by="worker"``,
    the result's worker (claim) — may settle it now."""
    submission = env.get(PALLET, "TaskResultSubmissions", submission_id)
    if submission is None:
        raise fail("SubmissionNotFound")
    task = env.get(PALLET, "Tasks", submission["task_id"])
    if (task["creator"] if by == "creator" else submission["worker"]) != signer:
        raise fail("NotAuthorized", "only the task's creator decides" if by == "creator" else "only its worker claims")
    if submission["status"] in ("Accepted", "Rejected"):
        raise fail("AlreadyDecided")
    if submission["status"] != "PendingValidation":
        raise fail("ResultNotSubmitted")
    return submission, task


def review_deadline(env: Env, submission_id: int, task_id: int) -> int | None:
    """The last block of the creator's review window for a sent result, if the task sets one."""
    window = task_terms(env, task_id)["review_window"]
    sent = env.get(PALLET, "ResultSubmittedAt", submission_id)
    return None if window is None or sent is None else sent + window


def _pay(env: Env, submission: dict[str, Any], task: dict[str, Any], event: str) -> None:
    """Pay the worker ``pays_amount`` from the task's escrow and record the result as accepted."""
    submission_id, escrow, amount = submission["submission_id"], task_account(submission["task_id"]), task["pays_amount"]
    if env.free_balance(escrow) < amount:
        raise fail("InsufficientEscrow")
    env.transfer(escrow, submission["worker"], amount, keep_alive=False)
    env.set(PALLET, "TaskResultSubmissions", submission_id, {
        **submission, "status": "Accepted", "paid_amount": amount, "paid_block": env.block_number})
    _count(env, task, submission["worker"], "accepted")
    env.deposit_event(PALLET, event, {
        "task_id": submission["task_id"], "submission_id": submission_id, "worker": submission["worker"],
        "amount": amount, "block": env.block_number})
    _refund_if_closed(env, submission, task)


def accept_task_result(env: Env, creator: bytes, *, submission_id: int) -> None:
    """Accept a pending result: pay the worker ``pays_amount`` from the task's escrow, once.

    Also after the review window: the worker gets the same pay it could claim.
    """
    submission, task = _decidable(env, creator, submission_id)
    _pay(env, submission, task, "TaskResultAccepted")


def claim_payment(env: Env, worker: bytes, *, submission_id: int) -> None:
    """The worker takes the pay of a result left undecided past the task's review window."""
    submission, task = _decidable(env, worker, submission_id, by="worker")
    deadline = review_deadline(env, submission_id, submission["task_id"])
    if deadline is None:
        raise fail("NoReviewWindow", "the task sets no review window: only the creator decides")
    if env.block_number <= deadline:
        raise fail("ReviewWindowOpen", f"the creator decides through block {deadline}")
    _pay(env, submission, task, "PaymentClaimed")


def reject_task_result(env: Env, creator: bytes, *, submission_id: int, reason: bytes) -> None:
    """Reject a pending result with a reason, inside the review window; its pay goes back to the creator
    at ``close_task``, or at once if the task is closed already."""
    submission, task = _decidable(env, creator, submission_id)
    deadline = review_deadline(env, submission_id, submission["task_id"])
    if deadline is not None and env.block_number > deadline:
        raise fail("ReviewWindowClosed", f"the review window ended at block {deadline}: the worker may claim")
    env.set(PALLET, "TaskResultSubmissions", submission_id, {**submission, "status": "Rejected"})
    _count(env, task, submission["worker"], "rejected")
    env.deposit_event(PALLET, "TaskResultRejected", {
        "task_id": submission["task_id"], "submission_id": submission_id, "worker": submission["worker"],
        "reason": reason, "block": env.block_number})
    _refund_if_closed(env, submission, task)


def _submissions(env: Env, task_id: int) -> list[dict[str, Any]]:
    return [env.get(PALLET, "TaskResultSubmissions", i) for i in _submission_ids(env, task_id)]


def close_task(env: Env, creator: bytes, *, task_id: int) -> None:
    """Close an expired or fully decided task and refund the escrow that no pending result can claim.

    Results still ``PendingValidation`` keep their pay in escrow, so the creator can decide them later.
    """
    task = env.get(PALLET, "Tasks", task_id)
    if task is None:
        raise fail("TaskNotFound")
    if task["creator"] != creator:
        raise fail("NotAuthorized", "only the task's creator closes it")
    if _is_closed(task):
        raise fail("TaskClosed")
    submissions = [s for s in _submissions(env, task_id) if s["status"] != "Abandoned"]
    all_decided = len(submissions) == task["max_assignments"] and all(
        s["status"] in ("Accepted", "Rejected") for s in submissions)
    if not (_is_expired(env, task) or all_decided):
        raise fail("TaskNotExpired")
    refund = _refund_unclaimable(env, task_id, task)
    env.set(PALLET, "Tasks", task_id, {**task, "status": "Completed"})
    env.set(PALLET, "OpenTasks", [t for t in env.get(PALLET, "OpenTasks") if t != task_id])
    env.deposit_event(PALLET, "TaskClosed", {"task_id": task_id, "refunded": refund, "block": env.block_number})


def _refund_unclaimable(env: Env, task_id: int, task: dict[str, Any]) -> int:
    """Send the creator what the task's escrow holds beyond the pay of its pending results; the amount."""
    pending = sum(1 for s in _submissions(env, task_id) if s["status"] == "PendingValidation")
    escrow = task_account(task_id)
    refund: int = max(env.free_balance(escrow) - pending * task["pays_amount"], 0)
    if refund:
        env.transfer(escrow, task["creator"], refund, keep_alive=False)
    return refund


def _refund_if_closed(env: Env, submission: dict[str, Any], task: dict[str, Any]) -> None:
    """After a verdict on a closed task, the pay it freed goes back now: no later ``close_task`` will
    come (a second one fails ``TaskClosed``), so otherwise it would stay in escrow for good."""
    if not _is_closed(task):
        return
    refund = _refund_unclaimable(env, submission["task_id"], task)
    if refund:
        env.deposit_event(PALLET, "EscrowRefunded", {
            "task_id": submission["task_id"], "submission_id": submission["submission_id"], "refunded": refund,
            "block": env.block_number})


def escrow_discrepancy(task: dict[str, Any], submissions: list[dict[str, Any]], escrow: int, refunded: int) -> str | None:
    """Why a task's escrow does not add up, or None; for the tests and ``bench/faults.py``.

    ``task`` and ``submissions`` as stored (full pallet), ``escrow`` the escrow account's balance,
    ``refunded`` the sum of the task's ``TaskClosed.refunded`` and ``EscrowRefunded.refunded``. The
    escrow holds reserved − paid − refunded (reserved = ``pays_amount × max_assignments``); once the
    task is closed, exactly the pay of its pending results — 0 when nothing is pending.
    """
    reserved = task["pays_amount"] * task["max_assignments"]
    paid = sum(s["paid_amount"] or 0 for s in submissions if s["status"] == "Accepted")
    if escrow != reserved - paid - refunded:
        return f"escrow {escrow} != reserved {reserved} - paid {paid} - refunded {refunded}"
    pending = sum(1 for s in submissions if s["status"] == "PendingValidation")
    if _is_closed(task) and escrow != pending * task["pays_amount"]:
        return f"closed with {escrow} in escrow for {pending} pending result(s) of {task['pays_amount']}"
    return None
