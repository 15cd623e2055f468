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

Across hosts, without coordination (:mod:`agents.rendezvous`): rendezvous hashing of (task, worker)
orders every worker for every task. With ``grace_s`` and ``peers`` (the other hosts' workers) the
engine keeps a :class:`~agents.rendezvous.ClaimLedger` of every known worker's open assignments from
the chain (``TaskAssigned`` read once for its worker; results, abandonments, verdicts and closings end
them; at start, seeded with the assignments open where the stream begins: :meth:`Engine.seed_ledger`)
and plans each new task to its best-ranked worker that is not full — the same plan on every host,
so that worker's host claims at once (without counting the slots a second time). A task is planned, and
graces counted, only among the known workers of its type (a peer's ``role``, this host's workers' roles):
ranked among all, a ModelContributor task could be planned to an annotator, whose host never claims it.
Another host holds a
fallback claim for ``grace_s`` per worker ranked ahead of its own that could take the task (up to
:data:`~agents.rendezvous.RANKS_WAITED`), then drops it if the chain shows the slot taken: nothing
journaled, no claim refused on chain (a fee). Waiting for every better-ranked worker, busy or not,
cost +17–20 % on created→claimed p50 to halve the refused claims; with the plan and a 2 s grace at
0.5 s blocks, ``bench/farm_grace.py`` measured 90–114 refused claims → 0–2, tasks taken 4–5 blocks after
their creation instead of 5–14, the winner's created→claimed p50 −26 % to +60 % (``docs/benchmarks.md``).
``grace_s: 0`` races as before.

``agent run`` of a worker role is this engine with one worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping

import structlog

from decentralml_core.chain import ChainClient, Checkpoint
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import Task
from decentralml_core.chain.rpc import RpcError

from .config import ROLE_TASK_TYPES
from .metrics import Metrics
from .rendezvous import ClaimLedger, claim_key, grace_for
from .streams import STOP_GRACE_S, TRANSIENT, follow_events, handle_with_retry
from .worker import ACTIVE, VERDICTS, WorkerAgent

log = structlog.get_logger("agent.engine")
# the events that end an assignment, as they end the worker's own ``load`` (upstream's pallet sends no
# TaskResultSubmitted: its verdicts end them)
RELEASES = frozenset({"TaskResultSubmitted", "AssignmentAbandoned", *VERDICTS})
READ_EVENTS = frozenset({"TaskCreated", "AssignmentAbandoned", *VERDICTS})  # what dispatching acts on


class Engine:
    def __init__(self, client: ChainClient, workers: list[WorkerAgent], metrics: Metrics, *,
                 grace_s: float = 0.0, peers: Iterable[str] | Mapping[str, int | None] = (),
                 peer_roles: Mapping[str, str] | None = None, market: Market | None = None) -> None:
        """``peers``: the other hosts' worker addresses, or address → its ``max_concurrent`` (None: as the
        most of this host's workers). ``peer_roles``: address → its role (annotator, engineer, contributor);
        a peer not listed takes this host's workers' task type when they share one, else any type."""
        self.client, self.workers, self.metrics = client, workers, metrics
        self.market = market or Market(client)  # shared with the workers: a task read once per host
        self.by_address = {w.address: w for w in workers}
        capacity = dict(peers) if isinstance(peers, Mapping) else dict.fromkeys(peers)
        self.peers = [p for p in capacity if p not in self.by_address]
        self.grace_s = grace_s
        self.ledger: ClaimLedger | None = None
        if grace_s > 0 and self.peers:
            default = max((w.config.policy.max_concurrent for w in workers), default=1)
            self.ledger = ClaimLedger({**{p: capacity[p] or default for p in self.peers},
                                       **{w.address: w.config.policy.max_concurrent for w in workers}},
                                      task_types=self._task_types(peer_roles or {}))
        self.stopping = False
        self.dispatched = 0
        self._turn = 0  # round-robin among equally loaded workers
        self._stop = asyncio.Event()
        self._fallbacks: set[asyncio.Task] = set()  # claims waiting out a grace

    def _task_types(self, peer_roles: Mapping[str, str]) -> dict[str, str]:
        """Each known worker's task type: this host's from their roles, a peer's from its role, else (an
        unset role) this host's workers' one type; with several, it is left unset (counted for every
        type: ``farm check`` asks for the role instead)."""
        own = {w.address: w.config.task_type for w in self.workers if w.config.task_type is not None}
        shared = set(own.values())
        types = {p: ROLE_TASK_TYPES[peer_roles[p]] if p in peer_roles else next(iter(shared))
                 for p in self.peers if p in peer_roles or len(shared) == 1}
        return {**types, **own}

    # -- the loop ------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        log.info("engine_started", workers=len(self.workers), grace_s=self.grace_s, peers=len(self.peers))
        try:
            if not all(await asyncio.gather(*[w.start(stop) for w in self.workers])):
                return
            if self.ledger is not None and await handle_with_retry(self.client.runtime.full, stop, "runtime") is None:
                return  # signing loads substrate-interface: 1.6–2.1 s of a stalled event loop at the first claim,
                # in which a host's planned claims wait and the other hosts' graces run out (10 of 60 tasks)
            since = await handle_with_retry(self.first_look, stop, "first_look")
            if since is None:
                return
            await self.follow(Checkpoint(*since), stop)
        finally:
            self.stopping = True
            for waiting in self._fallbacks:
                waiting.cancel()  # nothing journaled yet: another host's grace covers the task
            await asyncio.gather(*self._fallbacks, return_exceptions=True)
            await asyncio.gather(*[w.stop() for w in self.workers])
            log.info("engine_stopped", workers=len(self.workers), dispatched=self.dispatched)

    async def follow(self, since: Checkpoint, stop: asyncio.Event) -> None:
        await follow_events(self.client, since, stop, handle=self.handle, handled=self._handled,
                            sweep=self._sweep, metrics=self.metrics,  # no worker's grace cut short
                            grace=max((w.config.stop_grace_s for w in self.workers), default=STOP_GRACE_S), reads=self.reads)

    async def _sweep(self) -> None:
        for worker in self.workers:
            await worker.sweep_payment_claims()

    def _handled(self, event) -> None:
        for worker in self.workers:
            worker.checkpoint.advance(event)

    async def first_look(self) -> tuple[int, int]:
        """Where the stream starts: the earliest worker checkpoint (the ledger, if any, seeded there).
        Workers on their first start are dispatched every open task now, then follow from the next block on."""
        known = [w.since for w in self.workers if w.since is not None]
        fresh = [w for w in self.workers if w.since is None]
        now = await self.client.block_number() if fresh else None
        since = min([*known, *([] if now is None else [(now + 1, -1)])])
        if self.ledger is not None:
            await self.seed_ledger(Checkpoint(*since))
        if now is not None:
            for task_id in await self.market.open_task_ids():
                await self.dispatch(task_id, now, fresh)
            for worker in fresh:
                await worker.journal.write_metas({"checkpoint": [now + 1, -1]})
                worker.resume_from((now + 1, -1))
        return since

    async def seed_ledger(self, since: Checkpoint) -> int:
        """Begin the ledger from the chain's state where the stream starts: every known worker's assignments
        open there (:meth:`~decentralml_core.chain.market.Market.open_assignments`). Following events
        alone, a host started after the others (or afresh, its journal gone) knew none of the assignments
        begun before it: its plans differed from theirs, and races and refused claims came back until
        those assignments ended. How many were seeded.

        Read at the block before ``since``, then the events of ``since``'s own block up to its index fed
        in as the stream would have: exactly what following from the first block holds. A node that no
        longer has that block's state (a pruning node keeps the last 256 blocks' by default) is read at its
        head: the events replayed from ``since`` onto it end the same (an assignment seen again is passed
        over, one ended since is ended again); only plans made while catching up may differ. Data it
        cannot read: one line, and the ledger starts from the events alone, as before."""
        assert self.ledger is not None
        block = since.block_number - 1
        at_head: str | None = None  # why the state was read at the head instead
        if block < 0:
            return 0  # from the first block on: the stream brings every assignment
        try:
            at = await self.client.block_hash(block)
            try:
                if at is None:
                    raise LookupError(f"the node has no block {block}")
                found = await self.market.open_assignments(self.ledger.capacity, at)
            except (RpcError, LookupError) as exc:  # the block's state discarded (a pruning node), or no such block
                at, at_head = None, f"{type(exc).__name__}: {exc}"[:300]
                found = await self.market.open_assignments(self.ledger.capacity)
            self.ledger.seed((s.task_id, s.submission_id, s.worker) for s in found)
            if at is not None and since.index >= 0:  # the part of since's block handled before the restart
                for event in await self.client.events_at(since.block_number):
                    if event.index <= since.index and self.reads(event):
                        await self.track(event)
            seeded = len(self.ledger.holder)
        except TRANSIENT:
            raise  # the node away: first_look is tried again, and seeding again starts over
        except Exception as exc:
            log.warning("rendezvous_unreadable", market_event="seed", block=block,
                        error=f"{type(exc).__name__}: {exc}"[:300])
            return 0
        log.info("rendezvous_seeded", block=block, assignments=seeded, workers=len(self.ledger.capacity),
                 **({} if at_head is None else {"read_at": "head", "reason": at_head}))
        return seeded

    def reads(self, event) -> bool:
        """The events :meth:`handle` acts on (the others are only checkpointed): with a ledger (a grace
        and peers), every market event (it tracks assignments begun and ended)."""
        return event.pallet == "DecentralMLModule" and (self.ledger is not None or event.name in READ_EVENTS)

    async def handle(self, event) -> bool:
        if not self.reads(event):
            return True
        if self.ledger is not None:
            await self.track(event)
        behind = [w for w in self.workers if not w.has_seen(event)]  # the stream may start before a worker's checkpoint
        if event.name == "TaskCreated":
            for worker in behind:
                worker.metrics.inc("tasks_seen")
            await self.dispatch(event.attributes["taskid"], event.block_number, behind, plan=True)
        elif event.name == "AssignmentAbandoned":
            abandoner = event.attributes.get("worker")  # AlreadyAssigned: the slot goes to another worker
            await self.dispatch(event.attributes["task_id"], event.block_number, behind, reopened=True, plan=True,
                                exclude=(abandoner,) if isinstance(abandoner, str) else ())
        elif event.name in VERDICTS:
            worker = self.by_address.get(event.attributes.get("worker"))
            if worker is not None and worker in behind:
                await worker.on_event(event)
        return True

    async def track(self, event) -> None:
        """The ledger's part of an event: an assignment begun (its worker read from the chain: the event
        does not name it) or ended. Data it cannot read is passed over with one line: the ledger only
        makes claims wait less or more, never loses or doubles one."""
        self.ledger.expire(event.block_number)
        try:
            if event.name == "TaskAssigned":
                attrs = event.attributes
                task_id, sid = int(attrs["task_id"]), int(attrs["submission_index"])
                value = await self.client.storage("DecentralMLModule", "TaskResultSubmissions", [sid])
                worker = value.get("worker") if isinstance(value, dict) else None
                if isinstance(worker, str):
                    self.ledger.assigned(task_id, sid, worker)
            elif event.name in RELEASES:
                self.ledger.released(int(event.attributes["submission_id"]))
            elif event.name == "TaskClosed":
                self.ledger.closed(int(event.attributes["task_id"]))
        except TRANSIENT:
            raise  # the node, not the data: the event is handled again (the ledger ignores what it has seen)
        except Exception as exc:
            log.warning("rendezvous_unreadable", market_event=event.name, block=event.block_number,
                        error=f"{type(exc).__name__}: {exc}"[:300])

    # -- which worker takes which slot ------------------------------------------------------------------
    async def dispatch(self, task_id: int, now: int, among: list[WorkerAgent], reopened: bool = False,
                       plan: bool = False, exclude: Iterable[str] = ()) -> int:
        """Give each free slot of ``task_id`` to one idle, qualified worker of ``among``; how many went.

        A worker whose policy refuses the task journals ``skipped`` whether or not a slot is free, as a
        worker did before the engine (its journal says why it never went for the task: an in-process test
        saw the slot taken first and the picky worker's journal empty). One refusing on its on-chain
        record (a chain read) is asked only for a free slot; one never asked journals nothing (the task
        went to a sibling, or had no free slot).

        ``plan`` (a task created or reopened just now, with a ledger): the task's slots are planned in
        the ledger first, whether or not a worker of this host wants it, as on every other host, to
        workers other than ``exclude`` and the task's holders."""
        wanted = [w for w in among if w.entry_step(task_id) is None or (reopened and w.entry_step(task_id) == "lost")]
        plan = plan and self.ledger is not None
        if self.stopping or not (wanted or plan):
            return 0
        seen_at = time.time()
        task = await self.market.task_as_posted(task_id)
        if task is None:
            return 0
        if plan:  # planned alike on every host, among the known workers of the task's type only
            self.ledger.plan(task_id, 1 if reopened else task.max_assignments, now,
                             self.ledger.holders(task_id) | set(exclude), task_type=task.task_type)
        if not wanted:
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
        taken = await self.market.assignments_taken(task_id)
        pending = sum(w.entry_step(task_id) == "claiming" for w in self.workers)  # ours, maybe not on chain yet
        free = task.max_assignments - taken - pending
        full = self._full(task_id)
        # the workers that may claim before this host's next one: the peers that take the task's type
        ahead = self.ledger.takers(task.task_type, among=self.peers) if self.ledger is not None else list(self.peers)
        # slots planned to this host's workers: claimed at once, by the planned worker or, if its hands are
        # full here (its last result landed, its step not yet ended), by the best-ranked one with room
        planned_here = sum(w in self.by_address for w in self.ledger.planned_for(task_id)) if self.ledger else 0
        given = 0
        for worker in self._order(task_id, wanted, full):
            if given >= free:
                break
            reason = await worker.assess(task, now)
            if reason is not None:
                await worker.decline(task_id, reason)
                continue
            delay = 0.0 if given < planned_here else grace_for(
                task_id, worker.address, ahead, self.grace_s, slots=free + pending, full=full)
            ahead.append(worker.address)
            if reopened and worker.entry_step(task_id) == "lost":
                await worker.retake(task_id)
            elif delay > 0:
                waiting = asyncio.create_task(self._after_grace(worker, task, seen_at, delay))
                self._fallbacks.add(waiting)
                waiting.add_done_callback(self._fallbacks.discard)
            else:
                await worker.take(task_id, seen_at, counted=self.ledger is not None)
            log.debug("task_dispatched", task_id=task_id, worker=worker.name, grace_s=delay)
            given += 1
        self.dispatched += given
        return given

    async def _after_grace(self, worker: WorkerAgent, task: Task, seen_at: float, delay: float) -> None:
        """The fallback claim: after the grace, ``worker`` takes the slot only if the chain still shows
        it free. Held here, not as a journaled claim in the worker: most never go out (the planned
        host's claim landed), and queued among the worker's running tasks they held up its next planned
        claim behind their checks."""
        try:
            await asyncio.wait_for(self._stop.wait(), delay)
            return  # stopping: nothing was journaled, another host's grace covers the task
        except TimeoutError:
            pass
        task_id = task.task_id
        try:
            taken = await self.market.assignments_taken(task_id)
            if self.stopping or worker.entry_step(task_id) is not None or taken >= task.max_assignments:
                return
            await worker.take(task_id, seen_at, counted=True)
        except Exception as exc:  # the node away or odd data: this host's fallback is dropped, others' remain
            log.warning("rendezvous_unreadable", market_event="fallback", task_id=task_id, error=f"{type(exc).__name__}: {exc}"[:300])

    def _full(self, task_id: int) -> set[str]:
        """The workers (known to the ledger, else this host's) that cannot take ``task_id`` now: every
        host ranks them last; a local one's claim would wait for a slot."""
        if self.ledger is not None:
            return self.ledger.full(besides=task_id)
        return {w.address for w in self.workers if w.load >= w.config.policy.max_concurrent}

    def _order(self, task_id: int, workers: list[WorkerAgent], full: set[str]) -> list[WorkerAgent]:
        """Workers with a free slot first. With a grace, then in rendezvous order: the host's best-ranked
        worker claims, so the host that holds the task's best-ranked worker claims at once (ordering
        by load instead made the chosen worker a lower-ranked one, waiting graces: measured +80 % on
        created→claimed p50 in bench/farm_grace.py). Without one, least loaded, ties round robin."""
        self._turn += 1
        n = len(workers)

        def key(pair):
            i, w = pair
            if self.grace_s > 0:
                busy = full | ({w.address} if w.load >= w.config.policy.max_concurrent else set())
                return claim_key(task_id, w.address, busy)
            return w.address in full, w.load, (i - self._turn) % n

        return [w for _, w in sorted(enumerate(workers), key=key)]

    # -- for /healthz and farm status -------------------------------------------------------------------
    def worker_health(self) -> dict[str, dict]:
        return {w.name: {"address": w.address, "role": w.config.role, "in_hand": w.load,
                         "active": sum(1 for _ in w.journal.entries("task", steps=ACTIVE))}
                for w in self.workers}
