"""The market rules on the real executive: assignment deadlines, the review window and claim_payment,
qualifications, client tokens; the races at a deadline block; escrow that never strands after a close;
records only others make; and the upstream layout left alone.

Blocks advance through ``Dispatcher.next_block`` (``initialize_block``, so ``on_initialize`` runs as
on the devnet); calls in one block are applied in the order given, as a block author would.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_pallet_decentralml import ALICE, BOB, CHARLIE, EVE, PAYS, Dispatcher, result, task

from decentralml_core.devnet.chain import Chain
from decentralml_core.devnet.metadata import MAX_DISTINCT_CREATORS, runtime
from decentralml_core.devnet.pallets import decentralml
from decentralml_core.devnet.pallets.decentralml import (
    DEFAULT_TERMS,
    NO_STATS,
    PALLET,
    escrow_discrepancy,
    task_account,
)
from decentralml_core.devnet.store import ChainDatabase

DAVE = bytes(range(32))


class Blocks(Dispatcher):
    def __init__(self, chain: Chain) -> None:
        super().__init__(chain)
        self.past: list[dict] = []  # the events of the blocks before this one

    def next_block(self, count: int = 1) -> list[dict]:
        """Start the next block(s), running on_initialize; the hooks' DecentralML events of the last one."""
        for _ in range(count):
            self.past += self.ex.events
            self.ex.initialize_block(self.ex.block_number + 1, 0)
        return self.events()

    def events(self, since: int = 0) -> list[dict]:
        """This block's DecentralML events, from the ``since``-th event on."""
        return [e["event"][PALLET] for e in self.ex.events[since:] if PALLET in e["event"]]

    def refunded(self, task_id: int) -> int:
        """What the task's escrow returned to its creator so far (TaskClosed and EscrowRefunded)."""
        return sum(fields["refunded"] for e in self.past + self.ex.events for name, fields in
                   e["event"].get(PALLET, {}).items()
                   if name in ("TaskClosed", "EscrowRefunded") and fields["task_id"] == task_id)

    def escrow_discrepancy(self, task_id: int) -> str | None:
        subs = [self.get("TaskResultSubmissions", i) for i in self.get("TaskResultSubmissionIds", task_id) or []]
        return escrow_discrepancy(self.get("Tasks", task_id), subs, self.free(task_account(task_id)),
                                  self.refunded(task_id))

    def to(self, block: int) -> list[dict]:
        return self.next_block(block - self.ex.block_number)

    def stats(self, who: bytes) -> dict:
        return self.get("WorkerStats", who)

    def status(self, sid: int) -> str:
        return self.get("TaskResultSubmissions", sid)["status"]


@pytest.fixture
def rt(tmp_path):
    chain = Chain(runtime("full"), ChainDatabase(tmp_path / "c.sqlite"))
    yield Blocks(chain)
    chain.store.close()


def terms(**overrides) -> dict:
    return {**DEFAULT_TERMS, **overrides}


def create(rt: Blocks, token: bytes | None = None, creator: bytes = ALICE, task_terms: dict | None = None,
           **overrides) -> int:
    return rt.ok(creator, "create_task_with_terms", **task(**overrides), terms=task_terms or terms(),
                 client_token=token)["taskid"]


def assign(rt: Blocks, worker: bytes, task_id: int) -> int:
    return rt.ok(worker, "assign_task", task_id=task_id)["submission_index"]


def balances(rt: Blocks, task_id: int, *who: bytes) -> int:
    return sum(rt.free(w) for w in (task_account(task_id), *who))


# -- creation: terms stored beside Tasks, client tokens ---------------------------------------------------
def test_terms_are_stored_beside_the_upstream_task(rt):
    rules = terms(submit_within=5, review_window=7, min_accepted=1, max_rejection_rate=250_000)
    task_id = create(rt, task_terms=rules)
    assert rt.get("TaskTerms", task_id) == rules
    assert "submit_within" not in rt.get("Tasks", task_id)  # Tasks keeps upstream's encoding
    plain = rt.ok(ALICE, "create_task", **task())["taskid"]
    assert rt.get("TaskTerms", plain) is None  # read as DEFAULT_TERMS


