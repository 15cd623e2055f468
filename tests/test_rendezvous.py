"""The rendezvous ledger and grace, as pure logic: every host computes the same plan from the same events,
full workers are not waited for, odd event sequences (replays, unknown workers, closings, claims that
never land) leave it consistent and bounded, and a host started late, seeded from the chain's state,
plans as one that followed from the first block."""

from __future__ import annotations

import random

from substrateinterface import Keypair

from agents.rendezvous import OPEN_KEPT, PLAN_BLOCKS, RANKS_WAITED, ClaimLedger, claim_key, grace_for

ADDRESSES = [Keypair.create_from_uri(f"//Alice//ledger/{i}").ss58_address for i in range(8)]


def ranked(task_id: int, addresses=ADDRESSES) -> list[str]:
    return sorted(addresses, key=lambda a: claim_key(task_id, a))


def test_a_full_better_ranked_worker_is_not_waited_for():
    for task_id in range(20):
        order = ranked(task_id)
        # the second-ranked waits one grace for the first, none once the first is full
        assert grace_for(task_id, order[1], order, 0.5) == 0.5
        assert grace_for(task_id, order[1], order, 0.5, full={order[0]}) == 0
        # the fourth: the three ahead, less the full ones
        assert grace_for(task_id, order[3], order, 0.5, full={order[0], order[2]}) == 0.5
        # a full worker itself waits for every one that is not, then for the full ones ahead
        assert grace_for(task_id, order[0], order, 0.5, full={order[0]}) == 0.5 * RANKS_WAITED
        # two slots: the two best claim at once, the third waits one grace
        assert [grace_for(task_id, a, order, 0.5, slots=2) for a in order[:3]] == [0, 0, 0.5]


def test_every_host_plans_a_burst_alike_and_fills_workers_up_to_their_capacity():
    capacity = dict.fromkeys(ADDRESSES, 2)
    hosts = [ClaimLedger(capacity), ClaimLedger(dict(reversed(capacity.items())))]  # listed in another order
    plans = [[ledger.plan(task_id, 1, 100) for task_id in range(16)] for ledger in hosts]
    assert plans[0] == plans[1]
    assert all(len(p) == 1 for p in plans[0])
    workers = [p[0] for p in plans[0]]
    assert all(workers.count(a) == 2 for a in ADDRESSES)  # 16 tasks, 8 workers of 2: each planned twice
    assert workers[0] == ranked(0)[0]  # the first of a burst goes to its best-ranked worker
    assert hosts[0].full() == set(ADDRESSES)
    # everyone full: the best-ranked of all is planned (its host queues the claim, the others wait)
    assert hosts[0].plan(16, 1, 100) == [ranked(16)[0]]
    # a task's own plan does not make its planned worker look full to it
    assert workers[3] not in hosts[1].full(besides=3)


def test_plans_become_assignments_and_assignments_end():
    a, b, c = ADDRESSES[:3]
    ledger = ClaimLedger({a: 1, b: 1, c: 1})
    order = ranked(7, [a, b, c])
    assert ledger.plan(7, 1, 10) == [order[0]]
    assert ledger.full() == {order[0]}
    ledger.assigned(7, 70, order[0])  # the planned claim landed: still one task on its hands
    assert ledger.plans == {} and ledger.full() == {order[0]}
    ledger.assigned(7, 70, order[0])  # the event handled again
    assert ledger.load(order[0]) == 1
    ledger.released(70)
    assert ledger.full() == set() and ledger.holder == {}
    ledger.released(70)  # and again: nothing to end
    # a slot taken by another worker than the planned one: the plan is dropped, the taker holds it
    assert ledger.plan(8, 1, 11) == [ranked(8, [a, b, c])[0]]
    taker = ranked(8, [a, b, c])[2]
    ledger.assigned(8, 80, taker)
    assert ledger.plans == {} and ledger.full() == {taker}
    # a worker nobody listed takes a slot: the plan goes, nothing is tracked for it
    ledger.plan(9, 1, 12)
    ledger.assigned(9, 90, ADDRESSES[7])
    assert ledger.plans == {} and 90 not in ledger.holder


def test_reopened_slots_and_closed_tasks():
    a, b = ADDRESSES[:2]
    ledger = ClaimLedger({a: 2, b: 2})
    first = ranked(5, [a, b])[0]
    ledger.assigned(5, 50, first)
    ledger.released(50)  # abandoned
    assert ledger.plan(5, 1, 20, exclude={first}) == [ranked(5, [a, b])[1]]  # AlreadyAssigned: the other one
    ledger.assigned(6, 60, a)
    ledger.plan(6, 2, 21)
    assert ledger.holders(6) == {a}
    ledger.closed(6)
    assert ledger.holders(6) == set() and 6 not in ledger.plans and ledger.load(a) == 0


