"""One engine per host: one chain connection, one follower, N worker accounts.

Before, every worker was its own process following every block: each decoded every event with
substrate-interface, read every task and raced every other worker for it (``bench/farm.py``: 8
annotators did 0.70× the tasks/s of one; 16 cost ~1.8 GB). The engine follows the chain once and
fans the events out to its :class:`~agents.worker.WorkerAgent` objects (each with its own key, nonce
book in the shared client, journal, policy and sandboxes):

- ``TaskCreated`` / ``AssignmentAbandoned``: :meth:`Engine.dispatch` reads the task once, counts its
  free slots (the chain's count, less the claims of this host not yet on chain) and gives each free
  slot to one idle, qualified worker — two workers of one host never go for the same slot.
- Verdicts go to the worker they name; the review-window sweep runs for each worker.

Across hosts, without coordination: rendezvous hashing of (task, worker) orders every worker for
every task; a host waits ``grace_s`` for each better-ranked worker of other hosts (``peers``, up to
:data:`RANKS_WAITED`) before its claim, which then finds the slot taken and sends nothing instead of
a claim refused on chain (a fee). ``grace_s: 0`` races as before.

``agent run`` of a worker role is this engine with one worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable

import structlog

from decentralml_core.chain import ChainClient, Checkpoint
from decentralml_core.chain.market import Market

from .metrics import Metrics
from .streams import follow_events, handle_with_retry
from .worker import ACTIVE, VERDICTS, WorkerAgent

log = structlog.get_logger("agent.engine")
RANKS_WAITED = 3  # a host waits at most this many graces: the next few hosts' claims land in that time


def rendezvous_score(task_id: int, address: str) -> bytes:
    """The (task, worker) weight of highest-random-weight hashing: every host computes the same order."""
    return hashlib.blake2b(f"{task_id}:{address}".encode(), digest_size=8).digest()


def grace_for(task_id: int, address: str, peers: Iterable[str], grace_s: float) -> float:
    """How long a host whose chosen worker is ``address`` waits before claiming ``task_id``: ``grace_s``
    per worker of other hosts ranked ahead of it (at most :data:`RANKS_WAITED`)."""
    if grace_s <= 0:
        return 0.0
    mine = rendezvous_score(task_id, address)
    ahead = sum(rendezvous_score(task_id, peer) > mine for peer in peers if peer != address)
    return grace_s * min(ahead, RANKS_WAITED)


class Engine:
    def __init__(self, client: ChainClient, workers: list[WorkerAgent], metrics: Metrics, *,
                 grace_s: float = 0.0, peers: Iterable[str] = ()) -> None:
        self.client, self.workers, self.metrics = client, workers, metrics
        self.market = Market(client)
        self.by_address = {w.address: w for w in workers}
        self.peers = [p for p in peers if p not in self.by_address]
        self.grace_s = grace_s
        self.stopping = False
        self.dispatched = 0
        self._turn = 0  # round-robin among equally loaded workers

    # -- the loop ------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        log.info("engine_started", workers=len(self.workers), grace_s=self.grace_s, peers=len(self.peers))
        try:
            if not all(await asyncio.gather(*[w.start(stop) for w in self.workers])):
                return
            since = await handle_with_retry(self.first_look, stop, "first_look")
            if since is None:
                return
            await self.follow(Checkpoint(*since), stop)
        finally:
            self.stopping = True
            await asyncio.gather(*[w.stop() for w in self.workers])
            log.info("engine_stopped", workers=len(self.workers), dispatched=self.dispatched)

    async def follow(self, since: Checkpoint, stop: asyncio.Event) -> None:
        await follow_events(self.client, since, stop, handle=self.handle, handled=self._handled,
                            sweep=self._sweep, metrics=self.metrics)

    async def _sweep(self) -> None:
        for worker in self.workers:
            await worker.sweep_payment_claims()

    def _handled(self, event) -> None:
        for worker in self.workers:
            worker.checkpoint.advance(event)

    async def first_look(self) -> tuple[int, int]:
        """Where the stream starts: the earliest worker checkpoint. Workers on their first start are
        dispatched every open task now, then follow from the next block on."""
        known = [w.since for w in self.workers if w.since is not None]
        fresh = [w for w in self.workers if w.since is None]
        if fresh:
            now = await self.client.block_number()
            for task_id in await self.market.open_task_ids():
                await self.dispatch(task_id, now, fresh)
            for worker in fresh:
                await worker.journal.write_metas({"checkpoint": [now + 1, -1]})
                worker.resume_from((now + 1, -1))
            known.append((now + 1, -1))
        return min(known)

    async def handle(self, event) -> bool:
        if event.pallet != "DecentralMLModule":
            return True
        behind = [w for w in self.workers if not w.has_seen(event)]  # the stream may start before a worker's checkpoint
        if event.name == "TaskCreated":
            for worker in behind:
                worker.metrics.inc("tasks_seen")
            await self.dispatch(event.attributes["taskid"], event.block_number, behind)
        elif event.name == "AssignmentAbandoned":
            await self.dispatch(event.attributes["task_id"], event.block_number, behind, reopened=True)
        elif event.name in VERDICTS:
            worker = self.by_address.get(event.attributes.get("worker"))
            if worker is not None and worker in behind:
                await worker.on_event(event)
        return True

    # -- which worker takes which slot ------------------------------------------------------------------
    async def dispatch(self, task_id: int, now: int, among: list[WorkerAgent], reopened: bool = False) -> int:
        """Give each free slot of ``task_id`` to one idle, qualified worker of ``among``; how many went.

        A worker whose policy refuses the task journals ``skipped`` whether or not a slot is free, as a
        worker did before the engine (its journal says why it never went for the task: an in-process test
        saw the slot taken first and the picky worker's journal empty). One refusing on its on-chain
        record (a chain read) is asked only for a free slot; one never asked journals nothing (the task
        went to a sibling, or had no free slot)."""
        wanted = [w for w in among if w.entry_step(task_id) is None or (reopened and w.entry_step(task_id) == "lost")]
        if self.stopping or not wanted:
            return 0
        seen_at = time.time()
        task = await self.market.task_as_posted(task_id)
        if task is None:
            return 0
        willing = []
        for worker in wanted:
            try:
                refusal = worker.refusal(task, now)
            except Exception as exc:  # chain data this agent cannot make sense of: skip the task, say why
                refusal = f"unreadable task: {type(exc).__name__}: {exc}"[:300]
            if refusal is not None and worker.entry_step(task_id) is None:
                await worker.decline(task_id, refusal)
            elif refusal is None:
                willing.append(worker)
        wanted = willing
        taken = await self.client.storage("DecentralMLModule", "TaskResultSubmissionCountByTaskId", [task_id]) or 0
        pending = sum(w.entry_step(task_id) == "claiming" for w in self.workers)  # ours, maybe not on chain yet
        free = task.max_assignments - taken - pending
        given = 0
        for worker in self._order(task_id, wanted):
            if given >= free:
                break
            reason = await worker.assess(task, now)
            if reason is not None:
                await worker.decline(task_id, reason)
                continue
            delay = grace_for(task_id, worker.address, self.peers, self.grace_s)
            if reopened and worker.entry_step(task_id) == "lost":
                await worker.retake(task_id)
            else:
                await worker.take(task_id, seen_at, delay)
            log.debug("task_dispatched", task_id=task_id, worker=worker.name, grace_s=delay)
            given += 1
        self.dispatched += given
        return given

    def _order(self, task_id: int, workers: list[WorkerAgent]) -> list[WorkerAgent]:
        """Workers with a free slot first. With a grace, then in rendezvous order: the host's best-ranked
        worker claims, so the host that holds the task's best-ranked worker claims at once (ordering
        by load instead made the chosen worker a lower-ranked one, waiting graces: measured +80 % on
        created→claimed p50 in bench/farm_grace.py). Without one, least loaded, ties round robin."""
        self._turn += 1
        n = len(workers)

        def key(pair):
            i, w = pair
            full = w.load >= w.config.policy.max_concurrent
            if self.grace_s > 0:
                return full, -int.from_bytes(rendezvous_score(task_id, w.address)), 0
            return full, w.load, (i - self._turn) % n

        return [w for _, w in sorted(enumerate(workers), key=key)]

    # -- for /healthz and farm status -------------------------------------------------------------------
    def worker_health(self) -> dict[str, dict]:
        return {w.name: {"address": w.address, "role": w.config.role, "in_hand": w.load,
                         "active": sum(1 for _ in w.journal.entries("task", steps=ACTIVE))}
                for w in self.workers}