@pytest.mark.parametrize("bad", [{"submit_within": 0}, {"review_window": 0}, {"max_rejection_rate": 1_000_001},
                                 {"max_abandonment_rate": 1_000_001},
                                 {"min_distinct_creators": MAX_DISTINCT_CREATORS + 1}])
def test_invalid_terms_are_refused(rt, bad):
    assert rt.call(ALICE, "create_task_with_terms", **task(), terms=terms(**bad), client_token=None) == \
        "InvalidTaskTerms"
    assert rt.get("TaskCount") == 0


def test_a_client_token_creates_once_per_creator(rt):
    alice = rt.free(ALICE)
    first = create(rt, token=b"publish:detect-cars:1")
    assert rt.get("TaskByClientToken", ALICE, b"publish:detect-cars:1") == first
    again = rt.call(ALICE, "create_task_with_terms", **task(), terms=terms(), client_token=b"publish:detect-cars:1")
    assert again == "DuplicateClientToken"
    assert rt.get("TaskCount") == 1 and rt.free(ALICE) == alice - 2 * PAYS  # escrowed once
    assert create(rt, token=b"publish:detect-cars:1", creator=EVE) == 1  # tokens are per creator
    assert create(rt, token=b"publish:detect-cars:2") == 2
    assert create(rt) == 3 and create(rt) == 4  # no token: no idempotence asked


def test_an_empty_client_token_is_refused_as_by_the_client(rt):
    alice = rt.free(ALICE)
    assert rt.call(ALICE, "create_task_with_terms", **task(), terms=terms(), client_token=b"") == "EmptyClientToken"
    assert rt.get("TaskCount") == 0 and rt.get("TaskByClientToken", ALICE, b"") is None
    assert rt.free(ALICE) == alice  # nothing escrowed
    create(rt, token=b"x" * 64)  # the longest the client allows


def test_a_refused_creation_does_not_burn_its_token(rt):
    assert rt.call(ALICE, "create_task_with_terms", **task(pays_amount=1), terms=terms(),
                   client_token=b"t") == "TaskInvalidPaysAmount"
    assert rt.get("TaskByClientToken", ALICE, b"t") is None
    create(rt, token=b"t")


# -- 1. the assignment deadline --------------------------------------------------------------------------
def test_an_unsubmitted_assignment_is_abandoned_after_its_deadline(rt):
    task_id = create(rt, max_assignments=1, task_terms=terms(submit_within=3))
    sid = assign(rt, BOB, task_id)  # block 1: due by block 4
    assert rt.get("OpenTasks") == [] and rt.get("AssignmentDeadlines", 4) == [sid]
    assert rt.to(4) == []
    assert rt.status(sid) == "Assigned"
    abandoned = rt.next_block()  # block 5's on_initialize
    assert abandoned == [{"AssignmentAbandoned": {"task_id": task_id, "submission_id": sid, "worker": BOB,
                                                  "block": 5}}]
    assert rt.status(sid) == "Abandoned" and rt.stats(BOB) == {**NO_STATS, "abandoned": 1}
    assert rt.get("OpenTasks") == [task_id] and rt.get("TaskResultSubmissionCountByTaskId", task_id) == 0
    assert rt.get("AssignmentDeadlines", 4) == []  # the agenda entry is consumed
    assert rt.call(BOB, "send_task_result", **result(sid)) == "SubmissionDeadlinePassed"
    assert rt.call(BOB, "assign_task", task_id=task_id) == "AlreadyAssigned"  # the slot goes to another
    other = assign(rt, CHARLIE, task_id)
    assert rt.get("TaskResultSubmissionIds", task_id) == [sid, other]  # the history keeps the abandoned one
    assert rt.get("TaskResultSubmissionCountByTaskId", task_id) == 1 and rt.get("OpenTasks") == []


def test_a_result_sent_at_the_deadline_block_counts(rt):
    task_id = create(rt, task_terms=terms(submit_within=2))
    sid = assign(rt, BOB, task_id)
    rt.to(3)  # the deadline block
    rt.ok(BOB, "send_task_result", **result(sid))
    assert rt.next_block() == []  # nothing to abandon
    assert rt.status(sid) == "PendingValidation" and rt.stats(BOB)["abandoned"] == 0


