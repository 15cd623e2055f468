"""The rendezvous ledger and grace, as pure logic: every host computes the same plan from the same events,
full workers are not waited for, and odd event sequences (replays, unknown workers, closings, claims
that never land) leave it consistent and bounded."""

from __future__ import annotations

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
