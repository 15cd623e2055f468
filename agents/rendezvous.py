"""Which worker of which host claims a task: decided alike on every host, from the chain alone.

Rendezvous (highest-random-weight) hashing of (task, worker) orders every worker for every task, the
same on every host. A host that waited for *every* better-ranked worker of other hosts waited for
busy ones too: on tiny tasks in a burst the best-ranked worker often holds ``max_concurrent`` tasks,
its host sends no claim, and the task waited graces for nobody (``bench/farm_grace.py``: halving the
refused claims cost +17–20 % on created→claimed p50, whatever the grace).

So every host keeps a :class:`ClaimLedger` of every known worker (its own and ``peers``) built from
events every host sees in the same order: ``TaskAssigned`` adds an open assignment, its end
(``TaskResultSubmitted``, ``AssignmentAbandoned``, a verdict, ``TaskClosed``) removes it — the same
steps that end a worker's own ``load``; a host starting later begins it from the chain's state where it
starts following (:meth:`ClaimLedger.seed`). A task just created is *planned*, greedily, to its
best-ranked workers that are not full (open assignments plus planned claims not yet on chain, against
each worker's ``max_concurrent``), so every host computes the same plan for a burst of several
``TaskCreated`` in one block and the planned worker's host claims at once. Every other host waits a
grace per worker ranked ahead of its own that could take the task (:func:`grace_for` with the full
ones passed over): the fallback for a planned host that is down, or whose worker refuses the task.

A worker takes exactly one task type (its role's), so a task is planned, and graces counted, only among
the known workers of its type (:meth:`ClaimLedger.takers`): ranked among all workers, a ModelContributor
task on a market of annotators on one host and contributors on another was planned to an annotator
whose host never claims it, and the contributors' host waited up to 3 graces for nobody.

Pure logic, no I/O: the engine reads the chain and feeds the ledger.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Iterable, Mapping

RANKS_WAITED = 3  # a host waits at most this many graces: the next few hosts' claims land in that time
# A planned claim not on chain after this many blocks is forgotten (its host is down, or its worker refused
# the task, and nobody else took it): a claim lands 1–2 blocks after its grace, and graces are ~a block.
PLAN_BLOCKS = 10
OPEN_KEPT = 256  # per worker: a chain that never says an assignment ended cannot grow the ledger without bound


def rendezvous_score(task_id: int, address: str) -> bytes:
    """The (task, worker) weight of highest-random-weight hashing: every host computes the same order."""
    return hashlib.blake2b(f"{task_id}:{address}".encode(), digest_size=8).digest()


def claim_key(task_id: int, address: str, full: Collection[str] = ()) -> tuple[bool, int]:
    """Where ``address`` stands for ``task_id`` (smaller first): workers that can take it, then by rank."""
    return address in full, -int.from_bytes(rendezvous_score(task_id, address), "big")


def grace_for(task_id: int, address: str, peers: Iterable[str], grace_s: float, *, slots: int = 1,
              full: Collection[str] = ()) -> float:
    """How long the host whose chosen worker is ``address`` waits before claiming ``task_id``: ``grace_s``
    per worker of ``peers`` (the others that may claim it) ahead of it — by rank, those that are not
    ``full`` first — beyond the task's other ``slots - 1`` slots, at most :data:`RANKS_WAITED` graces."""
    if grace_s <= 0:
        return 0.0
    mine = claim_key(task_id, address, full)
    ahead = sum(claim_key(task_id, peer, full) < mine for peer in peers if peer != address)
    return grace_s * min(max(0, ahead - (max(slots, 1) - 1)), RANKS_WAITED)