def test_the_worker_at_the_deadline_block_against_the_next_worker(rt):
    """Late by one block: the hook has abandoned the slot before any extrinsic of the block, so the new
    worker's assign succeeds and the late result is refused, whatever their order in the block."""
    task_id = create(rt, max_assignments=1, task_terms=terms(submit_within=2))
    sid = assign(rt, BOB, task_id)
    assert rt.call(CHARLIE, "assign_task", task_id=task_id) == "MaxAssignmentsReached"
    rt.to(4)
    assert rt.call(BOB, "send_task_result", **result(sid)) == "SubmissionDeadlinePassed"
    assign(rt, CHARLIE, task_id)
    assert rt.status(sid) == "Abandoned"


def test_the_deadline_is_checked_even_without_the_hook(rt):
    """send_task_result does not rely on on_initialize having run (a block built by another author)."""
    task_id = create(rt, task_terms=terms(submit_within=2))
    sid = assign(rt, BOB, task_id)
    rt.at(4)  # the block number moves on, no hook ran
    assert rt.status(sid) == "Assigned"
    assert rt.call(BOB, "send_task_result", **result(sid)) == "SubmissionDeadlinePassed"


def test_abandoning_does_not_reopen_an_expired_or_closed_task(rt):
    task_id = create(rt, max_assignments=1, expiration_block=3, task_terms=terms(submit_within=5))
    sid = assign(rt, BOB, task_id)
    rt.to(7)
    assert rt.status(sid) == "Abandoned" and task_id not in rt.get("OpenTasks")
    rt.ok(ALICE, "close_task", task_id=task_id)
    assert rt.free(task_account(task_id)) == 0  # an abandoned slot holds no pay


def test_close_before_expiry_counts_only_live_slots(rt):
    task_id = create(rt, max_assignments=1, task_terms=terms(submit_within=1))
    abandoned = assign(rt, BOB, task_id)
    rt.next_block(2)
    assert rt.status(abandoned) == "Abandoned"
    assert rt.call(ALICE, "close_task", task_id=task_id) == "TaskNotExpired"  # the slot is free again
    sid = assign(rt, CHARLIE, task_id)
    rt.ok(CHARLIE, "send_task_result", **result(sid))
    rt.ok(ALICE, "accept_task_result", submission_id=sid)
    assert rt.ok(ALICE, "close_task", task_id=task_id)["refunded"] == 0


def test_deadlines_per_block_are_bounded(rt, monkeypatch):
    monkeypatch.setattr(decentralml, "MAX_DEADLINES_PER_BLOCK", 1)
    task_id = create(rt, max_assignments=3, task_terms=terms(submit_within=4))
    assign(rt, BOB, task_id)
    assert rt.call(CHARLIE, "assign_task", task_id=task_id) == "TooManyDeadlines"
    assert rt.get("TaskResultSubmissionCountByTaskId", task_id) == 1  # rolled back
    rt.next_block()
    assign(rt, CHARLIE, task_id)  # due one block later: another agenda


def test_two_workers_for_the_last_slot(rt):
    task_id = create(rt, max_assignments=2, task_terms=terms(submit_within=10))
    assign(rt, EVE, task_id)
    # one block, two workers for one slot: the first applied wins, the second gets a named error
    assert rt.call(BOB, "assign_task", task_id=task_id) is None
    assert rt.call(CHARLIE, "assign_task", task_id=task_id) == "MaxAssignmentsReached"
    assert rt.get("TaskResultSubmissionCountByTaskId", task_id) == 2
    assert len(rt.get("WorkerSubmissions", CHARLIE)) == 0


# -- 2. the review window and claim_payment --------------------------------------------------------------
def submitted(rt: Blocks, window: int | None = 3, **overrides) -> tuple[int, int]:
    task_id = create(rt, task_terms=terms(review_window=window), **overrides)
    sid = assign(rt, BOB, task_id)
    rt.ok(BOB, "send_task_result", **result(sid))  # block 1: the creator decides through block 4
    return task_id, sid