def test_claims_that_never_land_are_forgotten_and_the_ledger_stays_bounded():
    a, b = ADDRESSES[:2]
    ledger = ClaimLedger({a: 1, b: 1})
    ledger.plan(1, 1, 100)
    ledger.plan(2, 1, 103)
    ledger.expire(100 + PLAN_BLOCKS)
    assert set(ledger.plans) == {1, 2}
    ledger.expire(101 + PLAN_BLOCKS)
    assert set(ledger.plans) == {2} and sum(ledger.planned().values()) == 1
    # a chain that never says an assignment ended cannot grow the ledger without bound
    for sid in range(OPEN_KEPT + 10):
        ledger.assigned(1000 + sid, sid, a)
    assert ledger.load(a) == OPEN_KEPT and len(ledger.holder) == OPEN_KEPT and 0 not in ledger.holder
    # a plan asking for more slots than there are workers plans each worker once
    assert sorted(ledger.plan(9, 10**9, 200)) == sorted([a, b])


class SimulatedMarket:
    """A chain's market as a host reads its state (submission statuses, closed tasks), and the events it
    sends; the planned workers claim each new task (as the planning host of each does)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.next_task, self.next_sid = rng, 0, 0
        self.status: dict[int, tuple[int, str, str]] = {}  # submission -> (task, worker, status)
        self.closed: set[int] = set()

    def open_assignments(self) -> list[tuple[int, int, str]]:
        """As ``Market.open_assignments`` reads them: assigned, on a task not closed."""
        return [(t, sid, w) for sid, (t, w, status) in self.status.items() if status == "Assigned" and t not in self.closed]

    def step(self, block: int, planner: ClaimLedger, task_type: str | None = None) -> list[tuple]:
        """One market call's events: a task created and its slots claimed as ``planner`` plans them, a
        result sent or an assignment abandoned (both end it), or a task closed."""
        live = [sid for sid, (t, _, status) in self.status.items() if status == "Assigned" and t not in self.closed]
        # more assignments end the more are open: ~8 open around 8 workers of 2, some of them full
        action = "create" if self.rng.random() >= len(live) / 12 else self.rng.choice(["send", "send", "abandon", "close"])
        if action == "create":
            task_id, slots = self.next_task, self.rng.randint(1, 3)
            self.next_task += 1
            events: list[tuple] = [("created", task_id, slots, planner.plan(task_id, slots, block, task_type=task_type))]
            for worker in events[0][3]:
                self.status[self.next_sid] = (task_id, worker, "Assigned")
                events.append(("assigned", task_id, self.next_sid, worker))
                self.next_sid += 1
            return events
        sid = self.rng.choice(live)
        task_id, worker, _ = self.status[sid]
        if action == "close":
            self.closed.add(task_id)
            return [("closed", task_id)]
        self.status[sid] = (task_id, worker, "PendingValidation" if action == "send" else "Abandoned")
        return [("released", sid)]


def follow(ledger: ClaimLedger, events: list[tuple], block: int) -> list[str] | None:
    """Feed a step's events to ``ledger`` as the engine does; the plan it made for a task created."""
    planned = None
    for kind, *args in events:
        if kind == "created":
            planned = ledger.plan(args[0], args[1], block)
        elif kind == "assigned":
            ledger.assigned(*args)
        elif kind == "released":
            ledger.released(args[0])
        else:
            ledger.closed(args[0])
    return planned


def test_a_ledger_seeded_from_the_chains_state_plans_like_one_that_followed_from_the_first_block():
    """A host started late, seeded with the assignments open where it starts following, holds and plans
    exactly as one that followed every block; unseeded (as before), it planned tasks to other workers."""
    rng = random.Random(18)
    capacity = dict.fromkeys(ADDRESSES, 2)
    market, genesis = SimulatedMarket(rng), ClaimLedger(capacity)
    for block in range(300):
        follow(genesis, market.step(block, genesis), block)  # the events it planned itself: handled again
    assert genesis.plans == {}  # every planned claim landed
    late, unseeded = ClaimLedger(capacity), ClaimLedger(capacity)
    assert late.seed(market.open_assignments()) == len(genesis.holder) > 3
    assert late.open == genesis.open and late.holder == genesis.holder
    assert late.seed(reversed(market.open_assignments())) == len(genesis.holder)  # a start tried again
    assert late.open == genesis.open and list(late.holder) == list(genesis.holder)  # oldest first, as followed
    plans, differed = 0, 0
    for block in range(300, 600):
        events = market.step(block, genesis)
        follow(genesis, events, block)
        if events[0][0] == "created":
            plans += 1
            assert follow(late, events, block) == events[0][3]
            differed += follow(unseeded, events, block) != events[0][3]
        else:
            follow(late, events, block)
            follow(unseeded, events, block)
        assert late.open == genesis.open and late.full() == genesis.full()
    assert plans > 100 and differed > 0


