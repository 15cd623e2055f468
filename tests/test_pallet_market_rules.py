"""The market rules on the real executive: assignment deadlines, the review window and claim_payment,
qualifications, client tokens; the races at a deadline block; and the upstream layout left alone.

Blocks advance through ``Dispatcher.next_block`` (``initialize_block``, so ``on_initialize`` runs as
on the devnet); calls in one block are applied in the order given, as a block author would.
"""

from __future__ import annotations

import pytest
from test_pallet_decentralml import ALICE, BOB, CHARLIE, EVE, PAYS, Dispatcher, result, task

from decentralml_core.devnet.chain import Chain
from decentralml_core.devnet.metadata import runtime
from decentralml_core.devnet.pallets import decentralml
from decentralml_core.devnet.pallets.decentralml import DEFAULT_TERMS, PALLET, task_account
from decentralml_core.devnet.store import BlockStore

DAVE = bytes(range(32))


class Blocks(Dispatcher):
    def next_block(self, count: int = 1) -> list[dict]:
        """Start the next block(s), running on_initialize; the hooks' DecentralML events of the last one."""
        for _ in range(count):
            self.ex.initialize_block(self.ex.block_number + 1, 0)
        return [e["event"][PALLET] for e in self.ex.events if PALLET in e["event"]]

    def to(self, block: int) -> list[dict]:
        return self.next_block(block - self.ex.block_number)

    def stats(self, who: bytes) -> dict:
        return self.get("WorkerStats", who)

    def status(self, sid: int) -> str:
        return self.get("TaskResultSubmissions", sid)["status"]


@pytest.fixture
def rt(tmp_path):
    chain = Chain(runtime("full"), BlockStore(tmp_path / "c.sqlite"))
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


@pytest.mark.parametrize("bad", [{"submit_within": 0}, {"review_window": 0}, {"max_rejection_rate": 1_000_001}])
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
    assert rt.status(sid) == "Abandoned" and rt.stats(BOB) == {"accepted": 0, "rejected": 0, "abandoned": 1}
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
    assert rt.stats(BOB) == {"accepted": 3, "rejected": 1, "abandoned": 0}
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
    assert rt.stats(BOB) == {"accepted": 1, "rejected": 0, "abandoned": 1}
    assign(rt, BOB, create(rt, task_terms=terms(min_accepted=1)))


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
    assert [n for n, _ in pallet["full"].events][-2:] == ["AssignmentAbandoned", "PaymentClaimed"]
    assert "AssignmentAbandoned" not in [n for n, _ in pallet["upstream"].events]
    status = {mode: r.registry.types[r.registry.by_path("pallet_decentralml::types::ResultSubmissionStatus")]
              for mode, r in (("full", full), ("upstream", upstream))}
    variants = {m: [v["name"] for v in s["def"]["variant"]["variants"]] for m, s in status.items()}
    assert variants["full"] == variants["upstream"] + ["Abandoned"]
    assert upstream.registry.types and "TaskTerms" not in str(upstream.registry.portable())