def test_the_worker_claims_after_the_review_window(rt):
    task_id, sid = submitted(rt)
    assert rt.get("ResultSubmittedAt", sid) == 1
    rt.to(4)
    assert rt.call(BOB, "claim_payment", submission_id=sid) == "ReviewWindowOpen"
    rt.next_block()
    total, bob = balances(rt, task_id, BOB), rt.free(BOB)
    assert rt.call(EVE, "claim_payment", submission_id=sid) == "NotAuthorized"
    claimed = rt.ok(BOB, "claim_payment", submission_id=sid)
    assert claimed == {"task_id": task_id, "submission_id": sid, "worker": BOB, "amount": PAYS, "block": 5}
    assert rt.free(BOB) == bob + PAYS and balances(rt, task_id, BOB) == total
    sub = rt.get("TaskResultSubmissions", sid)
    assert (sub["status"], sub["paid_amount"], sub["paid_block"]) == ("Accepted", PAYS, 5)
    assert rt.stats(BOB)["accepted"] == 1
    assert rt.call(BOB, "claim_payment", submission_id=sid) == "AlreadyDecided"  # exactly once
    assert rt.call(ALICE, "accept_task_result", submission_id=sid) == "AlreadyDecided"
    assert rt.free(BOB) == bob + PAYS


def test_claim_refusals(rt):
    assert rt.call(BOB, "claim_payment", submission_id=0) == "SubmissionNotFound"
    _, no_window = submitted(rt, window=None)
    rt.next_block(10)
    assert rt.call(BOB, "claim_payment", submission_id=no_window) == "NoReviewWindow"
    task_id = create(rt, task_terms=terms(review_window=1))
    sid = assign(rt, BOB, task_id)
    assert rt.call(BOB, "claim_payment", submission_id=sid) == "ResultNotSubmitted"
    rt.ok(BOB, "send_task_result", **result(sid))
    rt.ok(ALICE, "reject_task_result", submission_id=sid, reason=b"empty")
    rt.next_block(3)
    assert rt.call(BOB, "claim_payment", submission_id=sid) == "AlreadyDecided"
    _, drained = submitted(rt, window=1)
    assert rt.call("root", "force_set_balance", who={"Id": task_account(2)}, new_free=PAYS - 1) is None
    rt.next_block(2)
    assert rt.call(BOB, "claim_payment", submission_id=drained) == "InsufficientEscrow"


def test_the_creator_and_the_worker_at_the_window_end(rt):
    """In the last block of the window only the creator decides; in the next one the worker's claim and a
    late accept race for one payment, and a late reject is refused: exactly one payment, balances kept."""
    task_id, sid = submitted(rt, max_assignments=3)
    others = [assign(rt, w, task_id) for w in (CHARLIE, EVE)]
    for w, s in zip((CHARLIE, EVE), others, strict=True):
        rt.ok(w, "send_task_result", **result(s))
    total = balances(rt, task_id, BOB, CHARLIE, EVE, ALICE)
    rt.to(4)  # the window's last block: the creator's accept wins, the claim is early
    assert rt.call(BOB, "claim_payment", submission_id=sid) == "ReviewWindowOpen"
    rt.ok(ALICE, "accept_task_result", submission_id=sid)
    rt.next_block()  # block 5: the claim first, then the creator
    rt.ok(CHARLIE, "claim_payment", submission_id=others[0])
    assert rt.call(ALICE, "accept_task_result", submission_id=others[0]) == "AlreadyDecided"
    assert rt.call(ALICE, "reject_task_result", submission_id=others[1], reason=b"late") == "ReviewWindowClosed"
    rt.ok(ALICE, "accept_task_result", submission_id=others[1])  # a late accept still pays, once
    assert rt.call(EVE, "claim_payment", submission_id=others[1]) == "AlreadyDecided"
    assert [rt.get("TaskResultSubmissions", s)["paid_amount"] for s in (sid, *others)] == [PAYS] * 3
    assert rt.free(task_account(task_id)) == 0 and balances(rt, task_id, BOB, CHARLIE, EVE, ALICE) == total


def test_a_claim_survives_closing_the_task(rt):
    task_id, sid = submitted(rt, expiration_block=3, max_assignments=2)
    rt.to(4)
    assert rt.ok(ALICE, "close_task", task_id=task_id)["refunded"] == PAYS  # the pending result's pay stays
    rt.next_block()
    rt.ok(BOB, "claim_payment", submission_id=sid)
    assert rt.free(task_account(task_id)) == 0


