"""The market rules through the wire: unmodified substrate-interface against a devnet process.

Blocks are sealed on demand (instant seal), so a test moves the chain on with remarks; two
extrinsics sent together without waiting land in one block, in the order the pool took them.
"""

from __future__ import annotations

import time

from test_devnet_decentralml import call, events, failed, free, task_params

from decentralml_core.devnet.pallets.decentralml import task_account

PAYS = 1_000_000
NO_TERMS = {"submit_within": None, "review_window": None, "min_accepted": 0, "max_rejection_rate": None,
            "min_distinct_creators": 0, "max_abandonment_rate": None}


def create(si, who, token=None, **terms) -> int:
    receipt = call(si, who, "create_task_with_terms", **task_params(si), terms={**NO_TERMS, **terms},
                   client_token=token)
    assert receipt.is_success, receipt.error_message
    return events(receipt, "TaskCreated")[0]["taskid"]


def advance(si, who, blocks: int) -> None:
    for i in range(blocks):
        xt = si.create_signed_extrinsic(si.compose_call("System", "remark", {"remark": f"0x{i:02x}"}), keypair=who)
        assert si.submit_extrinsic(xt, wait_for_inclusion=True).is_success


def submission(si, sid: int) -> dict:
    return si.query("DecentralMLModule", "TaskResultSubmissions", [sid]).value


def send(si, who, sid: int):
    return call(si, who, "send_task_result", submission_id=sid, result="{}", result_path="outputs",
                result_storage_type="IPFS", result_storage_credentials="")


def together(si, *signed: tuple) -> None:
    """Send extrinsics without waiting, then wait until all are in blocks (the pool orders them)."""
    hashes = []
    for who, name, params in signed:
        xt = si.create_signed_extrinsic(si.compose_call("DecentralMLModule", name, params), keypair=who)
        hashes.append(si.submit_extrinsic(xt, wait_for_inclusion=False).extrinsic_hash)
    deadline = time.monotonic() + 60
    while si.rpc_request("author_pendingExtrinsics", [])["result"]:
        assert time.monotonic() < deadline, "extrinsics not included"
        time.sleep(0.05)


def test_client_token_terms_and_stats_are_readable(substrate, keys):
    si, alice = substrate, keys["alice"]
    rules = {"submit_within": 5, "review_window": 9, "min_accepted": 0, "max_rejection_rate": 500_000,
             "min_distinct_creators": 2, "max_abandonment_rate": 100_000}
    task_id = create(si, alice, token="demo:1", **rules)
    assert si.query("DecentralMLModule", "TaskByClientToken", [alice.ss58_address, "demo:1"]).value == task_id
    assert si.query("DecentralMLModule", "TaskTerms", [task_id]).value == rules
    again = call(si, alice, "create_task_with_terms", **task_params(si), terms=NO_TERMS, client_token="demo:1")
    assert failed(again) == "DuplicateClientToken"
    empty = call(si, alice, "create_task_with_terms", **task_params(si), terms=NO_TERMS, client_token="")
    assert failed(empty) == "EmptyClientToken"
    assert si.query("DecentralMLModule", "WorkerStats", [keys["ferdie"].ss58_address]).value == {
        "accepted": 0, "rejected": 0, "abandoned": 0, "creators": []}
    assert failed(call(si, keys["ferdie"], "assign_task", task_id=task_id)) == "TooFewDistinctCreators"


def test_abandoned_slot_returns_and_the_late_worker_is_refused(substrate, keys):
    si, alice, bob, charlie = substrate, keys["alice"], keys["bob"], keys["charlie"]
    task_id = create(si, alice, submit_within=2)
    sid = events(call(si, bob, "assign_task", task_id=task_id), "TaskAssigned")[0]["submission_index"]
    call(si, charlie, "assign_task", task_id=task_id)
    assert failed(call(si, keys["dave"], "assign_task", task_id=task_id)) == "MaxAssignmentsReached"
    advance(si, alice, 3)
    assert submission(si, sid)["status"] == "Abandoned"
    assert si.query("DecentralMLModule", "WorkerStats", [bob.ss58_address]).value["abandoned"] == 1
    assert task_id in si.query("DecentralMLModule", "OpenTasks").value
    assert failed(send(si, bob, sid)) == "SubmissionDeadlinePassed"
    assert call(si, keys["dave"], "assign_task", task_id=task_id).is_success


