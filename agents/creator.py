"""The creator agent: publish the YAML's tasks once, validate each result as it arrives, pay or reject
once, and close expired tasks to reclaim unused escrow.

Journal kinds: ``published`` (by task name: publishing → published → closed) and ``submission``
(seen → [undecided →] review | paying → paid, rejecting → rejected | window_closed). A step that moves tokens is
journaled before the call and confirmed from the chain after a restart, so a submission is paid at most once.

On a node with the market rules a task is published with its YAML terms (deadline, review window,
qualifications) and a random client token journaled before the create, so a publish interrupted by a
crash is retried with the same token and the chain refuses a second task (``DuplicateClientToken``);
an upstream node has no tokens, so there the creator scans its tasks for the one it made. A decision
that comes after the review window (``ReviewWindowClosed``) leaves the pay to the worker's claim.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

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
    ValidationStrategy,
)
from decentralml_core.storage import get_folder, open_store
from decentralml_core.storage.cid import parse
from decentralml_core.storage.errors import BadManifest, StorageError, TooLarge, UnsafeName

from .config import AgentConfig, PublishedTask
from .images import asset_image_sizes
from .journal import Entry, Journal
from .metrics import Metrics
from .streams import SWEEP_S, TRANSIENT, Checkpointer, finish_within, follow_events, handle_with_retry, settle_account
from .validators import Evidence, Validator, Verdict, load_validator

log = structlog.get_logger("agent.creator")


class ResultRefused(Exception):
    """A result that can never be read as it is sent (not a CID, storage this agent does not have)."""


def result_path(state_dir: Path, submission_id: int) -> Path:
    return state_dir / "results" / f"submission-{submission_id}"


def reference_path(state_dir: Path, submission_id: int) -> Path:
    """The boxes a validator judged the result against (consensus or ground truth), for reviewers."""
    return state_dir / "results" / f"submission-{submission_id}.reference.json"


Action = Callable[["CreatorAgent", Task, Submission, Entry], Awaitable[None]]
"""One thing :meth:`CreatorAgent.validate` does for a result waiting for validation."""


async def _accept(agent: CreatorAgent, task: Task, submission: Submission, entry: Entry) -> None:
    await agent.accept(task, submission)


async def _reject_as_journaled(agent: CreatorAgent, task: Task, submission: Submission, entry: Entry) -> None:
    await agent.reject(task, submission, entry.data["reason"])


async def _wait_for_review(agent: CreatorAgent, task: Task, submission: Submission, entry: Entry) -> None:
    await agent.review_timer(task, submission, entry)


async def _send_to_review(agent: CreatorAgent, task: Task, submission: Submission, entry: Entry) -> None:
    await agent.to_review(task, submission, await agent.advice(task, submission))


async def _ask_validator(agent: CreatorAgent, task: Task, submission: Submission, entry: Entry) -> None:
    await agent.decide(task, submission, entry)


STRATEGIES = (ValidationStrategy.AUTO_ACCEPT, ValidationStrategy.MANUAL_ACCEPT, ValidationStrategy.CUSTOM_ACCEPT)
PUBLISH_ATTEMPTS = 3  # a relative expiry refused as too early (the create landed late) is counted again
VALIDATION_TABLE: dict[str, tuple[Action | None, Action | None, Action | None]] = {
    # journal step     AutoAccept  ManualAccept          CustomAccept
    "seen":           (_accept,    _send_to_review,      _ask_validator),
    "undecided":      (_accept,    _send_to_review,      _ask_validator),
    "paying":         (_accept,    _accept,              _accept),
    "rejecting":      (_accept,    _reject_as_journaled, _reject_as_journaled),
    "review":         (_accept,    _wait_for_review,     _wait_for_review),
    "check_payment":  (None,       None,                 None),
    "window_closed":  (None,       None,                 None),
}
"""What :meth:`CreatorAgent.validate` does next for a result at a journal step (row) of a task with a
validation strategy (column). A payment begun is finished whatever the strategy (never turned into a
rejection); AutoAccept accepts from any step; ``check_payment`` waits for a person (an upstream node keeps
no verdict, so a payment that may have left is never repeated) and ``window_closed`` for the worker's claim."""


