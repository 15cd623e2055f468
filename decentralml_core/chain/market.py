"""The DecentralML market on a chain client: create, assign, send, decide, close, and read tasks.

Capabilities come from the node's metadata. A node with our pallet has ``accept_task_result``,
``reject_task_result`` and ``close_task``; against an upstream-only node (``--pallet upstream``),
accepting pays the worker with ``Balances.transfer_keep_alive`` from the creator and a verdict is
recorded with ``System.remark_with_event`` as a :data:`VERDICT_SCHEMA` JSON record (see
:func:`verdict_record`); rejecting records only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from substrateinterface import Keypair

from .client import ChainClient, Receipt
from .errors import DispatchFailed, UnsupportedCall
from .model import ResultSpec, Submission, SubmissionStatus, Task, TaskSpec, check_bytes

PALLET = "DecentralMLModule"
VERDICT_SCHEMA = "decentralml.verdict/1"
"""``{"schema": "decentralml.verdict/1", "submission_id": int, "task_id": int, "verdict": "accept"|"reject",
"amount": int, "reason": str}``: an upstream node's only record of a creator's decision."""


def verdict_record(submission: Submission, verdict: str, amount: int = 0, reason: str = "") -> str:
    record = {"schema": VERDICT_SCHEMA, "submission_id": submission.submission_id, "task_id": submission.task_id,
              "verdict": verdict, "amount": amount, "reason": reason}
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


def parse_verdict(remark: str | bytes) -> dict | None:
    """A verdict record from a remark's bytes, or None if the remark is something else."""
    try:
        record = json.loads(remark)
    except (ValueError, TypeError):
        return None
    if not isinstance(record, dict) or record.get("schema") != VERDICT_SCHEMA:
        return None
    return record


@dataclass(frozen=True)
class Capabilities:
    verdict_calls: bool  # accept_task_result / reject_task_result / close_task exist


class Market:
    """The pallet's calls and storage, typed; wraps a connected :class:`ChainClient`."""

    def __init__(self, client: ChainClient) -> None:
        self.client = client
        self._terms: dict[int, Task] = {}
        rt = client.runtime
        self.capabilities = Capabilities(all(rt.has_call(PALLET, c) for c in (
            "accept_task_result", "reject_task_result", "close_task")))

    # -- calls ----------------------------------------------------------------------------------
    async def create_task(self, creator: Keypair, spec: TaskSpec) -> tuple[int, Receipt]:
        receipt = await self.client.submit(creator, PALLET, "create_task", spec.call_params())
        (created,) = receipt.find(PALLET, "TaskCreated")
        return created["taskid"], receipt

    async def assign_task(self, worker: Keypair, task_id: int) -> tuple[int, Receipt]:
        receipt = await self.client.submit(worker, PALLET, "assign_task", {"task_id": task_id})
        (assigned,) = receipt.find(PALLET, "TaskAssigned")
        return assigned["submission_index"], receipt

    async def send_task_result(self, worker: Keypair, result: ResultSpec) -> Receipt:
        return await self.client.submit(worker, PALLET, "send_task_result", result.call_params())

    async def accept_task_result(self, creator: Keypair, submission_id: int) -> Receipt:
        """Accept a pending result; the worker is paid the task's ``pays_amount`` exactly once."""
        if self.capabilities.verdict_calls:
            return await self.client.submit(creator, PALLET, "accept_task_result", {"submission_id": submission_id})
        submission, task = await self._pending(creator, submission_id)
        await self.client.submit(creator, "System", "remark_with_event",
                                 {"remark": verdict_record(submission, "accept", task.pays_amount)})
        return await self.client.submit(creator, "Balances", "transfer_keep_alive",
                                        {"dest": submission.worker, "value": task.pays_amount})

    async def reject_task_result(self, creator: Keypair, submission_id: int, reason: str) -> Receipt:
        check_bytes("reason", reason)
        if self.capabilities.verdict_calls:
            return await self.client.submit(creator, PALLET, "reject_task_result",
                                            {"submission_id": submission_id, "reason": reason})
        submission, _ = await self._pending(creator, submission_id)
        return await self.client.submit(creator, "System", "remark_with_event",
                                        {"remark": verdict_record(submission, "reject", reason=reason)})

    async def close_task(self, creator: Keypair, task_id: int) -> Receipt:
        if not self.capabilities.verdict_calls:
            raise UnsupportedCall("this node's DecentralML pallet has no close_task (upstream pallet)")
        return await self.client.submit(creator, PALLET, "close_task", {"task_id": task_id})

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
    async def verdicts_at(self, block_hash: str) -> list[tuple[str, dict]]:
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
        return None if value is None else Task.from_chain(task_id, value)

    async def terms(self, task_id: int) -> Task | None:
        """The task as first read, cached: its terms never change (read ``task`` for its status)."""
        if task_id not in self._terms:
            task = await self.task(task_id)
            if task is None:
                return None
            self._terms[task_id] = task
        return self._terms[task_id]

    async def submission(self, submission_id: int) -> Submission | None:
        value = await self.client.storage(PALLET, "TaskResultSubmissions", [submission_id])
        return None if value is None else Submission.from_chain(value)

    async def open_task_ids(self) -> list[int]:
        return list(await self.client.storage(PALLET, "OpenTasks"))

    async def tasks(self) -> list[Task]:
        rows = await self.client.storage_map(PALLET, "Tasks")
        return sorted((Task.from_chain(k, v) for k, v in rows), key=lambda t: t.task_id)

    async def submissions(self, task_id: int | None = None) -> list[Submission]:
        rows = await self.client.storage_map(PALLET, "TaskResultSubmissions")
        found = (Submission.from_chain(v) for _, v in rows)
        return sorted((s for s in found if task_id is None or s.task_id == task_id), key=lambda s: s.submission_id)

    async def worker_submissions(self, address: str) -> list[int]:
        return list(await self.client.storage(PALLET, "WorkerSubmissions", [address]))