# -- 3. qualifications ----------------------------------------------------------------------------------
def record(rt: Blocks, worker: bytes, accepted: int = 0, rejected: int = 0) -> None:
    """Give ``worker`` a history of decided results."""
    for verdict in ["accept"] * accepted + ["reject"] * rejected:
        task_id = create(rt, max_assignments=1)
        sid = assign(rt, worker, task_id)
        rt.ok(worker, "send_task_result", **result(sid))
        if verdict == "accept":
            rt.ok(ALICE, "accept_task_result", submission_id=sid)
        else:
            rt.ok(ALICE, "reject_task_result", submission_id=sid, reason=b"no")


def test_assign_checks_accepted_results_and_rejection_rate(rt):
    record(rt, BOB, accepted=3, rejected=1)  # 25 % rejected
    record(rt, CHARLIE, accepted=1)
    assert rt.stats(BOB) == {"accepted": 3, "rejected": 1, "abandoned": 0, "creators": [ALICE]}
    strict = create(rt, max_assignments=5, task_terms=terms(min_accepted=2, max_rejection_rate=200_000))
    assert rt.call(EVE, "assign_task", task_id=strict) == "TooFewAccepted"  # a newcomer
    assert rt.call(CHARLIE, "assign_task", task_id=strict) == "TooFewAccepted"
    assert rt.call(BOB, "assign_task", task_id=strict) == "RejectionRateTooHigh"
    assert rt.get("TaskResultSubmissionCountByTaskId", strict) is None  # nothing taken
    at_limit = create(rt, max_assignments=5, task_terms=terms(min_accepted=3, max_rejection_rate=250_000))
    assign(rt, BOB, at_limit)  # exactly at the limit qualifies
    newcomers = create(rt, max_assignments=5, task_terms=terms(max_rejection_rate=0))
    assign(rt, EVE, newcomers)  # nothing decided yet: rate 0
    assign(rt, CHARLIE, newcomers)
    assert rt.call(BOB, "assign_task", task_id=newcomers) == "RejectionRateTooHigh"


def test_qualification_counts_claims_and_abandonments(rt):
    _, sid = submitted(rt, window=1)
    rt.next_block(2)
    rt.ok(BOB, "claim_payment", submission_id=sid)
    task_id = create(rt, task_terms=terms(submit_within=1))
    assign(rt, BOB, task_id)
    rt.next_block(2)
    assert rt.stats(BOB) == {"accepted": 1, "rejected": 0, "abandoned": 1, "creators": [ALICE]}
    assign(rt, BOB, create(rt, task_terms=terms(min_accepted=1)))


# -- 4. no escrow strands: every verdict after close_task returns what it frees -------------------------
def closed_with_pending(rt: Blocks, **overrides) -> tuple[int, int]:
    """The probe's case: a task expires at block 3 with Bob's result (sent at block 1, window through
    block 6) pending and one slot unused; Alice closes it at block 4."""
    task_id, sid = submitted(rt, window=5, expiration_block=3, max_assignments=2, **overrides)
    rt.to(4)
    assert rt.ok(ALICE, "close_task", task_id=task_id)["refunded"] == PAYS  # the unused slot
    assert rt.free(task_account(task_id)) == PAYS and rt.escrow_discrepancy(task_id) is None
    return task_id, sid


@pytest.mark.parametrize("block", [4, 6])  # the close's block; the review window's last block
def test_a_rejection_after_close_refunds_the_pay_at_once(rt, block):
    task_id, sid = closed_with_pending(rt)
    rt.to(block)
    alice, total = rt.free(ALICE), balances(rt, task_id, ALICE, BOB)
    mark = len(rt.ex.events)
    assert rt.call(ALICE, "reject_task_result", submission_id=sid, reason=b"late") is None
    assert rt.events(mark) == [
        {"TaskResultRejected": {"task_id": task_id, "submission_id": sid, "worker": BOB, "reason": b"late",
                                "block": block}},
        {"EscrowRefunded": {"task_id": task_id, "submission_id": sid, "refunded": PAYS, "block": block}}]
    assert rt.free(task_account(task_id)) == 0 and rt.free(ALICE) == alice + PAYS
    assert balances(rt, task_id, ALICE, BOB) == total and rt.refunded(task_id) == 2 * PAYS
    assert rt.escrow_discrepancy(task_id) is None
    assert rt.call(ALICE, "close_task", task_id=task_id) == "TaskClosed"  # nothing left that needs it