def next_action(step: str, strategy: ValidationStrategy) -> Action | None:
    """The :data:`VALIDATION_TABLE` entry for a result at ``step`` of a task validated by ``strategy``."""
    row = VALIDATION_TABLE.get(step)
    return None if row is None else row[STRATEGIES.index(strategy)]


class CreatorAgent:
    def __init__(self, config: AgentConfig, client: ChainClient, journal: Journal, metrics: Metrics) -> None:
        self.config, self.client, self.journal, self.metrics = config, client, journal, metrics
        self.market = Market(client)
        self.keypair = config.key.load()
        self.declared = {t.name: t for t in config.tasks}
        self.validators = {t.name: load_validator(t.validator) for t in config.tasks if t.validator}
        self._fetching: dict[int, asyncio.Lock] = {}
        self._validating: dict[int, asyncio.Task] = {}
        # Set by a verdict on chain when campaigns run: a round may close, or an update wait no more for its
        # peers, so the sweep that does it runs at once, not up to SWEEP_S (2 s) later — twice a round.
        self.sweep_soon = asyncio.Event()
        self._paying_now: set[int] = set()  # payments this process started (others predate a restart)
        self.campaigns: list = []
        if config.campaigns:  # numpy and the federated code load for campaigns only (~0.15 s of every start)
            from .campaign import Campaign

            self.campaigns = [Campaign(self, section) for section in config.campaigns]  # register round validators

    async def run(self, stop: asyncio.Event) -> None:
        log.info("creator_started", creator=self.keypair.ss58_address, tasks=len(self.declared))
        if not await settle_account(self.client, self.keypair.ss58_address, stop):
            return
        if await handle_with_retry(self.publish_all, stop, "publish") is None:
            return
        since = self.journal.meta("checkpoint") or await handle_with_retry(self.next_block, stop, "start")
        if since is None:
            return
        checkpoint = Checkpointer(self.journal)
        try:
            await follow_events(self.client, Checkpoint(*since), stop, handle=self.handle, handled=checkpoint.advance,
                                sweep=self.sweep_all, metrics=self.metrics, grace=self.config.stop_grace_s,
                                wake=self.sweep_soon if self.campaigns else None, reads=self.reads)
        finally:
            checkpoint.flush()
            await finish_within(self._validating, self.config.stop_grace_s)  # decisions in flight finish, or resume at the next start
            log.info("creator_stopped", creator=self.keypair.ss58_address)

    @staticmethod
    def reads(event) -> bool:
        """The events :meth:`handle` acts on (the others are only checkpointed)."""
        return event.pallet == "DecentralMLModule" and event.name == "TaskResultSubmitted"

    async def handle(self, event) -> bool:
        if self.reads(event):
            self.start_validation(event.attributes["submission_id"])
        return True

    async def sweep_all(self) -> None:
        """Every SWEEP_S: pending decisions (auto-approvals, payments, closes), then the campaigns' rounds."""
        try:
            await self.sweep()
        except TRANSIENT as exc:  # the node is away or slow: the next sweep does it again
            log.warning("sweep_retry", error=str(exc), error_type=type(exc).__name__, retry_in_s=SWEEP_S)
        if self.campaigns:
            from .campaign import step_all

            await step_all(self.campaigns)

    async def publish_all(self) -> bool:
        await asyncio.gather(*[self.publish(declared) for declared in self.config.tasks])  # pipelined
        return True

    async def next_block(self) -> list[int]:
        return [await self.client.block_number() + 1, -1]

    # -- publishing, exactly once ---------------------------------------------------------------------
    async def publish(self, declared: PublishedTask) -> int | None:
        """Post ``declared`` once, whatever crashes or retries come between (its journal entry and client
        token find an earlier attempt's task); a task the pallet refuses is one error line, and the
        creator goes on with its other tasks (before, the refusal ended the creator: a CI run under load
        saw a 10-block ``expires_in`` pass before the create landed, ``TaskEndTooEarly``)."""
        entry = self.journal.get("published", declared.name)
        if entry is not None and entry.step in ("published", "closed"):
            return entry.data["task_id"]
        terms, rules = declared.terms(), self.market.capabilities.task_terms
        if not terms.is_default and not rules:  # never post a task without the protection it asked for
            log.error("task_terms_unsupported", name=declared.name, terms=dataclasses.asdict(terms),
                      action="this node's pallet has no market rules: drop them from the YAML or use a full node")
            return None
        store = open_store(str(declared.storage_type), self.config.storage.config())
        assets = await work.publish_assets(store, declared.assets)
        annotation_json = json.dumps({**declared.annotation_json, **json.loads(assets.annotation_json),
                                      "name": declared.name}, sort_keys=True)
        token = entry.data.get("client_token") if entry else None
        if entry is not None:  # "publishing": the create may have reached the chain before a crash
            found = await self._created_before(token, annotation_json)
            if found is not None:
                return await self._published(declared, found)
        token = token or (secrets.token_hex(16) if rules else None)
        await self.journal.write("published", declared.name, "publishing", assets=assets.ref, client_token=token)
        spec = TaskSpec.for_type(
            declared.task_type, assets.ref, declared.storage_type, "",
            annotation=dict(annotation_type=declared.annotation_type,
                            annotation_media_samples=assets.annotation_media_samples,
                            annotation_files=assets.annotation_files, annotation_class_labels=declared.class_labels,
                            annotation_class_coordinates=json.dumps(declared.class_coordinates, sort_keys=True)
                            if declared.class_coordinates else None),
            question=declared.question, pays_amount=declared.pays, expiration_block=0,
            max_assignments=declared.max_assignments, validation_strategy=declared.strategy,
            annotation_json=annotation_json)
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            spec = dataclasses.replace(spec, expiration_block=await self.client.block_number() + declared.expires_in)
            try:
                task_id, _ = await self.market.create_task(self.keypair, spec, terms, token)
                break
            except DispatchFailed as exc:
                if exc.error == "DuplicateClientToken":  # an earlier attempt's create landed after all
                    task_id = await self.market.task_by_client_token(self.keypair.ss58_address, token)
                    break
                if exc.error == "TaskEndTooEarly" and attempt < PUBLISH_ATTEMPTS:
                    # ``expires_in`` counts from publishing, and the create landed later than the block it
                    # was counted from (a busy node): count again from now
                    log.warning("task_publish_retry", name=declared.name, error=exc.error, attempt=attempt,
                                expires_in=declared.expires_in)
                    continue
                await self.journal.write("published", declared.name, "refused", reason=str(exc), client_token=token)
                log.error("task_publish_refused", name=declared.name, error=exc.error, reason=str(exc),
                          action="fix the task in the YAML and restart the creator (its other tasks go on)")
                return None
        return await self._published(declared, task_id)

    async def _created_before(self, token: str | None, annotation_json: str) -> int | None:
        """The task an interrupted publish created, if it reached the chain: by its client token where the
        node keeps them (one read), else by scanning for our task with the same terms (upstream nodes)."""
        if token is not None:
            return await self.market.task_by_client_token(self.keypair.ss58_address, token)
        for task in await self.market.tasks():
            if task.creator == self.keypair.ss58_address and task.annotation_json == annotation_json:
                return task.task_id
        return None

    async def _published(self, declared: PublishedTask, task_id: int) -> int:
        await self.journal.write("published", declared.name, "published", task_id=task_id)
        self.metrics.inc("tasks_published")
        log.info("task_published", name=declared.name, task_id=task_id)
        return task_id

    # -- the periodic sweep: catch-up, upstream nodes (no result events), timers, expiry --------------
    async def sweep(self) -> None:
        now = await self.client.block_number()
        # closed tasks too: a result still pending when its task expired keeps its pay in escrow and
        # waits for a decision (review, auto-approval) like any other
        published = self.journal.entries("published", steps=("published", "closed"))
        if not published:
            return
        by_task: dict[int, list[Submission]] = {}
        for submission in await self.market.submissions():
            by_task.setdefault(submission.task_id, []).append(submission)
        for entry in published:
            task = await self.market.task_as_posted(entry.data["task_id"])
            if task is None:
                continue
            for submission in by_task.get(task.task_id, []):
                journaled = self.journal.get("submission", submission.submission_id)
                if submission.status == SubmissionStatus.PENDING_VALIDATION or (
                        journaled is not None and journaled.step not in ("paid", "rejected")):
                    self.start_validation(submission.submission_id, task, submission)
            if entry.step == "published" and now > task.expiration_block:
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
        await self.journal.write("published", name, "closed", refunded=refunded)
        log.info("task_closed", task_id=task.task_id, refunded=refunded)

    # -- validation, paid at most once ---------------------------------------------------------------
    async def validate(self, sid: int, task: Task | None = None, submission: Submission | None = None) -> None:
        entry = self.journal.get("submission", sid)
        if entry is not None and entry.step in ("paid", "rejected"):
            return
        submission = submission or await self.market.submission(sid)
        task = task or await self.market.task_as_posted(submission.task_id)
        if task is None or task.creator != self.keypair.ss58_address:
            return
        if submission.status in (SubmissionStatus.ACCEPTED, SubmissionStatus.REJECTED):  # decided before a crash
            step = "paid" if submission.status == SubmissionStatus.ACCEPTED else "rejected"
            await self.journal.write("submission", sid, step, task_id=task.task_id, amount=submission.paid_amount)
            return
        if submission.status != SubmissionStatus.PENDING_VALIDATION:
            return
        if entry is None:
            entry = await self.journal.write("submission", sid, "seen", task_id=task.task_id, worker=submission.worker,
                                             seen_at=time.time())
            self.metrics.inc("results_seen")
        strategy = task.validation_strategy
        if entry.step == "paying" and not self.market.capabilities.verdict_calls and sid not in self._paying_now:
            # an upstream node keeps no verdict: a payment may have left before the crash. Never pay twice.
            await self.journal.write("submission", sid, "check_payment")
            log.error("payment_unknown_after_restart", submission_id=sid, worker=submission.worker,
                      action="check the worker's transfers and decide with `decentralml review`")
            return
        action = next_action(entry.step, strategy)
        if action is None:
            return
        try:
            await action(self, task, submission, entry)
        except Exception as exc:  # a chain, storage or validator error: this result waits, the agent goes on
            log.error("validation_failed", submission_id=sid, error=str(exc), error_type=type(exc).__name__)

    async def decide(self, task: Task, submission: Submission, entry: Entry) -> None:
        """CustomAccept: the validator's verdict, or — while it cannot decide — wait up to its ``wait_s``,
        then do what it says (leave to a person, accept, reject)."""
        sid, validator = submission.submission_id, self.validator_for(task)
        if validator is None:
            await self.reject(task, submission, f"no validator configured for task {self.task_name(task)!r}")
            return
        verdict = await self.verdict(validator, task, submission)
        if verdict.accept is None:
            waited = time.time() - entry.data.get("seen_at", entry.updated)
            if validator.wait_s is None or waited < validator.wait_s:
                if entry.step != "undecided" or entry.data.get("verdict") != verdict.record():
                    await self.journal.write("submission", sid, "undecided", verdict=verdict.record())
                    log.info("result_undecided", submission_id=sid, task_id=task.task_id, reason=verdict.reason)
                return
            log.info("result_undecided_in_time", submission_id=sid, waited_s=round(waited), then=validator.on_timeout)
            if validator.on_timeout == "review":
                await self.to_review(task, submission, verdict)
                return
            verdict = Verdict(validator.on_timeout == "accept", f"{verdict.reason}; undecided after "
                              f"{validator.wait_s:g} s", verdict.scores)
        await self.journal.write("submission", sid, entry.step, verdict=verdict.record())
        if verdict.accept:
            await self.accept(task, submission)
        else:
            await self.reject(task, submission, verdict.for_chain() or "rejected by the validator")

    async def to_review(self, task: Task, submission: Submission, verdict: Verdict | None) -> None:
        await self.journal.write("submission", submission.submission_id, "review", review_since=time.time(),
                                 verdict=verdict.record() if verdict else None)
        log.info("result_waiting_for_review", submission_id=submission.submission_id, task_id=task.task_id,
                 advice=verdict.reason if verdict else None, review_deadline_block=submission.review_deadline_block)

    async def review_timer(self, task: Task, submission: Submission, entry: Entry) -> None:
        delay = self.config.review.auto_approve_after_s
        if delay is not None and time.time() - entry.data.get("review_since", entry.updated) >= delay:
            log.info("result_auto_approved", submission_id=submission.submission_id, after_s=delay)
            await self.accept(task, submission)

    async def advice(self, task: Task, submission: Submission) -> Verdict | None:
        """ManualAccept with a validator: its verdict informs the reviewer; its failure does not block review."""
        validator = self.validator_for(task)
        if validator is None:
            return None
        try:
            return await self.verdict(validator, task, submission)
        except Exception as exc:
            log.warning("advice_failed", submission_id=submission.submission_id, error=str(exc),
                        error_type=type(exc).__name__)
            return Verdict(None, f"{validator.name} failed: {type(exc).__name__}")

    def task_name(self, task: Task) -> str | None:
        try:
            return json.loads(task.annotation_json or "{}").get("name")
        except ValueError:
            return None

    def image_sizes(self, task: Task) -> dict[str, tuple[int, int]]:
        """The real sizes of the task's images, from this creator's copy of its assets (not the result's claim)."""
        declared = self.declared.get(self.task_name(task))
        return asset_image_sizes(declared.assets if declared else None, task.annotation_files)

    def validator_for(self, task: Task) -> Validator | None:
        return self.validators.get(self.task_name(task))

    async def verdict(self, validator: Validator, task: Task, submission: Submission) -> Verdict:
        try:
            folder = await self.result_folder(submission)
        except ResultRefused as exc:
            return Verdict(False, str(exc)[:300])
        except (BadManifest, UnsafeName, TooLarge) as exc:  # what the content is: final (unreachable: retried)
            return Verdict(False, f"result refused: {exc}"[:300])
        peers = []
        if validator.needs_peers:
            for other in await self.market.submissions(task.task_id):
                if other.submission_id != submission.submission_id and other.result_path:
                    try:
                        peers.append((other, await self.result_folder(other)))
                    except Exception as exc:  # a peer's unreadable result is not this result's fault
                        log.warning("peer_result_unreadable", submission_id=other.submission_id, error=str(exc))
        sizes = await asyncio.to_thread(self.image_sizes, task)
        evidence = Evidence(submission, folder, task, tuple(peers), sizes)
        if inspect.iscoroutinefunction(validator.check):
            verdict = await validator.check(evidence)
        else:  # CPU-bound matching runs off the event loop, so chain events and the review page keep flowing
            verdict = await asyncio.to_thread(validator.check, evidence)
        if verdict.reference is not None:
            reference_path(self.config.state_dir, submission.submission_id).write_text(json.dumps(verdict.reference))
        return verdict

    def result_store(self, submission: Submission):
        """Where a result is read: its CID in our own stores, never a location of the worker's choosing."""
        try:
            parse(submission.result_path)
            return open_store(str(submission.result_storage_type or "IPFS"), self.config.storage.config())
        except StorageError as exc:
            raise ResultRefused(f"unusable result_path: {exc}") from None

    async def result_folder(self, submission: Submission) -> Path:
        """The result's outputs, fetched once (whole or not at all) into the agent's state dir."""
        folder = result_path(self.config.state_dir, submission.submission_id)
        async with self._fetching.setdefault(submission.submission_id, asyncio.Lock()):
            if not folder.exists():
                partial = folder.with_name(folder.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                partial.parent.mkdir(parents=True, exist_ok=True)
                if submission.result_path:
                    await get_folder(self.result_store(submission), submission.result_path, partial)
                else:
                    partial.mkdir()
                partial.rename(folder)
        return folder

    async def review_decision(self, sid: int, accept: bool, reason: str = "") -> str:
        """A person's decision (the review page), taken in turn with the agent's own work on that result."""
        while (running := self._validating.get(sid)) is not None:
            await asyncio.wait({running})
        job = asyncio.create_task(self._review_decision(sid, accept, reason))
        self._validating[sid] = job
        job.add_done_callback(lambda _: self._validating.pop(sid, None))
        return await job

    async def _review_decision(self, sid: int, accept: bool, reason: str) -> str:
        entry = self.journal.get("submission", sid)
        if entry is None or entry.step != "review":
            return f"submission {sid} is not waiting for review ({entry.step if entry else 'unknown'})"
        submission = await self.market.submission(sid)
        task = await self.market.task_as_posted(submission.task_id)
        if accept:
            await self.accept(task, submission)
        else:
            await self.reject(task, submission, reason)
        step = self.journal.get("submission", sid).step
        log.info("result_reviewed", submission_id=sid, decision="accept" if accept else "reject", step=step)
        return f"submission {sid}: {step}"

    async def _decided_elsewhere(self, sid: int, task: Task) -> None:
        """After AlreadyDecided: journal what the chain holds (a person or another process decided)."""
        current = await self.market.submission(sid)
        step = "paid" if current.status == SubmissionStatus.ACCEPTED else "rejected"
        await self.journal.write("submission", sid, step, amount=current.paid_amount)
        log.info("result_decided_elsewhere", submission_id=sid, task_id=task.task_id, step=step)

    async def accept(self, task: Task, submission: Submission) -> None:
        sid = submission.submission_id
        await self.journal.write("submission", sid, "paying")
        self._paying_now.add(sid)
        try:
            await self.market.accept_task_result(self.keypair, sid)
        except DispatchFailed as exc:
            if exc.error != "AlreadyDecided":
                raise
            await self._decided_elsewhere(sid, task)
            return
        finally:
            self._paying_now.discard(sid)
        await self.journal.write("submission", sid, "paid", amount=task.pays_amount)
        self.metrics.inc("results_accepted")
        self.metrics.inc("amount_paid", task.pays_amount)
        log.info("result_accepted", submission_id=sid, task_id=task.task_id, worker=submission.worker,
                 amount=task.pays_amount)
        self.sweep_soon.set()

    async def reject(self, task: Task, submission: Submission, reason: str) -> None:
        sid = submission.submission_id
        await self.journal.write("submission", sid, "rejecting", reason=reason)
        try:
            receipt = await self.market.reject_task_result(self.keypair, sid, reason[:1024])
        except DispatchFailed as exc:
            if exc.error == "ReviewWindowClosed":  # decided too late: the worker may now claim the pay
                await self.journal.write("submission", sid, "window_closed", reason=reason)
                self.metrics.inc("review_windows_missed")
                log.warning("review_window_closed", submission_id=sid, task_id=task.task_id,
                            review_deadline_block=submission.review_deadline_block, reason=reason)
                return
            if exc.error != "AlreadyDecided":
                raise
            await self._decided_elsewhere(sid, task)
            return
        await self.journal.write("submission", sid, "rejected")
        self.metrics.inc("results_rejected")
        for refund in receipt.find("DecentralMLModule", "EscrowRefunded"):  # rejected after the task closed
            self.metrics.inc("escrow_reclaimed", refund["refunded"])
        log.info("result_rejected", submission_id=sid, task_id=task.task_id, reason=reason)
        self.sweep_soon.set()