class ClaimLedger:
    """Every known worker's open assignments as the chain shows them, plus the claims planned for tasks
    just created. Fed in event order, it holds the same on every host that follows the same blocks; a
    host that starts later is :meth:`seed`-ed with the assignments open where it starts following, so
    it holds the same too (only the plans of the last :data:`PLAN_BLOCKS` blocks are not seeded: made
    before it started, they land or are forgotten within those blocks).

    ``task_types``: the task type each known worker takes (its role's: ``worker.py`` refuses the others);
    a task is planned only among the workers of its type, and a worker not listed is counted for every
    type (a ledger built without types, as before types were known)."""

    def __init__(self, capacity: Mapping[str, int], task_types: Mapping[str, str] | None = None) -> None:
        self.capacity = {address: max(1, int(n)) for address, n in capacity.items()}
        self.task_types = {a: str(t) for a, t in (task_types or {}).items() if a in self.capacity}
        self.open: dict[str, dict[int, int]] = {a: {} for a in self.capacity}  # worker -> {submission: task}
        self.holder: dict[int, str] = {}  # submission -> worker (known workers only)
        self.plans: dict[int, list[tuple[str, int]]] = {}  # task -> [(worker, block planned)], best first

    # -- what the chain says -----------------------------------------------------------------------
    def assigned(self, task_id: int, submission_id: int, worker: str) -> None:
        """``TaskAssigned``: ``worker`` holds a slot of ``task_id`` (a planned claim landed, or another's)."""
        if submission_id in self.holder:
            return  # the event handled again
        plans = self.plans.get(task_id)
        if plans:
            at = next((i for i, (w, _) in enumerate(plans) if w == worker), len(plans) - 1)
            self._unplan(task_id, at)  # the slot went to ``worker``: the worst-ranked plan of it will not land
        self._hold(task_id, submission_id, worker)

    def seed(self, open_assignments: Iterable[tuple[int, int, str]]) -> int:
        """The (task, submission, worker) assignments open at the block this host resumes from, read from
        the chain's state: what following every block since the first would have added and not removed.
        Given before the first event, so a host started (or started afresh) after others plans as they do
        at once, not only once the assignments it never saw begin have ended. They replace the open
        assignments held (a start tried again seeds again); workers nobody listed are passed over. How
        many are held."""
        for mine in self.open.values():
            mine.clear()
        self.holder.clear()
        for task_id, submission_id, worker in sorted(open_assignments, key=lambda a: a[1]):  # oldest first
            if submission_id not in self.holder:
                self._hold(task_id, submission_id, worker)
        return len(self.holder)

    def released(self, submission_id: int) -> None:
        """The assignment ended: its result sent, abandoned, or decided."""
        worker = self.holder.pop(submission_id, None)
        if worker is not None:
            self.open[worker].pop(submission_id, None)

    def closed(self, task_id: int) -> None:
        """``TaskClosed``: no claim of it will land, and its open assignments end."""
        while self.plans.get(task_id):
            self._unplan(task_id, 0)
        for mine in self.open.values():
            for sid in [s for s, t in mine.items() if t == task_id]:
                del mine[sid]
                self.holder.pop(sid, None)

    def expire(self, block: int) -> None:
        """Forget the claims planned more than :data:`PLAN_BLOCKS` before ``block`` that never landed."""
        for task_id in [t for t, plans in self.plans.items() if plans[0][1] + PLAN_BLOCKS < block]:
            while self.plans.get(task_id):
                self._unplan(task_id, 0)

    # -- planning ---------------------------------------------------------------------------------
    def takes(self, address: str, task_type: str | None) -> bool:
        """Whether the known worker ``address`` can take a task of ``task_type`` (None: of any type)."""
        mine = self.task_types.get(address)
        return task_type is None or mine is None or mine == str(task_type)

    def takers(self, task_type: str | None, among: Iterable[str] | None = None) -> list[str]:
        """The workers of ``among`` (default: every known worker) that can take a task of ``task_type``:
        the only ones a task of that type is planned to, and the only ones a host waits for."""
        return [a for a in (self.capacity if among is None else among) if self.takes(a, task_type)]

    def planned_for(self, task_id: int) -> list[str]:
        """The workers planned for ``task_id``'s free slots whose claims have not landed, best first."""
        return [w for w, _ in self.plans.get(task_id, ())]

    def holders(self, task_id: int) -> set[str]:
        return {w for w, mine in self.open.items() if task_id in mine.values()}

    def load(self, address: str) -> int:
        """Assignments open on chain plus claims planned, of one known worker."""
        return len(self.open.get(address, ())) + self.planned()[address]

    def full(self, besides: int | None = None) -> set[str]:
        """The known workers with ``max_concurrent`` assignments open or planned (not counting the plans
        for task ``besides``)."""
        planned = self.planned()
        planned.subtract(w for w, _ in self.plans.get(besides, ()))  # besides=None: no plan subtracted
        return {w for w, n in self.capacity.items() if len(self.open[w]) + planned[w] >= n}

    def planned(self) -> Counter[str]:
        """Each worker's claims planned and not yet on chain (a few tasks' worth: the last PLAN_BLOCKS)."""
        return Counter(w for plans in self.plans.values() for w, _ in plans)

    def plan(self, task_id: int, slots: int, block: int, exclude: Collection[str] = (),
             task_type: str | None = None) -> list[str]:
        """The workers planned for ``slots`` free slots of ``task_id``, among those that take its
        ``task_type`` (None: every known worker): the best-ranked that are not full (the best-ranked of all
        when every one is: its host queues the claim, the others wait); none when no known worker takes
        its type. The same task planned again (its event handled again) keeps its plan."""
        if task_id in self.plans:
            return self.planned_for(task_id)
        full = self.full()
        order = sorted((w for w in self.takers(task_type) if w not in exclude), key=lambda w: claim_key(task_id, w, full))
        chosen = order[:max(0, slots)]
        if chosen:
            self.plans[task_id] = [(w, block) for w in chosen]
        return chosen

    def _hold(self, task_id: int, submission_id: int, worker: str) -> None:
        mine = self.open.get(worker)
        if mine is None:
            return  # a worker nobody listed: not in anyone's ranking
        mine[submission_id] = task_id
        self.holder[submission_id] = worker
        if len(mine) > OPEN_KEPT:
            oldest = next(iter(mine))
            del mine[oldest], self.holder[oldest]

    def _unplan(self, task_id: int, at: int) -> None:
        plans = self.plans[task_id]
        plans.pop(at)
        if not plans:
            del self.plans[task_id]