def test_past_the_window_the_closed_tasks_pending_pay_goes_to_the_worker(rt):
    task_id, sid = closed_with_pending(rt)
    rt.to(7)
    assert rt.call(ALICE, "reject_task_result", submission_id=sid, reason=b"late") == "ReviewWindowClosed"
    mark = len(rt.ex.events)
    rt.ok(BOB, "claim_payment", submission_id=sid)  # one event: nothing freed, nothing refunded
    assert [next(iter(e)) for e in rt.events(mark)] == ["PaymentClaimed"]
    assert rt.free(task_account(task_id)) == 0 and rt.escrow_discrepancy(task_id) is None


def test_accept_and_reject_after_close_each_settle_their_own_pay(rt):
    task_id = create(rt, max_assignments=3, expiration_block=3, task_terms=terms(review_window=10))
    sids = [assign(rt, w, task_id) for w in (BOB, CHARLIE)]
    for w, sid in zip((BOB, CHARLIE), sids, strict=True):
        rt.ok(w, "send_task_result", **result(sid))
    rt.to(4)
    rt.ok(ALICE, "close_task", task_id=task_id)
    total = balances(rt, task_id, ALICE, BOB, CHARLIE)
    rt.ok(ALICE, "accept_task_result", submission_id=sids[0])  # paid from the kept pay, no refund due
    assert rt.free(task_account(task_id)) == PAYS and rt.escrow_discrepancy(task_id) is None
    mark = len(rt.ex.events)
    assert rt.call(ALICE, "reject_task_result", submission_id=sids[1], reason=b"no") is None
    assert rt.events(mark)[-1]["EscrowRefunded"]["refunded"] == PAYS
    assert rt.free(task_account(task_id)) == 0 and rt.escrow_discrepancy(task_id) is None
    assert balances(rt, task_id, ALICE, BOB, CHARLIE) == total


def test_the_invariant_names_a_stranded_escrow():
    closed = {**task(max_assignments=2), "status": "Completed"}
    rejected = {"status": "Rejected", "paid_amount": None}
    assert escrow_discrepancy(closed, [rejected], escrow=PAYS, refunded=PAYS) == \
        f"closed with {PAYS} in escrow for 0 pending result(s) of {PAYS}"  # the probe's failure
    assert escrow_discrepancy(closed, [rejected], escrow=0, refunded=2 * PAYS) is None
    assert "reserved" in escrow_discrepancy(closed, [rejected], escrow=0, refunded=PAYS)  # value vanished
    pending = {"status": "PendingValidation", "paid_amount": None}
    assert escrow_discrepancy(closed, [pending], escrow=PAYS, refunded=PAYS) is None


WORKERS = (BOB, CHARLIE)
RUNTIME = runtime("full")
SCHEDULES = st.lists(st.tuples(st.integers(1, 6), st.sampled_from(["assign", "send", "accept", "reject", "claim",
                                                                   "close"]), st.sampled_from(WORKERS)),
                     max_size=12).map(sorted)


@settings(max_examples=60, deadline=None)
@given(SCHEDULES)
@example([(1, "assign", BOB), (1, "send", BOB), (3, "close", BOB), (3, "reject", BOB)])  # the probe's case
@example([(1, "assign", BOB), (1, "send", BOB), (2, "assign", CHARLIE), (2, "send", CHARLIE), (3, "close", BOB),
          (4, "accept", BOB), (4, "reject", CHARLIE)])
