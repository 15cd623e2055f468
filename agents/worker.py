"""A worker agent (annotator, engineer, contributor): take matching tasks, do them, submit, unattended.

The loop reads as its journal steps: ``consider`` (policy) → ``claim`` (assign_task) → ``fetch``
(verified assets) → ``run`` (sandboxed start_task.sh) → ``upload`` (outputs) → ``submit``
(send_task_result). Each step is journaled before the next starts; on restart every unfinished task
resumes at its step after checking the chain, so nothing is claimed or submitted twice.

The market rules, where the node has them: a task whose qualifications this worker's on-chain record
does not meet is skipped without an extrinsic; a result is not sent once the assignment's deadline
has passed (the task ends ``abandoned``), and when another worker abandons a slot of a task this one
lost, it tries again. A result the creator leaves undecided past the review window is claimed
(``claim_payment``) by a periodic sweep over the ``claim`` journal (waiting → claiming → claimed |
decided): the step is journaled before the call and the chain is read first after a restart, and the
chain pays a submission at most once, so a claim is paid exactly once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from pathlib import Path

import structlog

from decentralml_core import work
from decentralml_core.chain import ChainClient, Checkpoint, DispatchFailed, TransactionRejected
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import ResultSpec, SubmissionStatus, Task
from decentralml_core.federated.outputs import contribution_problem
from decentralml_core.sandbox import run_task_script
from decentralml_core.storage import Limits, StorageError, Unreachable, open_store
from decentralml_core.units import MIN_FEE_BALANCE

from .config import AgentConfig
from .journal import Journal
from .metrics import Metrics
from .streams import TRANSIENT, Checkpointer, close_stream, finish_within, handle_with_retry, settle_account

log = structlog.get_logger("agent.worker")
KIND = "task"
DONE = ("submitted", "skipped", "failed", "lost", "abandoned")
CLAIM = "claim"
SWEEP_S = 2.0
STEP_TRANSIENT = (*TRANSIENT, Unreachable)  # a step failing with these is tried again
RETRY_FIRST_S, RETRY_MAX_S, RETRY_FOR_S = 1.0, 30.0, 600.0
FUNDS_POLL_S = 5.0  # an unfunded worker looks at its balance this often
VERDICTS = {"TaskResultAccepted": "accepted", "TaskResultRejected": "rejected",
            "PaymentClaimed": "accepted"}  # a claimed pay is an accepted result
RACE_LOST = {"MaxAssignmentsReached", "TaskExpired", "TaskClosed", "TaskNotFound",
             "TooFewAccepted", "RejectionRateTooHigh"}  # the record changed between the check and the call


class WorkerAgent:
    def __init__(self, config: AgentConfig, client: ChainClient, journal: Journal, metrics: Metrics) -> None:
        self.config, self.client, self.journal, self.metrics = config, client, journal, metrics
        self.market = Market(client)
        self.keypair = config.key.load()
        self.slots = asyncio.Semaphore(config.policy.max_concurrent)
        self.running: set[asyncio.Task] = set()
        self.work_root = config.state_dir / "work"
        self.stopping = False
        self._fresh: set[int] = set()  # claims this process is about to send: nothing on chain yet to check
        self._unfunded = False  # said once that the account cannot pay fees; tasks wait for funds

    # -- the loop ------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        log.info("worker_started", role=self.config.role, worker=self.keypair.ss58_address)
        if not await settle_account(self.client, self.keypair.ss58_address, stop):
            return
        for entry in self.journal.entries(KIND):
            if entry.step not in DONE:
                self._spawn(int(entry.id))
        since = self.journal.meta("checkpoint")
        if since is None:  # first start: open tasks now, then everything new
            since = await handle_with_retry(self.first_look, stop, "first_look")
            if since is None:
                return
        events = self.client.events(Checkpoint(*since))
        checkpoint = Checkpointer(self.journal)
        waiter = asyncio.ensure_future(stop.wait())
        nxt = None
        last_sweep = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() - last_sweep >= SWEEP_S:
                    await self.sweep_claims()
                    last_sweep = time.monotonic()
                nxt = nxt if nxt is not None and not nxt.done() else asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait({nxt, waiter}, timeout=SWEEP_S, return_when=asyncio.FIRST_COMPLETED)
                if waiter in done:
                    break
                if nxt not in done:
                    continue
                event = nxt.result()
                self.metrics.set("chain_block", event.block_number)
                if await handle_with_retry(lambda e=event: self.handle(e), stop, event.name) is None:
                    break  # stopped while the node was away: the event is handled again at the next start
                checkpoint.advance(event)
        finally:
            checkpoint.flush()
            waiter.cancel()
            await close_stream(nxt, events)
            self.stopping = True
            await finish_within(self.running)  # the steps in flight finish, or resume at the next start
            log.info("worker_stopped", worker=self.keypair.ss58_address)

    async def first_look(self) -> list[int]:
        """First start: every open task now, then everything new from the next block on."""
        now = await self.client.block_number()
        for task_id in await self.market.open_task_ids():
            await self.consider(task_id, now)
        since = [now + 1, -1]
        self.journal.set_meta("checkpoint", since)
        return since

    async def handle(self, event) -> bool:
        if event.pallet == "DecentralMLModule" and event.name == "TaskCreated":
            self.metrics.inc("tasks_seen")
            await self.consider(event.attributes["taskid"], event.block_number)
        elif event.pallet == "DecentralMLModule" and event.name in VERDICTS:
            await self.record_verdict(event.attributes, VERDICTS[event.name])
        elif event.pallet == "DecentralMLModule" and event.name == "AssignmentAbandoned":
            await self.reconsider(event.attributes["task_id"], event.block_number)
        return True

    def _spawn(self, task_id: int) -> None:
        task = asyncio.create_task(self.work_on(task_id))
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    # -- consider: the policy --------------------------------------------------------------------------
    def refusal(self, task: Task, now: int) -> str | None:
        """Why the policy declines a task, or None to take it."""
        policy = self.config.policy
        if task.task_type != self.config.task_type:
            return f"type {task.task_type} is not {self.config.task_type}"
        if task.creator == self.keypair.ss58_address:
            return "own task"
        tally = self.journal.meta("verdicts", {}).get(task.creator, {})
        if policy.distrust_after and not tally.get("accepted") and tally.get("rejected", 0) >= policy.distrust_after:
            return f"creator {task.creator} rejected all {tally['rejected']} of our results (distrust_after)"
        if task.pays_amount < policy.min_pay:
            return f"pays {task.pays_amount} < min_pay {policy.min_pay}"
        if task.expiration_block - now < policy.min_blocks_left:
            return f"expires at block {task.expiration_block}, fewer than {policy.min_blocks_left} blocks left"
        if policy.annotation_types and task.annotation_type not in policy.annotation_types:
            return f"annotation type {task.annotation_type} not in policy"
        if policy.class_labels is not None:
            labels = {label.strip() for label in (task.annotation_class_labels or "").split(",") if label.strip()}
            if not labels <= set(policy.class_labels):
                return f"labels {sorted(labels - set(policy.class_labels))} not in policy"
        try:
            if work.assets_of(task) is None:
                return "names no assets folder"
        except StorageError as exc:  # e.g. a script name that would leave the work dir
            return f"unusable assets: {exc}"
        storage = work.storage_of(task)
        if storage not in policy.storage_types:
            return f"storage {storage} not in policy"
        epochs = work.training_settings(task).get("epochs")
        if policy.max_epochs is not None and isinstance(epochs, int) and epochs > policy.max_epochs:
            return f"asks for {epochs} epochs, more than max_epochs {policy.max_epochs}"
        return None

    async def consider(self, task_id: int, now: int) -> None:
        if self.stopping or self.journal.get(KIND, task_id) is not None:
            return
        try:
            task = await self.market.terms(task_id)
            if task is None:
                return
            reason = self.refusal(task, now) or await self.unqualified(task)
        except STEP_TRANSIENT:
            raise  # the node, not the task: the event is handled again once the node answers
        except Exception as exc:  # chain data this agent cannot make sense of: skip the task, say why
            reason = f"unreadable task: {type(exc).__name__}: {exc}"[:300]
        if reason is not None:
            self.journal.set(KIND, task_id, "skipped", reason=reason)
            log.info("task_skipped", task_id=task_id, reason=reason)
            return
        self.journal.set(KIND, task_id, "claiming")
        self._fresh.add(task_id)
        self._spawn(task_id)

    async def unqualified(self, task: Task) -> str | None:
        """Why assign_task would refuse this worker (the task's qualifications against its on-chain
        record), or None: checked here so a doomed extrinsic is never sent."""
        if task.terms.qualifies_anyone:
            return None
        stats = await self.market.worker_stats(self.keypair.ss58_address)
        error = task.terms.refusal(stats, task.creator)
        if error is None:
            return None
        self.metrics.inc("tasks_unqualified")
        return f"not qualified ({error}): {stats.summary()}; the task wants {task.terms.requirements()}"

    async def reconsider(self, task_id: int, now: int) -> None:
        """A slot was abandoned by its holder: consider the task if this worker never did (it was full
        when first seen), try again if it lost the race for it."""
        entry = self.journal.get(KIND, task_id)
        if entry is None:
            await self.consider(task_id, now)
            return
        if self.stopping or entry.step != "lost":
            return
        log.info("task_slot_reopened", task_id=task_id)
        self.journal.set(KIND, task_id, "claiming")
        self._fresh.add(task_id)
        self._spawn(task_id)

    # -- one task, step by step ------------------------------------------------------------------------
    async def work_on(self, task_id: int) -> None:
        async with self.slots:
            delay, give_up = RETRY_FIRST_S, time.monotonic() + RETRY_FOR_S
            try:
                while True:  # one journaled step at a time; when stopping, end after the current one
                    entry = self.journal.get(KIND, task_id)
                    if entry.step in DONE or (self.stopping and entry.step == "claiming"):
                        return
                    try:
                        await getattr(self, f"_{entry.step}")(task_id, entry.data)
                    except TransactionRejected as exc:
                        if not exc.cannot_pay_fees or not await self._wait_for_funds():
                            raise
                        continue
                    except STEP_TRANSIENT as exc:  # the network: the same step again (each one checks the chain first)
                        if time.monotonic() + delay > give_up:
                            raise
                        log.warning("task_step_retry", task_id=task_id, step=entry.step, error=str(exc),
                                    error_type=type(exc).__name__, retry_in_s=delay)
                        self.metrics.inc("step_retries")
                        if not await self._pause(delay):
                            return
                        delay = min(delay * 2, RETRY_MAX_S)
                        continue
                    delay = RETRY_FIRST_S
                    if self.stopping:
                        return
            except Exception as exc:  # malformed chain data included: this task fails, the agent goes on
                self.journal.set(KIND, task_id, "failed", error=f"{type(exc).__name__}: {exc}")
                self.metrics.inc("tasks_failed")
                log.error("task_failed", task_id=task_id, error=str(exc), error_type=type(exc).__name__)

    async def _wait_for_funds(self) -> bool:
        """The account cannot pay fees: say so once (not once per task) and wait until it can; False if stopping."""
        address = self.keypair.ss58_address
        if not self._unfunded:
            self._unfunded = True
            log.warning("account_cannot_pay_fees", worker=address, action="waiting for funds: "
                        "`decentralml account transfer` or `decentralml farm fund`")
        while await self._pause(FUNDS_POLL_S):
            if await self.client.free_balance(address) >= MIN_FEE_BALANCE:
                if self._unfunded:
                    self._unfunded = False
                    log.info("account_funded", worker=address)
                return True
        return False

    async def _pause(self, seconds: float) -> bool:
        """Sleep, unless the agent is stopping (then False at once)."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            await asyncio.sleep(min(0.5, deadline - time.monotonic()))
        return not self.stopping

    async def _claiming(self, task_id: int, data: dict) -> None:
        # a claim journaled by an earlier run may have reached the chain before a crash: it counts
        existing = None if task_id in self._fresh else await self._my_submission(task_id)
        self._fresh.discard(task_id)
        task = await self.market.terms(task_id)
        taken = await self.client.storage("DecentralMLModule", "TaskResultSubmissionCountByTaskId", [task_id])
        if existing is None and task is not None and (taken or 0) >= task.max_assignments:
            self.journal.set(KIND, task_id, "lost", reason="all assignments taken")  # no doomed extrinsic
            self.metrics.inc("tasks_lost")
            log.info("task_lost", task_id=task_id, reason="all assignments taken")
            return
        unqualified = None if existing is not None or task is None else await self.unqualified(task)
        if unqualified is not None:  # the record changed since the task was considered (a rejection came)
            self.journal.set(KIND, task_id, "skipped", reason=unqualified)
            log.info("task_skipped", task_id=task_id, reason=unqualified)
            return
        if existing is None:
            try:
                existing, _ = await self.market.assign_task(self.keypair, task_id)
            except DispatchFailed as exc:
                if exc.error == "AlreadyAssigned":  # an earlier send of ours landed after all (a resend, a restart)
                    existing = await self._my_submission(task_id)
                elif exc.error not in RACE_LOST:
                    raise
                if existing is None:
                    self.journal.set(KIND, task_id, "lost", reason=exc.error)
                    self.metrics.inc("tasks_lost")
                    log.info("task_lost", task_id=task_id, reason=exc.error)
                    return
        self.journal.set(KIND, task_id, "claimed", submission_id=existing)
        self.metrics.inc("tasks_claimed")
        log.info("task_claimed", task_id=task_id, submission_id=existing)

    async def _claimed(self, task_id: int, data: dict) -> None:
        task = await self.market.terms(task_id)
        folder = work.work_dir(self.work_root, task_id, data["submission_id"])
        if not folder.exists():  # get_folder only ever leaves a complete folder there
            store = open_store(work.storage_of(task), self.config.storage.config())
            limit = self.config.policy.max_asset_mb * 1024 * 1024
            await work.fetch_assets(store, task, folder, Limits(max_total=limit, max_file=limit))
        self.journal.set(KIND, task_id, "fetched", folder=str(folder))
        log.info("task_fetched", task_id=task_id, folder=str(folder))

    async def _fetched(self, task_id: int, data: dict) -> None:
        if await self._past_deadline(task_id, data["submission_id"]):
            return
        folder = Path(data["folder"])
        shutil.rmtree(folder / "outputs", ignore_errors=True)  # a run cut short starts again clean
        task = await self.market.terms(task_id)
        terms = {k: v for k, v in dataclasses.asdict(task).items() if not k.endswith("credentials")}
        work.write_task_parameters(folder, terms)  # the script's parameters
        _, script = work.assets_of(task) or (None, work.SCRIPT)
        report = await run_task_script(folder, script, self.config.sandbox.limits(),
                                       self.config.sandbox.allow_unsandboxed, data_dir=self.config.data)
        self.metrics.inc("sandbox_seconds", report.wall_s)
        if report.status != "ok":
            self.journal.set(KIND, task_id, "failed", error="; ".join(report.errors), sandbox=report.as_dict())
            self.metrics.inc("tasks_failed")
            log.warning("task_script_failed", task_id=task_id, status=report.status, errors=report.errors,
                        stderr=report.stderr_tail[-512:])
            return
        problem = None if self.config.data is None else contribution_problem(folder)
        if problem is not None:  # private data on this host: only a model update may leave it
            self.journal.set(KIND, task_id, "failed", error=problem)
            self.metrics.inc("tasks_failed")
            log.warning("task_outputs_refused", task_id=task_id, reason=problem)
            return
        self.journal.set(KIND, task_id, "ran", outputs=report.outputs)

    async def _ran(self, task_id: int, data: dict) -> None:
        task = await self.market.terms(task_id)
        storage = work.storage_of(task)
        ref = await work.publish_outputs(open_store(storage, self.config.storage.config()),
                                         Path(data["folder"]) / "outputs")
        self.journal.set(KIND, task_id, "uploaded", result_path=ref, storage=storage, ready_at=time.time())

    async def _uploaded(self, task_id: int, data: dict) -> None:
        sid = data["submission_id"]
        if await self._past_deadline(task_id, sid):
            return
        current = await self.market.submission(sid)
        if current is not None and current.status != SubmissionStatus.ASSIGNED:
            log.info("task_already_submitted", task_id=task_id, submission_id=sid)  # sent before a crash
        else:
            try:
                await self.market.send_task_result(self.keypair, ResultSpec(
                    sid, result=None, result_path=data["result_path"], result_storage_type=data["storage"],
                    result_storage_credentials=""))
            except DispatchFailed as exc:
                if exc.error == "InvalidStatus" and (await self.market.submission(sid)).status in (
                        SubmissionStatus.PENDING_VALIDATION, SubmissionStatus.ACCEPTED, SubmissionStatus.REJECTED):
                    log.info("task_already_submitted", task_id=task_id, submission_id=sid)  # an earlier send landed
                elif exc.error == "SubmissionDeadlinePassed":
                    self._abandoned(task_id, sid, "the deadline passed while the result was on its way")
                    return
                else:
                    raise
        await self._await_decision(task_id, sid)
        self.journal.set(KIND, task_id, "submitted")
        self.metrics.inc("tasks_completed")
        log.info("task_submitted", task_id=task_id, submission_id=sid, result_path=data["result_path"])

    async def record_verdict(self, attributes: dict, verdict: str) -> None:
        """A creator decided one of our results: journal it, and report a creator that rejects everything."""
        if attributes.get("worker") != self.keypair.ss58_address:
            return
        task_id = attributes.get("task_id")
        entry = self.journal.get(KIND, task_id)
        if entry is None or "verdict" in entry.data:  # not ours, or counted before a restart
            return
        reason = str(attributes.get("reason") or "")[:300]
        self.journal.set(KIND, task_id, entry.step, verdict=verdict, **({"verdict_reason": reason} if reason else {}))
        self.metrics.inc(f"results_{verdict}")
        task = await self.market.terms(task_id)
        creator = task.creator if task else "?"
        tallies = self.journal.meta("verdicts", {})
        tally = tallies.setdefault(creator, {"accepted": 0, "rejected": 0})
        tally[verdict] += 1
        self.journal.set_meta("verdicts", tallies)
        if verdict == "rejected":
            log.warning("result_rejected", task_id=task_id, creator=creator, reason=reason, **tally)
            limit = self.config.policy.distrust_after
            if limit and not tally["accepted"] and tally["rejected"] == limit:
                log.error("creator_rejects_everything", creator=creator, rejected=tally["rejected"],
                          action="its tasks are skipped from now on (policy.distrust_after)")
        else:
            log.info("result_paid", task_id=task_id, amount=attributes.get("amount"))

    # -- the assignment deadline --------------------------------------------------------------------
    async def _past_deadline(self, task_id: int, sid: int) -> bool:
        """True (and the task journaled ``abandoned``) if the result can no longer be sent: the chain
        abandoned the assignment, or the next block is past its deadline."""
        current = await self.market.submission(sid)
        if current is None or current.submit_deadline_block is None or current.status not in (
                SubmissionStatus.ASSIGNED, SubmissionStatus.ABANDONED):
            return False
        if current.status == SubmissionStatus.ABANDONED:
            self._abandoned(task_id, sid, "abandoned on chain")
            return True
        if await self.client.block_number() >= current.submit_deadline_block:
            self._abandoned(task_id, sid, f"due by block {current.submit_deadline_block}")
            return True
        return False

    def _abandoned(self, task_id: int, sid: int, reason: str) -> None:
        self.journal.set(KIND, task_id, "abandoned", reason=reason)
        self.metrics.inc("tasks_abandoned")
        log.warning("task_abandoned", task_id=task_id, submission_id=sid, reason=reason)

    # -- the review window: claim the pay the creator left undecided -------------------------------------
    async def _await_decision(self, task_id: int, sid: int) -> None:
        """Watch a sent result for a creator who lets its review window pass (tasks that set one)."""
        if not self.market.capabilities.claim_payment or self.journal.get(CLAIM, sid) is not None:
            return
        task = await self.market.terms(task_id)
        if task is not None and task.terms.review_window is not None:
            self.journal.set(CLAIM, sid, "waiting", task_id=task_id)

    async def sweep_claims(self) -> None:
        """Claim every waiting result whose review window has passed; never raises (the loop goes on)."""
        entries = self.journal.entries(CLAIM, steps=("waiting", "claiming"))
        if not entries:
            return
        try:
            now = await self.client.block_number()
        except STEP_TRANSIENT as exc:
            log.warning("claim_sweep_skipped", error=str(exc))
            return
        for entry in entries:
            deadline = entry.data.get("deadline")
            if entry.step == "waiting" and deadline is not None and now <= deadline:
                continue  # the creator may still decide: no read, no extrinsic
            try:
                await self.claim(int(entry.id), now)
            except Exception as exc:  # a chain error: this claim waits for the next sweep, the agent goes on
                log.error("claim_failed", submission_id=int(entry.id), error=str(exc), error_type=type(exc).__name__)

    async def claim(self, sid: int, now: int) -> None:
        current = await self.market.submission(sid)
        if current is None:
            return
        if current.status in (SubmissionStatus.ACCEPTED, SubmissionStatus.REJECTED):  # the creator decided (or we did)
            self.journal.set(CLAIM, sid, "decided", status=str(current.status), amount=current.paid_amount)
            return
        deadline = current.review_deadline_block
        if current.status != SubmissionStatus.PENDING_VALIDATION or deadline is None:
            self.journal.set(CLAIM, sid, "decided", status=str(current.status))
            return
        if now <= deadline:
            self.journal.set(CLAIM, sid, "waiting", deadline=deadline)
            return
        self.journal.set(CLAIM, sid, "claiming", deadline=deadline)
        try:
            receipt = await self.market.claim_payment(self.keypair, sid)
        except DispatchFailed as exc:
            if exc.error == "ReviewWindowOpen":  # our view of the head was behind
                self.journal.set(CLAIM, sid, "waiting")
                return
            if exc.error != "AlreadyDecided":  # e.g. InsufficientEscrow: say so once, do not pay fees forever
                self.journal.set(CLAIM, sid, "failed", error=exc.error)
                log.error("claim_refused", submission_id=sid, error=exc.error)
                return
            self.journal.set(CLAIM, sid, "decided", status="decided as the claim was sent")
            return
        (claimed,) = receipt.find("DecentralMLModule", "PaymentClaimed")
        self.journal.set(CLAIM, sid, "claimed", amount=claimed["amount"], block=receipt.block_number)
        self.metrics.inc("payments_claimed")
        self.metrics.inc("amount_claimed", claimed["amount"])
        log.info("payment_claimed", submission_id=sid, amount=claimed["amount"], review_deadline_block=deadline)

    async def _my_submission(self, task_id: int) -> int | None:
        for sid in await self.market.worker_submissions(self.keypair.ss58_address):
            sub = await self.market.submission(sid)
            if sub is not None and sub.task_id == task_id:
                return sid
        return None
