"""The DecentralML market on a chain client: create, assign, send, decide, close, and read tasks.

Capabilities come from the node's metadata. A node with our pallet has ``accept_task_result``,
``reject_task_result`` and ``close_task``; against an upstream-only node (``--pallet upstream``),
accepting pays the worker with ``Balances.transfer_keep_alive`` from the creator and a verdict is
recorded with ``System.remark_with_event`` as a :data:`VERDICT_SCHEMA` JSON record (see
:func:`verdict_record`); rejecting records only.

The market rules (our pallet's ``create_task_with_terms``, ``claim_payment`` and their storage) are
used when the node has them: tasks and submissions read from such a node carry their
:class:`~.model.TaskTerms` and deadlines; against an upstream node they read as a task without rules,
and asking for rules or a client token there raises :class:`UnsupportedCall` rather than posting a
task without the protection it asked for.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .client import ChainClient, Receipt
from .errors import DispatchFailed, UnsupportedCall
from .model import (
    MAX_CLIENT_TOKEN,
    ResultSpec,
    Submission,
    SubmissionStatus,
    Task,
    TaskSpec,
    TaskStatus,
    TaskTerms,
    WorkerStats,
    check_bytes,
)

if TYPE_CHECKING:
    from substrateinterface import Keypair

PALLET = "DecentralMLModule"
VERDICT_SCHEMA = "decentralml.verdict/1"
"""``{"schema": "decentralml.verdict/1", "submission_id": int, "task_id": int, "verdict": "accept"|"reject",
"amount": int, "reason": str}``: an upstream node's only record of a creator's decision."""


def verdict_record(submission: Submission, verdict: str, amount: int = 0, reason: str = "") -> str:
    record = {"schema": VERDICT_SCHEMA, "submission_id": submission.submission_id, "task_id": submission.task_id,
              "verdict": verdict, "amount": amount, "reason": reason}
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


def check_client_token(token: str | None) -> None:
    if token is not None and not 0 < len(token.encode()) <= MAX_CLIENT_TOKEN:
        raise ValueError(f"a client token is 1 to {MAX_CLIENT_TOKEN} bytes")


def parse_verdict(remark: str | bytes) -> dict[str, Any] | None:
    """A verdict record from a remark's bytes, or None if the remark is something else."""
    try:
        record = json.loads(remark)
    except (ValueError, TypeError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("schema") != VERDICT_SCHEMA:
        return None
    return record


@dataclass(frozen=True)
class Capabilities:
    verdict_calls: bool  # accept_task_result / reject_task_result / close_task exist
    task_terms: bool = False  # create_task_with_terms: deadlines, review window, qualifications, client tokens
    claim_payment: bool = False  # a worker may take the pay of a result left undecided past the review window



class Market:
    """The pallet's calls and storage, typed; wraps a connected :class:`ChainClient`."""

    def __init__(self, client: ChainClient) -> None:
        self.client = client
        self._terms: dict[int, Task] = {}
        rt = client.runtime
        self.capabilities = Capabilities(
            verdict_calls=all(rt.has_call(PALLET, c) for c in ("accept_task_result", "reject_task_result", "close_task")),
            task_terms=rt.has_call(PALLET, "create_task_with_terms"), claim_payment=rt.has_call(PALLET, "claim_payment"))

    # -- calls ----------------------------------------------------------------------------------
    async def create_task(self, creator: Keypair, spec: TaskSpec, terms: TaskTerms | None = None,
                          client_token: str | None = None) -> tuple[int, Receipt]:
        """Post a task; with ``terms`` or a ``client_token``, through ``create_task_with_terms``.

        A second create with the same token from the same creator fails ``DuplicateClientToken``
        (:meth:`task_by_client_token` then names the task the first one made).
        """
        terms = terms or TaskTerms()
        if terms.is_default and client_token is None:
            receipt = await self.client.submit(creator, PALLET, "create_task", spec.call_params())
        else:
            if not self.capabilities.task_terms:
                raise UnsupportedCall("this node's DecentralML pallet has no create_task_with_terms (upstream "
                                      "pallet): no deadlines, review window, qualifications or client tokens")
            check_client_token(client_token)
            receipt = await self.client.submit(creator, PALLET, "create_task_with_terms", {
                **spec.call_params(), "terms": terms.call_params(), "client_token": client_token},
                key=f"create_task:{client_token}")
        (created,) = receipt.find(PALLET, "TaskCreated")
        return created["taskid"], receipt

    async def claim_payment(self, worker: Keypair, submission_id: int) -> Receipt:
        """Take the pay of a result the creator left undecided past the review window (once: a second
        claim, or a claim after the creator decided, fails ``AlreadyDecided``)."""
        if not self.capabilities.claim_payment:
            raise UnsupportedCall("this node's DecentralML pallet has no claim_payment (upstream pallet)")
        return await self.client.submit(worker, PALLET, "claim_payment", {"submission_id": submission_id},
                                        key=f"claim_payment:{submission_id}")

    async def assign_task(self, worker: Keypair, task_id: int) -> tuple[int, Receipt]:
        receipt = await self.client.submit(worker, PALLET, "assign_task", {"task_id": task_id}, key=f"assign_task:{task_id}")
        (assigned,) = receipt.find(PALLET, "TaskAssigned")
        return assigned["submission_index"], receipt

    async def send_task_result(self, worker: Keypair, result: ResultSpec) -> Receipt:
        return await self.client.submit(worker, PALLET, "send_task_result", result.call_params(),
                                        key=f"send_task_result:{result.submission_id}")

    async def accept_task_result(self, creator: Keypair, submission_id: int) -> Receipt:
        """Accept a pending result; the worker is paid the task's ``pays_amount`` exactly once."""
        if self.capabilities.verdict_calls:
            return await self.client.submit(creator, PALLET, "accept_task_result", {"submission_id": submission_id},
                                            key=f"verdict:{submission_id}")
        submission, task = await self._pending(creator, submission_id)
        await self.client.submit(creator, "System", "remark_with_event",
                                 {"remark": verdict_record(submission, "accept", task.pays_amount)},
                                 key=f"verdict:{submission_id}")
        return await self.client.submit(creator, "Balances", "transfer_keep_alive",
                                        {"dest": submission.worker, "value": task.pays_amount}, key=f"pay:{submission_id}")

    async def reject_task_result(self, creator: Keypair, submission_id: int, reason: str) -> Receipt:
        check_bytes("reason", reason)
        if self.capabilities.verdict_calls:
            return await self.client.submit(creator, PALLET, "reject_task_result",
                                            {"submission_id": submission_id, "reason": reason}, key=f"verdict:{submission_id}")
        submission, _ = await self._pending(creator, submission_id)
        return await self.client.submit(creator, "System", "remark_with_event",
                                        {"remark": verdict_record(submission, "reject", reason=reason)},
                                        key=f"verdict:{submission_id}")

    async def close_task(self, creator: Keypair, task_id: int) -> Receipt:
        if not self.capabilities.verdict_calls:
            raise UnsupportedCall("this node's DecentralML pallet has no close_task (upstream pallet)")
        return await self.client.submit(creator, PALLET, "close_task", {"task_id": task_id}, key=f"close_task:{task_id}")

    async def _pending(self, creator: Keypair, submission_id: int) -> tuple[Submission, Task]:
        """The checks our pallet makes on a decision, made by the client for an upstream node.

        Upstream keeps no verdicts, so "paid at most once" rests on the creator's own records
        (agents keep them); this checks what the chain can tell.
        """
        submission = await self.submission(submission_id)
        if submission is None:
            raise DispatchFailed(PALLET, "SubmissionNotFound")
        task = await self.task(submission.task_id)
        if task is None or task.creator != creator.ss58_address:
            raise DispatchFailed(PALLET, "NotAuthorized", "only the task's creator decides")
        if submission.status != SubmissionStatus.PENDING_VALIDATION:
            raise DispatchFailed(PALLET, "ResultNotSubmitted")
        return submission, task

    # -- reads ----------------------------------------------------------------------------------
    async def verdicts_at(self, block_hash: str) -> list[tuple[str, dict[str, Any]]]:
        """(signer, record) of every verdict remark in a block, as an upstream node keeps them.

        Anyone can remark: a reader trusts a record only when its signer created the task.
        """
        block = await self.client.request("chain_getBlock", [block_hash])
        found = []
        for raw in block["block"]["extrinsics"]:
            xt = await self.client.runtime.decode_extrinsic(raw)
            call = xt.get("call") or {}
            if (call.get("call_module"), call.get("call_function")) not in (
                    ("System", "remark"), ("System", "remark_with_event")):
                continue
            record = parse_verdict(call["call_args"][0]["value"])
            if record is not None:
                found.append((xt["address"], record))
        return found

    async def task(self, task_id: int) -> Task | None:
        value = await self.client.storage(PALLET, "Tasks", [task_id])
        return None if value is None else Task.from_chain(task_id, value, await self.task_terms(task_id))

    async def task_terms(self, task_id: int) -> TaskTerms:
        """The task's market rules; a task without any (or an upstream node) reads as ``TaskTerms()``."""
        if not self.capabilities.task_terms:
            return TaskTerms()
        return TaskTerms.from_chain(await self.client.storage(PALLET, "TaskTerms", [task_id]))

    async def worker_stats(self, address: str) -> WorkerStats:
        """The worker's accepted / rejected / abandoned counts (zeros on an upstream node)."""
        if not self.capabilities.task_terms:
            return WorkerStats()
        return WorkerStats.from_chain(await self.client.storage(PALLET, "WorkerStats", [address]))

    async def task_by_client_token(self, creator: str, client_token: str) -> int | None:
        """The task ``creator`` made with ``client_token``, if any."""
        if not self.capabilities.task_terms:
            return None
        task_id: int | None = await self.client.storage(PALLET, "TaskByClientToken", [creator, client_token])
        return task_id

    async def review_deadline_block(self, submission_id: int) -> int | None:
        """The creator's last block to decide this result (None: no window, or nothing sent yet)."""
        submission = await self.submission(submission_id)
        return None if submission is None else submission.review_deadline_block

    async def task_as_posted(self, task_id: int) -> Task | None:
        """The task as first read, cached: what it was posted with never changes (its type, pay, files,
        strategy, terms); read ``task`` for its status."""
        if task_id not in self._terms:
            task = await self.task(task_id)
            if task is None:
                return None
            self._terms[task_id] = task
        return self._terms[task_id]

    async def submission(self, submission_id: int) -> Submission | None:
        """The submission, with its deadlines when the task has market rules."""
        value = await self.client.storage(PALLET, "TaskResultSubmissions", [submission_id])
        if value is None:
            return None
        submission = Submission.from_chain(value)
        if not self.capabilities.task_terms:
            return submission
        task = await self.task_as_posted(submission.task_id)
        sent = await self.client.storage(PALLET, "ResultSubmittedAt", [submission_id])
        return submission.with_terms(task.terms if task else TaskTerms(), sent)

    async def assignments_taken(self, task_id: int) -> int:
        """How many of the task's slots are assigned on chain (``max_assignments`` less this: the free ones)."""
        return int(await self.client.storage(PALLET, "TaskResultSubmissionCountByTaskId", [task_id]) or 0)

    async def open_task_ids(self) -> list[int]:
        return list(await self.client.storage(PALLET, "OpenTasks"))

    async def tasks(self) -> list[Task]:
        rows = await self.client.storage_map(PALLET, "Tasks")
        terms = dict(await self.client.storage_map(PALLET, "TaskTerms")) if self.capabilities.task_terms else {}
        return sorted((Task.from_chain(k, v, TaskTerms.from_chain(terms.get(k))) for k, v in rows),
                      key=lambda t: t.task_id)

    async def submissions(self, task_id: int | None = None) -> list[Submission]:
        """Every submission (of one task), with deadlines when the node has the market rules."""
        rows = await self.client.storage_map(PALLET, "TaskResultSubmissions")
        found = [s for s in (Submission.from_chain(v) for _, v in rows) if task_id is None or s.task_id == task_id]
        if self.capabilities.task_terms and found:
            sent = dict(await self.client.storage_map(PALLET, "ResultSubmittedAt"))
            for i, s in enumerate(found):
                task = await self.task_as_posted(s.task_id)
                found[i] = s.with_terms(task.terms if task else TaskTerms(), sent.get(s.submission_id))
        return sorted(found, key=lambda s: s.submission_id)

    async def open_assignments(self, workers: Collection[str] | None = None,
                               block_hash: str | None = None) -> list[Submission]:
        """The assignments of ``workers`` (everyone's if None) not yet ended as of block ``block_hash`` (the
        head if None): ``Assigned`` (no result sent, not abandoned) on a task not closed. On our pallet,
        exactly those whose ``TaskAssigned`` no ``TaskResultSubmitted``, ``AssignmentAbandoned``, verdict
        or ``TaskClosed`` has followed yet (a verdict needs a result sent; closing leaves the statuses).

        One read of every submission at that block (the chain keeps no index of the open ones: ~0.3 ms of
        CPU per submission, 3 s for 10,000 in ``bench/seed_ledger.py``), then of the few tasks they hold;
        an unknown status reads as ended."""
        rows = await self.client.storage_map(PALLET, "TaskResultSubmissions", block_hash=block_hash)
        assigned = [Submission.from_chain(v) for _, v in rows if v.get("status") == SubmissionStatus.ASSIGNED
                    and (workers is None or v.get("worker") in workers)]
        task_ids = sorted({s.task_id for s in assigned})
        tasks = await asyncio.gather(*(self.client.storage(PALLET, "Tasks", [t], block_hash) for t in task_ids))
        held = {t for t, task in zip(task_ids, tasks, strict=True)
                if task is not None and task.get("status") not in (TaskStatus.COMPLETED, TaskStatus.WITHDRAWN)}
        return sorted((s for s in assigned if s.task_id in held), key=lambda s: s.submission_id)

    async def worker_submissions(self, address: str) -> list[int]:
        return list(await self.client.storage(PALLET, "WorkerSubmissions", [address]))