def test_two_workers_for_the_last_slot_in_one_block(substrate, keys):
    si, alice, eve, ferdie = substrate, keys["alice"], keys["eve"], keys["ferdie"]
    task_id = create(si, alice)  # two slots
    call(si, keys["dave"], "assign_task", task_id=task_id)
    together(si, (eve, "assign_task", {"task_id": task_id}), (ferdie, "assign_task", {"task_id": task_id}))
    assert si.query("DecentralMLModule", "TaskResultSubmissionCountByTaskId", [task_id]).value == 2
    holders = {submission(si, s)["worker"] for s in si.query(
        "DecentralMLModule", "TaskResultSubmissionIds", [task_id]).value}
    assert len(holders & {eve.ss58_address, ferdie.ss58_address}) == 1  # exactly one won


def test_claim_and_late_accept_in_one_block_pay_once(substrate, keys):
    si, alice, bob = substrate, keys["alice"], keys["bob"]
    task_id = create(si, alice, review_window=1)
    sid = events(call(si, bob, "assign_task", task_id=task_id), "TaskAssigned")[0]["submission_index"]
    assert failed(call(si, bob, "claim_payment", submission_id=sid)) == "ResultNotSubmitted"
    assert send(si, bob, sid).is_success
    assert failed(call(si, bob, "claim_payment", submission_id=sid)) == "ReviewWindowOpen"
    advance(si, alice, 1)
    escrow = si.ss58_encode(task_account(task_id))
    before = free(si, bob.ss58_address) + free(si, escrow)
    start = si.get_block_number(None)
    together(si, (bob, "claim_payment", {"submission_id": sid}), (alice, "accept_task_result", {"submission_id": sid}))
    sub = submission(si, sid)
    assert (sub["status"], sub["paid_amount"]) == ("Accepted", PAYS)
    outcomes, bob_fee = [], 0
    for number in range(start + 1, si.get_block_number(None) + 1):
        for e in si.get_events(si.get_block_hash(number)):
            name, attrs = e.value["event_id"], e.value["attributes"]
            if name in ("PaymentClaimed", "TaskResultAccepted", "ExtrinsicFailed"):
                outcomes.append(name)
            if name == "TransactionFeePaid" and attrs["who"] == bob.ss58_address:
                bob_fee += attrs["actual_fee"]
    assert sorted(outcomes) in (["ExtrinsicFailed", "PaymentClaimed"], ["ExtrinsicFailed", "TaskResultAccepted"])
    assert free(si, escrow) == PAYS  # one payment left the escrow …
    assert free(si, bob.ss58_address) + free(si, escrow) == before - bob_fee  # … to bob: balances conserved
    assert si.query("DecentralMLModule", "WorkerStats", [bob.ss58_address]).value["accepted"] == 1


def test_a_rejection_after_close_refunds_through_the_wire(substrate, keys):
    """The probe's case: the task expires with a result inside its review window, is closed, then the
    result is rejected; the pay comes back in the same extrinsic and the escrow ends at 0."""
    si, alice, bob = substrate, keys["alice"], keys["bob"]
    receipt = call(si, alice, "create_task_with_terms", **task_params(si, expiration_block=si.get_block_number(None) + 3,
                                                                      max_assignments=2),
                   terms={**NO_TERMS, "review_window": 50}, client_token=None)
    task_id = events(receipt, "TaskCreated")[0]["taskid"]
    sid = events(call(si, bob, "assign_task", task_id=task_id), "TaskAssigned")[0]["submission_index"]
    assert send(si, bob, sid).is_success
    advance(si, alice, 2)
    assert events(call(si, alice, "close_task", task_id=task_id), "TaskClosed")[0]["refunded"] == PAYS
    escrow = si.ss58_encode(task_account(task_id))
    assert free(si, escrow) == PAYS  # the pending result's pay
    rejected = call(si, alice, "reject_task_result", submission_id=sid, reason="late")
    assert events(rejected, "EscrowRefunded") == [{"task_id": task_id, "submission_id": sid, "refunded": PAYS,
                                                   "block": si.get_block_number(rejected.block_hash)}]
    assert free(si, escrow) == 0
    assert failed(call(si, alice, "close_task", task_id=task_id)) == "TaskClosed"