def test_no_sequence_of_calls_leaves_value_in_a_closed_tasks_escrow(schedule):
    """Any calls, in any order, at blocks 1–6 around a task's expiry (block 2), its deadlines and its
    review windows (3 blocks each): the escrow adds up after every call, value is only moved, and once
    nothing is pending the closed task's escrow is 0."""
    with tempfile.TemporaryDirectory() as tmp:
        chain = Chain(RUNTIME, ChainDatabase(Path(tmp) / "c.sqlite"))
        try:
            rt = Blocks(chain)
            task_id = create(rt, max_assignments=2, expiration_block=2,
                             task_terms=terms(submit_within=3, review_window=3))
            people = (ALICE, *WORKERS)
            total = balances(rt, task_id, *people)

            def sid(worker: bytes) -> int | None:
                return (rt.get("WorkerSubmissions", worker) or [None])[-1]

            calls = {"assign": lambda w: (w, "assign_task", {"task_id": task_id}),
                     "send": lambda w: (w, "send_task_result", result(sid(w))),
                     "accept": lambda w: (ALICE, "accept_task_result", {"submission_id": sid(w)}),
                     "reject": lambda w: (ALICE, "reject_task_result", {"submission_id": sid(w), "reason": b"no"}),
                     "claim": lambda w: (w, "claim_payment", {"submission_id": sid(w)}),
                     "close": lambda w: (ALICE, "close_task", {"task_id": task_id})}
            for block, step, worker in schedule:
                rt.to(max(block, rt.ex.block_number))
                if step == "assign" or sid(worker) is not None:
                    origin, name, args = calls[step](worker)
                    rt.call(origin, name, **args)  # refused or not: the escrow must add up either way
                assert rt.escrow_discrepancy(task_id) is None
            rt.to(12)  # past every deadline and window
            rt.call(ALICE, "close_task", task_id=task_id)
            for worker in WORKERS:
                if sid(worker) is not None:
                    rt.call(worker, "claim_payment", submission_id=sid(worker))
            assert rt.get("Tasks", task_id)["status"] == "Completed"
            assert rt.free(task_account(task_id)) == 0 and rt.escrow_discrepancy(task_id) is None
            assert balances(rt, task_id, *people) == total
        finally:
            chain.store.close()


# -- 5. a record is what others made of one's work ------------------------------------------------------
def test_verdicts_on_ones_own_tasks_do_not_count(rt):
    record(rt, BOB, accepted=1, rejected=1)  # 50 % rejected by Alice
    before = rt.stats(BOB)
    for verdict in ("accept", "accept", "accept", "reject", "claim"):  # Bob deals with himself
        own = create(rt, creator=BOB, max_assignments=1, task_terms=terms(review_window=1))
        sid = assign(rt, BOB, own)
        rt.ok(BOB, "send_task_result", **result(sid))
        if verdict == "claim":
            rt.next_block(2)
            rt.ok(BOB, "claim_payment", submission_id=sid)
        else:
            rt.ok(BOB, f"{verdict}_task_result", submission_id=sid, **({"reason": b"x"} if verdict == "reject" else {}))
    abandoned = create(rt, creator=BOB, max_assignments=1, task_terms=terms(submit_within=1))
    assign(rt, BOB, abandoned)
    rt.next_block(2)
    assert rt.stats(BOB) == before  # the pay moved, the record did not
    strict = create(rt, task_terms=terms(max_rejection_rate=400_000))
    assert rt.call(BOB, "assign_task", task_id=strict) == "RejectionRateTooHigh"  # still 50 %


def test_distinct_creators_other_than_the_tasks_own(rt):
    record(rt, BOB, accepted=2)  # both from Alice
    _, claimed = submitted(rt, window=1, creator=EVE)  # a claim counts as Eve's acceptance
    rt.next_block(2)
    rt.ok(BOB, "claim_payment", submission_id=claimed)
    record(rt, CHARLIE, rejected=1)  # a rejection adds no creator
    assert rt.stats(BOB)["creators"] == [ALICE, EVE] and rt.stats(CHARLIE)["creators"] == []
    two = terms(min_distinct_creators=2)
    for creator in (ALICE, EVE):  # Alice's own (or Eve's own) verdicts are not others' judgement
        assert rt.call(BOB, "assign_task", task_id=create(rt, creator=creator, task_terms=two)) == \
            "TooFewDistinctCreators"
    assign(rt, BOB, create(rt, creator=CHARLIE, task_terms=two))  # two others vouch
    assign(rt, BOB, create(rt, creator=ALICE, task_terms=terms(min_distinct_creators=1)))


