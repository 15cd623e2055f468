"""The creator agent: publish the YAML's tasks once, validate each result as it arrives, pay or reject
once, and close expired tasks to reclaim unused escrow.

Journal kinds: ``published`` (by task name: publishing → published → closed) and ``submission``
(seen → review | paying → paid, rejecting → rejected). A step that moves tokens is journaled before
the call and confirmed from the chain after a restart, so a submission is paid at most once.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time

import structlog

from decentralml_core import work
from decentralml_core.chain import ChainClient, Checkpoint, DispatchFailed
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import (
    Submission,
    SubmissionStatus,
    Task,
    TaskSpec,
    TaskStatus,
    TaskType,
    ValidationStrategy,
)
from decentralml_core.storage import get_folder, open_store

from .config import AgentConfig, PublishedTask
from .journal import Journal
from .metrics import Metrics
from .streams import close_stream
from .validators import load_validator

log = structlog.get_logger("agent.creator")
SWEEP_S = 2.0


class CreatorAgent:
    def __init__(self, config: AgentConfig, client: ChainClient, journal: Journal, metrics: Metrics) -> None:
        self.config, self.client, self.journal, self.metrics = config, client, journal, metrics
        self.market = Market(client)
        self.keypair = config.key.load()
        self.declared = {t.name: t for t in config.tasks}
        self.validators = {t.name: load_validator(t.validator) for t in config.tasks if t.validator}
        self._validating: dict[int, asyncio.Task] = {}
        self._paying_now: set[int] = set()  # payments this process started (others predate a restart)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("creator_started", creator=self.keypair.ss58_address, tasks=len(self.declared))
        await asyncio.gather(*[self.publish(declared) for declared in self.config.tasks])  # pipelined
        since = self.journal.meta("checkpoint") or [await self.client.block_number() + 1, -1]
        events = self.client.events(Checkpoint(*since))
        next_event = asyncio.ensure_future(anext(events))
        stopped = asyncio.ensure_future(stop.wait())
        last_sweep = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() - last_sweep >= SWEEP_S:
                    await self.sweep()
                    last_sweep = time.monotonic()
                done, _ = await asyncio.wait({next_event, stopped}, timeout=SWEEP_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if next_event in done:
                    event = next_event.result()
                    self.metrics.set("chain_block", event.block_number)
                    if event.pallet == "DecentralMLModule" and event.name == "TaskResultSubmitted":
                        self.start_validation(event.attributes["submission_id"])
                    self.journal.set_meta("checkpoint", [event.block_number, event.index])
                    next_event = asyncio.ensure_future(anext(events))
        finally:
            stopped.cancel()
            await close_stream(next_event, events)
            await asyncio.gather(*self._validating.values(), return_exceptions=True)  # finish decisions in flight
            log.info("creator_stopped", creator=self.keypair.ss58_address)

    # -- publishing, exactly once ---------------------------------------------------------------------
    async def publish(self, declared: PublishedTask) -> int | None:
        entry = self.journal.get("published", declared.name)
        if entry is not None and entry.step in ("published", "closed"):
            return entry.data["task_id"]
        store = open_store(str(declared.storage_type), self.config.storage.config())
        assets = await work.publish_assets(store, declared.assets)
        annotation_json = json.dumps({**declared.annotation_json, **json.loads(assets.annotation_json),
                                      "name": declared.name}, sort_keys=True)
        if entry is not None:  # "publishing": the create may have reached the chain before a crash
            for task in await self.market.tasks():
                if task.creator == self.keypair.ss58_address and task.annotation_json == annotation_json:
                    return self._published(declared, task.task_id)
        self.journal.set("published", declared.name, "publishing", assets=assets.ref)
        common = dict(task_type=declared.task_type, question=declared.question, pays_amount=declared.pays,
                      expiration_block=await self.client.block_number() + declared.expires_in,
                      max_assignments=declared.max_assignments, validation_strategy=declared.strategy,
                      annotation_json=annotation_json)
        if declared.task_type == TaskType.MODEL_ENGINEER:
            spec = TaskSpec(**common, model_engineer_path=assets.ref, model_engineer_storage_type=declared.storage_type,
                            model_engineer_storage_credentials="")
        elif declared.task_type == TaskType.MODEL_CONTRIBUTOR:
            spec = TaskSpec(**common, model_contributor_script_path=assets.ref,
                            model_contributor_script_storage_type=declared.storage_type,
                            model_contributor_script_storage_credentials="")
        else:
            spec = TaskSpec(**common, annotation_type=declared.annotation_type,
                            annotation_media_samples=assets.annotation_media_samples,
                            annotation_files=assets.annotation_files, annotation_class_labels=declared.class_labels,
                            annotation_files_storage_type=declared.storage_type,
                            annotation_files_storage_credentials="")
        task_id, _ = await self.market.create_task(self.keypair, spec)
        return self._published(declared, task_id)

    def _published(self, declared: PublishedTask, task_id: int) -> int:
        self.journal.set("published", declared.name, "published", task_id=task_id)
        self.metrics.inc("tasks_published")
        log.info("task_published", name=declared.name, task_id=task_id)
        return task_id

    # -- the periodic sweep: catch-up, upstream nodes (no result events), timers, expiry --------------
    async def sweep(self) -> None:
        now = await self.client.block_number()
        published = self.journal.entries("published", steps=("published",))
        if not published:
            return
        by_task: dict[int, list[Submission]] = {}
        for submission in await self.market.submissions():
            by_task.setdefault(submission.task_id, []).append(submission)
        for entry in published:
            task = await self.market.terms(entry.data["task_id"])
            if task is None:
                continue
            for submission in by_task.get(task.task_id, []):
                journaled = self.journal.get("submission", submission.submission_id)
                if submission.status == SubmissionStatus.PENDING_VALIDATION or (
                        journaled is not None and journaled.step not in ("paid", "rejected")):
                    self.start_validation(submission.submission_id, task, submission)
            if now > task.expiration_block:
                current = await self.market.task(task.task_id)
                if current is not None and current.status != TaskStatus.COMPLETED:
                    await self.close(entry.id, current)

    def start_validation(self, sid: int, task: Task | None = None, submission: Submission | None = None) -> None:
        """Validate in the background (decisions pipeline on chain); one validation per submission at a time."""
        if sid in self._validating:
            return
        job = asyncio.create_task(self.validate(sid, task, submission))
        self._validating[sid] = job
        job.add_done_callback(lambda _: self._validating.pop(sid, None))

    async def close(self, name: str, task: Task) -> None:
        if not self.market.capabilities.verdict_calls:
            return
        try:
            receipt = await self.market.close_task(self.keypair, task.task_id)
        except DispatchFailed as exc:
            if exc.error != "TaskClosed":
                log.warning("task_close_failed", task_id=task.task_id, error=exc.error)
                return
            refunded = None
        else:
            refunded = receipt.find("DecentralMLModule", "TaskClosed")[0]["refunded"]
            self.metrics.inc("escrow_reclaimed", refunded)
        self.journal.set("published", name, "closed", refunded=refunded)
        log.info("task_closed", task_id=task.task_id, refunded=refunded)

    # -- validation, paid at most once ---------------------------------------------------------------
    async def validate(self, sid: int, task: Task | None = None, submission: Submission | None = None) -> None:
        entry = self.journal.get("submission", sid)
        if entry is not None and entry.step in ("paid", "rejected"):
            return
        submission = submission or await self.market.submission(sid)
        task = task or await self.market.terms(submission.task_id)
        if task is None or task.creator != self.keypair.ss58_address:
            return
        if submission.status in (SubmissionStatus.ACCEPTED, SubmissionStatus.REJECTED):  # decided before a crash
            step = "paid" if submission.status == SubmissionStatus.ACCEPTED else "rejected"
            self.journal.set("submission", sid, step, task_id=task.task_id, amount=submission.paid_amount)
            return
        if submission.status != SubmissionStatus.PENDING_VALIDATION:
            return
        if entry is None:
            entry = self.journal.set("submission", sid, "seen", task_id=task.task_id, worker=submission.worker)
            self.metrics.inc("results_seen")
        strategy = task.validation_strategy
        if entry.step == "paying" and not self.market.capabilities.verdict_calls and sid not in self._paying_now:
            # an upstream node keeps no verdict: a payment may have left before the crash. Never pay twice.
            self.journal.set("submission", sid, "check_payment")
            log.error("payment_unknown_after_restart", submission_id=sid, worker=submission.worker,
                      action="check the worker's transfers and decide with `decentralml review`")
            return
        if entry.step == "check_payment":
            return
        try:
            if strategy == ValidationStrategy.AUTO_ACCEPT or entry.step == "paying":
                await self.accept(task, submission)
            elif entry.step == "rejecting":
                await self.reject(task, submission, entry.data["reason"])
            elif strategy == ValidationStrategy.MANUAL_ACCEPT:
                delay = self.config.review.auto_approve_after_s
                if entry.step != "review":
                    self.journal.set("submission", sid, "review")
                    log.info("result_waiting_for_review", submission_id=sid, task_id=task.task_id)
                elif delay is not None and time.time() - entry.updated >= delay:
                    log.info("result_auto_approved", submission_id=sid, after_s=delay)
                    await self.accept(task, submission)
            else:
                ok, reason = await self.custom_verdict(task, submission)
                if ok:
                    await self.accept(task, submission)
                else:
                    await self.reject(task, submission, reason or "rejected by the validator")
        except Exception as exc:  # a chain, storage or validator error: this result waits, the agent goes on
            log.error("validation_failed", submission_id=sid, error=str(exc), error_type=type(exc).__name__)

    async def custom_verdict(self, task: Task, submission: Submission) -> tuple[bool, str]:
        name = json.loads(task.annotation_json or "{}").get("name")
        validator = self.validators.get(name)
        if validator is None:
            return False, f"no validator configured for task {name!r}"
        folder = self.config.state_dir / "results" / f"submission-{submission.submission_id}"
        if submission.result_path and not folder.exists():
            storage = str(submission.result_storage_type or "IPFS")
            await get_folder(open_store(storage, self.config.storage.config()), submission.result_path, folder)
        folder.mkdir(parents=True, exist_ok=True)
        verdict = validator(submission, folder, task)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return verdict if isinstance(verdict, tuple) else (bool(verdict), "")

    async def accept(self, task: Task, submission: Submission) -> None:
        sid = submission.submission_id
        self.journal.set("submission", sid, "paying")
        self._paying_now.add(sid)
        try:
            await self.market.accept_task_result(self.keypair, sid)
        except DispatchFailed as exc:
            if exc.error != "AlreadyDecided":
                raise
        finally:
            self._paying_now.discard(sid)
        self.journal.set("submission", sid, "paid", amount=task.pays_amount)
        self.metrics.inc("results_accepted")
        self.metrics.inc("amount_paid", task.pays_amount)
        log.info("result_accepted", submission_id=sid, task_id=task.task_id, worker=submission.worker,
                 amount=task.pays_amount)

    async def reject(self, task: Task, submission: Submission, reason: str) -> None:
        sid = submission.submission_id
        self.journal.set("submission", sid, "rejecting", reason=reason)
        try:
            await self.market.reject_task_result(self.keypair, sid, reason[:1024])
        except DispatchFailed as exc:
            if exc.error != "AlreadyDecided":
                raise
        self.journal.set("submission", sid, "rejected")
        self.metrics.inc("results_rejected")
        log.info("result_rejected", submission_id=sid, task_id=task.task_id, reason=reason)