def test_a_task_is_planned_only_to_workers_of_its_type_and_waits_only_for_them():
    """A market of annotators (host A) and contributors (host B): ranked among all workers, a
    ModelContributor task was planned to an annotator whose host never claims it, and B's contributor
    waited graces for annotators. Planned and counted among its type only, never; and both hosts (and a
    ledger built with the workers listed in another order) plan alike."""
    annotators, contributors = ADDRESSES[:4], ADDRESSES[4:]
    types = {**dict.fromkeys(annotators, "DataAnnotators"), **dict.fromkeys(contributors, "ModelContributor")}
    capacity = dict.fromkeys(ADDRESSES, 2)
    hosts = [ClaimLedger(capacity, types), ClaimLedger(dict(reversed(capacity.items())), dict(reversed(types.items())))]
    untyped = ClaimLedger(capacity)  # as before: every worker ranked for every task
    mistaken = 0
    for task_id in range(40):
        task_type = "ModelContributor" if task_id % 2 else "DataAnnotators"
        own = contributors if task_id % 2 else annotators
        plans = [ledger.plan(task_id, 1, 100 + task_id, task_type=task_type) for ledger in hosts]
        assert plans[0] == plans[1] and len(plans[0]) == 1 and plans[0][0] in own
        assert hosts[0].takers(task_type) == own and hosts[0].takers(task_type, among=reversed(ADDRESSES)) == own[::-1]
        mistaken += untyped.plan(task_id, 1, 100 + task_id)[0] not in own
        # graces count only the workers of the task's type ahead: the best-ranked of them waits none, ...
        order = ranked(task_id, own)
        assert grace_for(task_id, order[0], hosts[0].takers(task_type), 0.5) == 0
        assert [grace_for(task_id, a, hosts[0].takers(task_type), 0.5) for a in order[1:]] == [0.5, 1.0, 1.5]
        # ... however many workers of the other type rank ahead of it
        everyone = ranked(task_id)
        assert grace_for(task_id, order[0], everyone, 0.5) == 0.5 * min(everyone.index(order[0]), RANKS_WAITED)
    assert mistaken > 10  # untyped, about half the tasks went to a worker of the other type
    # a type no known worker takes is planned to nobody; a worker without a type is counted for every type
    assert hosts[0].plan(99, 1, 200, task_type="ModelEngineer") == [] and 99 not in hosts[0].plans
    loose = ClaimLedger(capacity, {annotators[0]: "DataAnnotators"})
    assert loose.takers("ModelContributor") == ADDRESSES[1:] and loose.takers(None) == ADDRESSES
    assert ClaimLedger({"a": 1}, {"b": "DataAnnotators"}).task_types == {}  # types of unknown workers: not kept


def test_a_mixed_market_keeps_every_host_planning_alike_and_in_type():
    """Random mixed-type tasks, created and claimed as planned, results sent, tasks closed: two hosts
    plan every task alike, always to a worker of the task's type."""
    rng = random.Random(7)
    types = {a: ("DataAnnotators", "ModelContributor", "ModelEngineer")[i % 3] for i, a in enumerate(ADDRESSES)}
    capacity = dict.fromkeys(ADDRESSES, 2)
    market, a, b = SimulatedMarket(rng), ClaimLedger(capacity, types), ClaimLedger(capacity, types)
    created = 0
    for block in range(400):
        task_type = rng.choice(["DataAnnotators", "ModelContributor", "ModelEngineer"])
        events = market.step(block, a, task_type)  # a task of that type, claimed as ``a`` plans it
        if events[0][0] == "created":
            created += 1
            planned = events[0][3]
            assert planned and all(types[w] == task_type for w in planned)
            assert b.plan(events[0][1], events[0][2], block, task_type=task_type) == planned
            for _, *args in events[1:]:
                a.assigned(*args)
                b.assigned(*args)
        else:
            follow(a, events, block)
            follow(b, events, block)
        assert a.open == b.open and a.full() == b.full()
    assert created > 100