def test_the_creators_kept_per_worker_are_bounded(rt):
    creators = [bytes([i + 1]) * 32 for i in range(MAX_DISTINCT_CREATORS + 2)]
    for creator in creators:
        rt.call("root", "force_set_balance", who={"Id": creator}, new_free=10 * PAYS)
        task_id = create(rt, creator=creator, max_assignments=1)
        sid = assign(rt, BOB, task_id)
        rt.ok(BOB, "send_task_result", **result(sid))
        rt.ok(creator, "accept_task_result", submission_id=sid)
    stats = rt.stats(BOB)
    assert stats["accepted"] == MAX_DISTINCT_CREATORS + 2 and stats["creators"] == creators[:MAX_DISTINCT_CREATORS + 1]
    most = terms(min_distinct_creators=MAX_DISTINCT_CREATORS)
    assign(rt, BOB, create(rt, creator=creators[0], task_terms=most))  # a full set, less the asker, is enough
    assign(rt, BOB, create(rt, creator=creators[-1], task_terms=most))  # not kept: full already


def test_an_abandonment_the_expiry_caused_is_not_the_workers(rt):
    """submit_within 3 on tasks expiring at block 5: taken at block 2, due at 5 = the expiry, the worker
    had its whole time; taken at block 3, due at 6, the expiry cut it short."""
    full_time, cut_short = (create(rt, max_assignments=1, expiration_block=5, task_terms=terms(submit_within=3))
                            for _ in range(2))
    rt.to(2)
    first = assign(rt, BOB, full_time)
    rt.to(3)
    second = assign(rt, CHARLIE, cut_short)
    rt.to(6)
    assert rt.status(first) == "Abandoned" and rt.stats(BOB)["abandoned"] == 1
    rt.next_block()
    assert rt.status(second) == "Abandoned" and rt.stats(CHARLIE) == NO_STATS


def test_assign_checks_the_abandonment_rate(rt):
    record(rt, BOB, accepted=1)
    task_id = create(rt, task_terms=terms(submit_within=1))
    assign(rt, BOB, task_id)
    rt.next_block(2)
    assert rt.stats(BOB) == {"accepted": 1, "rejected": 0, "abandoned": 1, "creators": [ALICE]}  # 50 %
    assert rt.call(BOB, "assign_task", task_id=create(rt, task_terms=terms(max_abandonment_rate=499_999))) == \
        "AbandonmentRateTooHigh"
    assign(rt, BOB, create(rt, task_terms=terms(max_abandonment_rate=500_000)))  # at the limit
    assign(rt, EVE, create(rt, task_terms=terms(max_abandonment_rate=0)))  # a newcomer has abandoned nothing


# -- the upstream pallet is left alone ------------------------------------------------------------------
def test_the_upstream_runtime_has_none_of_the_rules():
    full, upstream = runtime("full"), runtime("upstream")
    pallet = {r.pallet_mode: r.pallet(PALLET) for r in (full, upstream)}
    names = {mode: [c.name for c in p.calls] for mode, p in pallet.items()}
    assert names["full"][:8] == ["create_task", "assign_task", "send_task_result", "accept_task_result",
                                 "reject_task_result", "close_task", "create_task_with_terms", "claim_payment"]
    assert names["upstream"] == names["full"][:3]
    added = ["TaskTerms", "WorkerStats", "TaskByClientToken", "ResultSubmittedAt", "AssignmentDeadlines"]
    assert [s.name for s in pallet["full"].storage][-5:] == added
    assert not {s.name for s in pallet["upstream"].storage} & set(added)
    assert [n for n, _ in pallet["full"].events][-3:] == ["AssignmentAbandoned", "PaymentClaimed", "EscrowRefunded"]
    assert "AssignmentAbandoned" not in [n for n, _ in pallet["upstream"].events]
    status = {mode: r.registry.types[r.registry.by_path("pallet_decentralml::types::ResultSubmissionStatus")]
              for mode, r in (("full", full), ("upstream", upstream))}
    variants = {m: [v["name"] for v in s["def"]["variant"]["variants"]] for m, s in status.items()}
    assert variants["full"] == variants["upstream"] + ["Abandoned"]
    assert upstream.registry.types and "TaskTerms" not in str(upstream.registry.portable())
