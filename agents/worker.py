"""A worker account (annotator, engineer, contributor): take matching tasks, do them, submit, unattended.

A :class:`WorkerAgent` is a plain object driven by events, not a process: the engine
(:mod:`agents.engine`) follows the chain once for all the worker accounts of a host and hands each
its part — which task to claim (the engine picks one idle, qualified worker per free slot, so two
workers of one host never go for the same slot), its verdicts, its review-window sweeps. ``agent
run`` is the engine with one worker.

Each task moves through journaled steps, one handler each (:attr:`WorkerAgent.steps`): ``claiming``
→ :meth:`claim_slot` (assign_task) → ``claimed`` → :meth:`fetch_assets` (verified assets) →
``fetched`` → :meth:`run_script` (sandboxed start_task.sh) → ``ran`` → :meth:`upload_outputs` →
``uploaded`` → :meth:`submit_result` (send_task_result) → ``submitted``. Each step is journaled
before the next starts; on restart every unfinished task resumes at its step after checking the
chain, so nothing is claimed or submitted twice.

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
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from decentralml_core import work
from decentralml_core.chain import ChainClient, DispatchFailed, TransactionRejected
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import ResultSpec, Submission, SubmissionStatus, Task
from decentralml_core.sandbox import PreparedRun, SandboxUnavailable, prepare_task_run, run_task_script
from decentralml_core.storage import Limits, StorageError, Unreachable, open_store
from decentralml_core.units import MIN_FEE_BALANCE

from .assets import AssetCache
from .config import AgentConfig
from .journal import Journal
from .metrics import Metrics
from .streams import TRANSIENT, Checkpointer, finish_within, settle_account

log = structlog.get_logger("agent.worker")
KIND = "task"
DONE = ("submitted", "skipped", "failed", "lost", "abandoned")
# A send the chain refuses because the result came too late: the task is abandoned (a warning), not failed
# (an error): nothing was lost, the slot's time ran out while the script ran (``make faults`` saw these as
# ``task_failed`` when tasks expired or were closed during a kill).
TOO_LATE = {"SubmissionDeadlinePassed": "the deadline passed", "TaskExpired": "the task expired",
            "TaskClosed": "the task was closed"}
ACTIVE = ("claiming", "claimed", "fetched", "ran", "uploaded")  # a slot this worker holds or goes for
PAYMENT_CLAIM = "payment_claim"  # the journal kind of a payment claim (claim_payment); "claim" until 2026-12-02
OLD_PAYMENT_CLAIM = "claim"  # read as PAYMENT_CLAIM: a journal written before the rename
STEP_TRANSIENT = (*TRANSIENT, Unreachable)  # a step failing with these is tried again
RETRY_FIRST_S, RETRY_MAX_S, RETRY_FOR_S = 1.0, 30.0, 600.0
FUNDS_POLL_S = 5.0  # an unfunded worker looks at its balance this often
VERDICTS = {"TaskResultAccepted": "accepted", "TaskResultRejected": "rejected",
            "PaymentClaimed": "accepted"}  # a claimed pay is an accepted result
RACE_LOST = {"MaxAssignmentsReached", "TaskExpired", "TaskClosed", "TaskNotFound",
             "TooFewAccepted", "RejectionRateTooHigh"}  # the record changed between the check and the call


class WorkerAgent:
    def __init__(self, config: AgentConfig, client: ChainClient, journal: Journal, metrics: Metrics,
                 *, name: str | None = None, assets: AssetCache | None = None, market: Market | None = None) -> None:
        self.config, self.client, self.journal, self.metrics = config, client, journal, metrics
        self.name = name or config.role
        self.market = market or Market(client)  # the engine's: a task read once per host
        self.keypair = config.key.load()
        self.address = self.keypair.ss58_address
        self.slots = asyncio.Semaphore(config.policy.max_concurrent)
        self.running: set[asyncio.Task] = set()
        self.work_root = config.state_dir / "work"
        self.assets = assets or AssetCache(config.state_dir / "assets")
        self.checkpoint = Checkpointer(journal)
        self.stopping = False
        self._fresh: set[int] = set()  # claims this process is about to send: nothing on chain yet to check
        self._counted: set[int] = set()  # fresh claims whose free slot the engine counted just now (no wait since)
        self._unfunded = False  # said once that the account cannot pay fees; tasks wait for funds
        self._sandboxes: dict[int, PreparedRun] = {}  # started at the end of a fetch, run by the next step
        self._resume_at: tuple[int, int] | None = None
        self.steps: dict[str, Callable[[int, dict], Awaitable[None]]] = {
            "claiming": self.claim_slot, "claimed": self.fetch_assets, "fetched": self.run_script,
            "ran": self.upload_outputs, "uploaded": self.submit_result}

    # -- life: start, then driven by the engine, then stop ---------------------------------------------
    async def start(self, stop: asyncio.Event) -> bool:
        """Let an earlier process's extrinsics land, then resume every unfinished task; False if stopped."""
        log.info("worker_started", role=self.config.role, worker=self.address, name=self.name)
        self.journal.rename_kind(OLD_PAYMENT_CLAIM, PAYMENT_CLAIM)  # "claim" alone now means a slot
        self.resume_from(self.since)
        if not await settle_account(self.client, self.address, stop):
            return False
        for entry in self.journal.entries(KIND):
            if entry.step not in DONE:
                self._spawn(int(entry.id))
        return True

    async def stop(self) -> None:
        """Take no new work; the steps in flight finish (or resume at the next start)."""
        self.checkpoint.flush()
        self.stopping = True
        await finish_within(self.running, self.config.stop_grace_s)
        log.info("worker_stopped", worker=self.address, name=self.name)

    @property
    def since(self) -> tuple[int, int] | None:
        """Where this worker's event stream resumes (block, index), or None on its first start."""
        since = self.journal.meta("checkpoint")
        return None if since is None else (since[0], since[1])

    def resume_from(self, since: tuple[int, int] | None) -> None:
        """Where this worker's events begin, read once (not a journal read per event and worker)."""
        self._resume_at = since

    def has_seen(self, event) -> bool:
        """An event at or before this worker's checkpoint at start (the engine's stream began earlier for
        another worker)."""
        return self._resume_at is not None and event.position <= self._resume_at

    @property
    def load(self) -> int:
        """Tasks this worker has on its hands (running or waiting for a slot)."""
        return len(self.running)

    def entry_step(self, task_id: int) -> str | None:
        entry = self.journal.get(KIND, task_id)
        return None if entry is None else entry.step

    async def on_event(self, event) -> None:
        """This worker's own events (the engine hands out ``TaskCreated`` and ``AssignmentAbandoned``)."""
        if event.pallet == "DecentralMLModule" and event.name in VERDICTS:
            await self.record_verdict(event.attributes, VERDICTS[event.name])

    def _spawn(self, task_id: int, delay_s: float = 0.0) -> None:
        task = asyncio.create_task(self.work_on(task_id, delay_s))
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    # -- the policy ------------------------------------------------------------------------------------
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
            labels = set(task.class_labels)
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

    async def assess(self, task: Task, now: int) -> str | None:
        """Why this worker would not take ``task`` (its policy, then its on-chain record), or None."""
        try:
            return self.refusal(task, now) or await self.unqualified(task)
        except STEP_TRANSIENT:
            raise  # the node, not the task: the event is handled again once the node answers
        except Exception as exc:  # chain data this agent cannot make sense of: skip the task, say why
            return f"unreadable task: {type(exc).__name__}: {exc}"[:300]

    async def decline(self, task_id: int, reason: str) -> None:
        await self.journal.write(KIND, task_id, "skipped", reason=reason)
        log.info("task_skipped", task_id=task_id, reason=reason, worker=self.name)

    async def take(self, task_id: int, seen_at: float | None = None, delay_s: float = 0.0,
                   counted: bool = False) -> None:
        """Go for a slot of ``task_id`` (the engine chose this worker for it), after ``delay_s`` (the
        rendezvous grace: a better-ranked worker elsewhere may take it first). ``counted``: the engine
        just counted a free slot and every other host leaves it to this worker (the rendezvous plan), so
        the claim goes out without counting again unless it has to wait for a slot of this worker."""
        await self.journal.write(KIND, task_id, "claiming", seen_at=seen_at or time.time())
        self._fresh.add(task_id)
        if counted and delay_s <= 0:
            self._counted.add(task_id)
        self._spawn(task_id, delay_s)

    async def retake(self, task_id: int) -> None:
        """A slot of a task this worker lost was abandoned by its holder: try again."""
        log.info("task_slot_reopened", task_id=task_id, worker=self.name)
        await self.take(task_id)

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

    # -- one task, step by step ------------------------------------------------------------------------
    async def work_on(self, task_id: int, delay_s: float = 0.0) -> None:
        if delay_s > 0 and not await self._pause(delay_s):
            return  # stopping: the claim is journaled and resumes (checked against the chain) at the next start
        if self.slots.locked():
            self._counted.discard(task_id)  # it waits for a slot: the engine's count will be stale
        async with self.slots:
            delay, give_up = RETRY_FIRST_S, time.monotonic() + RETRY_FOR_S
            try:
                while True:  # one journaled step at a time; when stopping, end after the current one
                    entry = self.journal.get(KIND, task_id)
                    if entry.step in DONE or (self.stopping and entry.step == "claiming"):
                        return
                    try:
                        await self.steps[entry.step](task_id, entry.data)
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
                await self.journal.write(KIND, task_id, "failed", error=f"{type(exc).__name__}: {exc}")
                self.metrics.inc("tasks_failed")
                log.error("task_failed", task_id=task_id, error=str(exc), error_type=type(exc).__name__)
            finally:  # stopping between the fetch and the run, or a step failed: nothing of it left running
                sandbox = self._sandboxes.pop(task_id, None)
                if sandbox is not None:
                    await sandbox.discard()

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

    async def claim_slot(self, task_id: int, data: dict) -> None:
        """``claiming``: assign_task, unless the chain says every slot is taken (no doomed extrinsic)."""
        # a claim journaled by an earlier run may have reached the chain before a crash: it counts
        existing = None if task_id in self._fresh else await self._my_submission(task_id)
        self._fresh.discard(task_id)
        task = await self.market.task_as_posted(task_id)
        # planned for this worker, counted free just before, no grace or queue since: not read again (a
        # round trip less before the claim goes out; a claim the chain then refuses is a lost race, as ever)
        counted = task_id in self._counted
        self._counted.discard(task_id)
        taken = 0 if counted else await self.market.assignments_taken(task_id)
        if existing is None and task is not None and taken >= task.max_assignments:
            await self.journal.write(KIND, task_id, "lost", reason="all assignments taken")  # no doomed extrinsic
            self.metrics.inc("tasks_lost")
            log.info("task_lost", task_id=task_id, reason="all assignments taken")
            return
        unqualified = None if existing is not None or task is None else await self.unqualified(task)
        if unqualified is not None:  # the record changed since the task was considered (a rejection came)
            await self.journal.write(KIND, task_id, "skipped", reason=unqualified)
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
                    await self.journal.write(KIND, task_id, "lost", reason=exc.error)
                    self.metrics.inc("tasks_lost")
                    log.info("task_lost", task_id=task_id, reason=exc.error)
                    return
        await self.journal.write(KIND, task_id, "claimed", submission_id=existing, claimed_at=time.time())
        self.metrics.inc("tasks_claimed")
        if data.get("seen_at"):
            self.metrics.observe("created_to_claimed_seconds", time.time() - data["seen_at"])
        log.info("task_claimed", task_id=task_id, submission_id=existing)

    async def fetch_assets(self, task_id: int, data: dict) -> None:
        """``claimed``: the task's assets, verified, into this task's own work dir (from the host's cache)."""
        task = await self.market.task_as_posted(task_id)
        folder = work.work_dir(self.work_root, task_id, data["submission_id"])
        if not folder.exists():  # only ever a complete folder there
            store = open_store(work.storage_of(task), self.config.storage.config())
            limit = self.config.policy.max_asset_mb * 1024 * 1024
            await self.assets.copy_to(store, task, folder, Limits(max_total=limit, max_file=limit))
        await self._start_sandbox(task_id, task, folder)
        await self.journal.write(KIND, task_id, "fetched", folder=str(folder))
        log.info("task_fetched", task_id=task_id, folder=str(folder))

    async def _start_sandbox(self, task_id: int, task: Task | None, folder: Path) -> None:
        """Start the task's sandbox now, for :meth:`run_script` to run the script in: what is left of the task's
        path before it runs (this step's journal row, the deadline's read, the parameters) is time in which
        bubblewrap sets up instead of after (23-30 ms of a tiny task's while a farm keeps 2 cores busy; see
        ``PreparedRun``). One that cannot be started now is started by :meth:`run_script` as before."""
        script = _script_of(task)
        earlier = self._sandboxes.pop(task_id, None)  # the step taken again (a retry): one sandbox a task
        if earlier is not None:
            await earlier.discard()
        try:
            self._sandboxes[task_id] = await prepare_task_run(
                folder, script, self.config.sandbox.limits(), self.config.sandbox.allow_unsandboxed,
                data_dir=self.config.data)
        except (SandboxUnavailable, OSError) as exc:  # said, and acted on, where the script would run
            log.debug("sandbox_not_started_ahead", task_id=task_id, error=str(exc))

    async def run_script(self, task_id: int, data: dict) -> None:
        """``fetched``: start_task.sh in the sandbox (started at the fetch, where it could be), on a clean outputs
        folder."""
        sandbox = self._sandboxes.pop(task_id, None)
        try:
            if await self._past_deadline(task_id, data["submission_id"],
                                         await self.market.submission(data["submission_id"])):
                return
            folder = Path(data["folder"])
            shutil.rmtree(folder / "outputs", ignore_errors=True)  # a run cut short starts again clean
            task = await self.market.task_as_posted(task_id)
            terms = {k: v for k, v in dataclasses.asdict(task).items() if not k.endswith("credentials")}
            work.write_task_parameters(folder, terms)  # the script's parameters
            script = _script_of(task)
            timing: dict[str, float] = {}  # journaled with the run's wall clock (bench/farm.py reads both)
            if sandbox is not None and (sandbox.task_dir, sandbox.script) == (folder.resolve(), script):
                report, ran, sandbox = await sandbox.run(), sandbox, None
                timing["sandbox_start_wait_s"] = round(ran.start_wait_s, 4)  # what was left of its start
            else:
                report = await run_task_script(folder, script, self.config.sandbox.limits(),
                                               self.config.sandbox.allow_unsandboxed, data_dir=self.config.data)
        finally:
            if sandbox is not None:  # not run: past the deadline, or the step failed before
                await sandbox.discard()
        self.metrics.inc("sandbox_seconds", report.wall_s)
        if report.status != "ok":
            await self.journal.write(KIND, task_id, "failed", error="; ".join(report.errors), sandbox=report.as_dict())
            self.metrics.inc("tasks_failed")
            log.warning("task_script_failed", task_id=task_id, status=report.status, errors=report.errors,
                        stderr=report.stderr_tail[-512:])
            return
        problem = None
        if self.config.data is not None:  # a contributor's check loads numpy: imported by contributors only
            from decentralml_core.federated.outputs import contribution_problem

            problem = contribution_problem(folder)
        if problem is not None:  # private data on this host: only a model update may leave it
            await self.journal.write(KIND, task_id, "failed", error=problem)
            self.metrics.inc("tasks_failed")
            log.warning("task_outputs_refused", task_id=task_id, reason=problem)
            return
        # the run's wall clock, from the word to go to its report: what the sandbox cost this task
        await self.journal.write(KIND, task_id, "ran", outputs=report.outputs, sandbox_s=report.wall_s, **timing)

    async def upload_outputs(self, task_id: int, data: dict) -> None:
        """``ran``: the outputs folder into the task's storage."""
        task = await self.market.task_as_posted(task_id)
        storage = work.storage_of(task)
        ref = await work.publish_outputs(open_store(storage, self.config.storage.config()),
                                         Path(data["folder"]) / "outputs")
        await self.journal.write(KIND, task_id, "uploaded", result_path=ref, storage=storage, ready_at=time.time())

    async def submit_result(self, task_id: int, data: dict) -> None:
        """``uploaded``: send_task_result (once: the chain is read first), then watch for the verdict."""
        sid = data["submission_id"]
        current = await self.market.submission(sid)  # one read for the deadline and for a send before a crash
        if await self._past_deadline(task_id, sid, current):
            return
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
                elif exc.error in TOO_LATE:
                    await self._abandoned(task_id, sid, f"{TOO_LATE[exc.error]} while the result was on its way")
                    return
                else:
                    raise
        await self._await_decision(task_id, sid)
        await self.journal.write(KIND, task_id, "submitted", submitted_at=time.time())
        self.metrics.inc("tasks_completed")
        if data.get("claimed_at"):
            self.metrics.observe("claimed_to_submitted_seconds", time.time() - data["claimed_at"])
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
        await self.journal.write(KIND, task_id, entry.step, verdict=verdict, **({"verdict_reason": reason} if reason else {}))
        self.metrics.inc(f"results_{verdict}")
        if verdict == "accepted" and entry.data.get("submitted_at"):
            self.metrics.observe("submitted_to_paid_seconds", time.time() - entry.data["submitted_at"])
        task = await self.market.task_as_posted(task_id)
        creator = task.creator if task else "?"

        def count(tallies: dict) -> dict:
            tallies.setdefault(creator, {"accepted": 0, "rejected": 0})[verdict] += 1
            return tallies

        tally = (await self.journal.update_meta("verdicts", count, {}))[creator]
        if verdict == "rejected":
            log.warning("result_rejected", task_id=task_id, creator=creator, reason=reason, **tally)
            limit = self.config.policy.distrust_after
            if limit and not tally["accepted"] and tally["rejected"] == limit:
                log.error("creator_rejects_everything", creator=creator, rejected=tally["rejected"],
                          action="its tasks are skipped from now on (policy.distrust_after)")
        else:
            log.info("result_paid", task_id=task_id, amount=attributes.get("amount"))

    # -- the assignment deadline --------------------------------------------------------------------
    async def _past_deadline(self, task_id: int, sid: int, current: Submission | None) -> bool:
        """True (and the task journaled ``abandoned``) if the result can no longer be sent: the chain
        abandoned the assignment, or the next block is past its deadline. ``current``: the submission as
        the caller just read it."""
        if current is None or current.submit_deadline_block is None or current.status not in (
                SubmissionStatus.ASSIGNED, SubmissionStatus.ABANDONED):
            return False
        if current.status == SubmissionStatus.ABANDONED:
            await self._abandoned(task_id, sid, "abandoned on chain")
            return True
        if await self.client.block_number() >= current.submit_deadline_block:
            await self._abandoned(task_id, sid, f"due by block {current.submit_deadline_block}")
            return True
        return False

    async def _abandoned(self, task_id: int, sid: int, reason: str) -> None:
        await self.journal.write(KIND, task_id, "abandoned", reason=reason)
        self.metrics.inc("tasks_abandoned")
        log.warning("task_abandoned", task_id=task_id, submission_id=sid, reason=reason)

    # -- the review window: claim the pay the creator left undecided -------------------------------------
    async def _await_decision(self, task_id: int, sid: int) -> None:
        """Watch a sent result for a creator who lets its review window pass (tasks that set one)."""
        if not self.market.capabilities.claim_payment or self.journal.get(PAYMENT_CLAIM, sid) is not None:
            return
        task = await self.market.task_as_posted(task_id)
        if task is not None and task.terms.review_window is not None:
            await self.journal.write(PAYMENT_CLAIM, sid, "waiting", task_id=task_id)

    async def sweep_payment_claims(self) -> None:
        """Claim every waiting result whose review window has passed; never raises (the loop goes on)."""
        entries = self.journal.entries(PAYMENT_CLAIM, steps=("waiting", "claiming"))
        if not entries:
            return
        try:
            now = await self.client.block_number()
        except STEP_TRANSIENT as exc:
            log.warning("payment_claim_sweep_skipped", error=str(exc))
            return
        for entry in entries:
            deadline = entry.data.get("deadline")
            if entry.step == "waiting" and deadline is not None and now <= deadline:
                continue  # the creator may still decide: no read, no extrinsic
            try:
                await self.claim_payment(int(entry.id), now)
            except Exception as exc:  # a chain error: this claim waits for the next sweep, the agent goes on
                log.error("payment_claim_failed", submission_id=int(entry.id), error=str(exc), error_type=type(exc).__name__)

    async def claim_payment(self, sid: int, now: int) -> None:
        current = await self.market.submission(sid)
        if current is None:
            return
        if current.status in (SubmissionStatus.ACCEPTED, SubmissionStatus.REJECTED):  # the creator decided (or we did)
            await self.journal.write(PAYMENT_CLAIM, sid, "decided", status=str(current.status), amount=current.paid_amount)
            return
        deadline = current.review_deadline_block
        if current.status != SubmissionStatus.PENDING_VALIDATION or deadline is None:
            await self.journal.write(PAYMENT_CLAIM, sid, "decided", status=str(current.status))
            return
        if now <= deadline:
            await self.journal.write(PAYMENT_CLAIM, sid, "waiting", deadline=deadline)
            return
        await self.journal.write(PAYMENT_CLAIM, sid, "claiming", deadline=deadline)
        try:
            receipt = await self.market.claim_payment(self.keypair, sid)
        except DispatchFailed as exc:
            if exc.error == "ReviewWindowOpen":  # our view of the head was behind
                await self.journal.write(PAYMENT_CLAIM, sid, "waiting")
                return
            if exc.error != "AlreadyDecided":  # e.g. InsufficientEscrow: say so once, do not pay fees forever
                await self.journal.write(PAYMENT_CLAIM, sid, "failed", error=exc.error)
                log.error("payment_claim_refused", submission_id=sid, error=exc.error)
                return
            await self.journal.write(PAYMENT_CLAIM, sid, "decided", status="decided as the claim was sent")
            return
        (claimed,) = receipt.find("DecentralMLModule", "PaymentClaimed")
        await self.journal.write(PAYMENT_CLAIM, sid, "claimed", amount=claimed["amount"], block=receipt.block_number)
        self.metrics.inc("payments_claimed")
        self.metrics.inc("amount_claimed", claimed["amount"])
        log.info("payment_claimed", submission_id=sid, amount=claimed["amount"], review_deadline_block=deadline)

    async def _my_submission(self, task_id: int) -> int | None:
        for sid in await self.market.worker_submissions(self.keypair.ss58_address):
            sub = await self.market.submission(sid)
            if sub is not None and sub.task_id == task_id:
                return sid
        return None


def _script_of(task: Task | None) -> str:
    """The script a task's assets name (``start_task.sh`` when they name none): what its sandbox runs."""
    return ((None if task is None else work.assets_of(task)) or (None, work.SCRIPT))[1]
