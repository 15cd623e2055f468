"""The DecentralML pallet through the wire: unmodified substrate-interface against a devnet process.

The tutorial's flow (create, assign, send, accept) with balances, escrow and events checked, then
the pallet's refusals as they reach a client: ``ExtrinsicFailed`` with the error's name.
"""

from __future__ import annotations

import pytest
from substrateinterface import Keypair
from substrateinterface.exceptions import SubstrateRequestException

from decentralml_core.devnet.pallets.decentralml import ADDED_ERRORS, UPSTREAM_ERRORS, task_account

PAYS = 1_000_000


def seed_task_params(**overrides) -> dict:
    """``create_task`` arguments as the seed tutorial's ``create_task_data_annotator`` sends them.

    A list of ``BoundedVec`` is a one-field tuple struct in metadata, so substrate-interface wants
    it wrapped once more (``[[...]]``), exactly as upstream's own client sends it.
    """
    params = {
        "task_type": "DataAnnotators", "question": "Find and label the samples in each file",
        "pays_amount": 1_000_000, "expiration_block": 600, "max_assignments": 2,
        "validation_strategy": "ManualAccept", "model_contributor_script_path": None,
        "model_contributor_script_storage_type": None, "model_contributor_script_storage_credentials": None,
        "annotation_type": "Image", "annotation_media_samples": [["sample_1.jpg", "sample_2.jpg"]],
        "annotation_files": [["file_1.jpg", "file_2.jpg"]], "annotation_class_labels": "sample_1,sample_2",
        "annotation_class_coordinates": None, "annotation_json": '{"script": "start_task.sh"}',
        "annotation_files_storage_type": "IPFS", "annotation_files_storage_credentials": None,
        "model_engineer_path": None, "model_engineer_storage_type": None, "model_engineer_storage_credentials": None,
    }
    params.update(overrides)
    return params


def free(si, address: str) -> int:
    return si.query("System", "Account", [address]).value["data"]["free"]


def call(si, who: Keypair, name: str, **params):
    xt = si.create_signed_extrinsic(si.compose_call("DecentralMLModule", name, params), keypair=who)
    return si.submit_extrinsic(xt, wait_for_inclusion=True)


def events(receipt, name: str) -> list[dict]:
    return [e.value["attributes"] for e in receipt.triggered_events
            if e.value["module_id"] == "DecentralMLModule" and e.value["event_id"] == name]


def task_params(si, **overrides) -> dict:
    """The seed tutorial's parameters, expiring 500 blocks from now."""
    return seed_task_params(**{"pays_amount": PAYS, "expiration_block": si.get_block_number(None) + 500,
                               **overrides})


def create(si, who, **overrides) -> int:
    receipt = call(si, who, "create_task", **task_params(si, **overrides))
    assert receipt.is_success, receipt.error_message
    return events(receipt, "TaskCreated")[0]["taskid"]


def assign(si, who, task_id) -> int:
    receipt = call(si, who, "assign_task", task_id=task_id)
    assert receipt.is_success, receipt.error_message
    return events(receipt, "TaskAssigned")[0]["submission_index"]


def send(si, who, submission_id, **overrides):
    params = {"submission_id": submission_id, "result": '{"files": 2}', "result_path": "outputs",
              "result_storage_type": "IPFS", "result_storage_credentials": ""}
    params.update(overrides)
    return call(si, who, "send_task_result", **params)


def failed(receipt) -> str:
    """The pallet error's name; ``Token.NAME`` (etc.) for sp_runtime's own, which substrate-interface leaves
    unnamed (read from the ExtrinsicFailed event)."""
    assert not receipt.is_success
    if receipt.error_message is None:
        (event,) = [e.value["attributes"] for e in receipt.triggered_events if e.value["event_id"] == "ExtrinsicFailed"]
        (kind, name), = event["dispatch_error"].items()
        return f"{kind}.{name}"
    return receipt.error_message["name"]


def test_tutorial_flow_pays_the_worker_from_escrow(substrate, keys):
    si, alice, bob = substrate, keys["alice"], keys["bob"]
    alice0 = free(si, alice.ss58_address)
    receipt = call(si, alice, "create_task", **task_params(si))
    assert receipt.is_success, receipt.error_message
    task_id = events(receipt, "TaskCreated")[0]["taskid"]
    escrow = si.ss58_encode(task_account(task_id))
    assert free(si, escrow) == 2 * PAYS
    assert free(si, alice.ss58_address) == alice0 - 2 * PAYS - receipt.total_fee_amount
    task = si.query("DecentralMLModule", "Tasks", [task_id]).value
    assert task["creator"] == alice.ss58_address
    assert (task["pays_amount"], task["max_assignments"], task["validation_strategy"]) == (PAYS, 2, "ManualAccept")
    assert task["annotation_files"] == ["file_1.jpg", "file_2.jpg"]
    assert task_id in si.query("DecentralMLModule", "OpenTasks").value

    submission_id = assign(si, bob, task_id)
    sub = si.query("DecentralMLModule", "TaskResultSubmissions", [submission_id]).value
    assert (sub["task_id"], sub["worker"], sub["status"]) == (task_id, bob.ss58_address, "Assigned")
    assert submission_id in si.query("DecentralMLModule", "WorkerSubmissions", [bob.ss58_address]).value

    receipt = send(si, bob, submission_id)
    assert receipt.is_success, receipt.error_message
    assert events(receipt, "TaskResultSubmitted")[0]["submission_id"] == submission_id
    sub = si.query("DecentralMLModule", "TaskResultSubmissions", [submission_id]).value
    assert (sub["status"], sub["result_path"], sub["result_storage_type"]) == ("PendingValidation", "outputs", "IPFS")

    bob0 = free(si, bob.ss58_address)
    receipt = call(si, alice, "accept_task_result", submission_id=submission_id)
    assert receipt.is_success, receipt.error_message
    accepted = events(receipt, "TaskResultAccepted")[0]
    assert (accepted["worker"], accepted["amount"]) == (bob.ss58_address, PAYS)
    assert free(si, bob.ss58_address) == bob0 + PAYS
    assert free(si, escrow) == PAYS
    sub = si.query("DecentralMLModule", "TaskResultSubmissions", [submission_id]).value
    assert (sub["status"], sub["paid_amount"]) == ("Accepted", PAYS)
    assert sub["paid_block"] == si.get_block_number(receipt.block_hash)

    # paid at most once
    assert failed(call(si, alice, "accept_task_result", submission_id=submission_id)) == "AlreadyDecided"
    assert free(si, bob.ss58_address) == bob0 + PAYS


def test_reject_records_the_reason_and_pays_nothing(substrate, keys):
    si, alice, charlie = substrate, keys["alice"], keys["charlie"]
    task_id = create(si, alice)
    submission_id = assign(si, charlie, task_id)
    assert send(si, charlie, submission_id).is_success
    before = free(si, charlie.ss58_address)
    receipt = call(si, alice, "reject_task_result", submission_id=submission_id, reason="boxes outside the image")
    assert receipt.is_success, receipt.error_message
    assert events(receipt, "TaskResultRejected")[0]["reason"] == "boxes outside the image"
    assert free(si, charlie.ss58_address) == before
    assert si.query("DecentralMLModule", "TaskResultSubmissions", [submission_id]).value["status"] == "Rejected"


def test_assignment_rules(substrate, keys):
    si, alice, bob, charlie, dave = substrate, keys["alice"], keys["bob"], keys["charlie"], keys["dave"]
    task_id = create(si, alice, max_assignments=1)
    assign(si, bob, task_id)
    assert failed(call(si, bob, "assign_task", task_id=task_id)) in ("AlreadyAssigned", "MaxAssignmentsReached")
    assert failed(call(si, charlie, "assign_task", task_id=task_id)) == "MaxAssignmentsReached"
    assert failed(call(si, dave, "assign_task", task_id=999_999)) == "TaskNotFound"
    two = create(si, alice, max_assignments=2)
    assign(si, bob, two)
    assert failed(call(si, bob, "assign_task", task_id=two)) == "AlreadyAssigned"


def test_only_the_worker_submits_and_only_the_creator_decides(substrate, keys):
    si, alice, bob, eve = substrate, keys["alice"], keys["bob"], keys["eve"]
    task_id = create(si, alice)
    submission_id = assign(si, bob, task_id)
    assert failed(send(si, eve, submission_id)) == "NotAuthorized"
    assert failed(call(si, alice, "accept_task_result", submission_id=submission_id)) == "ResultNotSubmitted"
    assert send(si, bob, submission_id).is_success
    assert failed(send(si, bob, submission_id)) == "InvalidStatus"
    assert failed(call(si, eve, "accept_task_result", submission_id=submission_id)) == "NotAuthorized"
    assert failed(call(si, bob, "reject_task_result", submission_id=submission_id, reason="no")) == "NotAuthorized"
    assert failed(send(si, bob, 999_999)) == "SubmissionNotFound"


def test_expiration_and_close_refund(substrate, keys):
    si, alice, bob, ferdie = substrate, keys["alice"], keys["bob"], keys["ferdie"]
    task_id = create(si, alice, expiration_block=si.get_block_number(None) + 3, max_assignments=3)
    submission_id = assign(si, bob, task_id)
    assert failed(call(si, alice, "close_task", task_id=task_id)) == "TaskNotExpired"
    for i in range(3):  # let the task expire
        si.submit_extrinsic(si.create_signed_extrinsic(
            si.compose_call("System", "remark", {"remark": f"0x0{i}"}), keypair=ferdie), wait_for_inclusion=True)
    assert failed(call(si, ferdie, "assign_task", task_id=task_id)) == "TaskExpired"
    assert failed(send(si, bob, submission_id)) == "TaskExpired"
    escrow = si.ss58_encode(task_account(task_id))
    held = free(si, escrow)
    assert held == 3 * PAYS
    assert failed(call(si, bob, "close_task", task_id=task_id)) == "NotAuthorized"
    alice0 = free(si, alice.ss58_address)
    receipt = call(si, alice, "close_task", task_id=task_id)
    assert receipt.is_success, receipt.error_message
    refunded = events(receipt, "TaskClosed")[0]["refunded"]
    assert refunded == held
    assert free(si, alice.ss58_address) == alice0 + refunded - receipt.total_fee_amount
    assert task_id not in si.query("DecentralMLModule", "OpenTasks").value
    assert failed(call(si, alice, "close_task", task_id=task_id)) == "TaskClosed"


@pytest.mark.parametrize("overrides,error", [
    ({"pays_amount": 499}, "TaskInvalidPaysAmount"),
    ({"expiration_block": 0}, "TaskEndTooEarly"),
    ({"max_assignments": 0}, "InvalidMaxAssignments"),
    ({"annotation_type": None}, "MissingAnnotationType"),
    ({"annotation_files": None}, "MissingAnnotationFiles"),
    ({"annotation_files_storage_type": None}, "MissingAnnotationFilesStorageType"),
    ({"task_type": "ModelContributor", "model_contributor_script_path": None}, "MissingModelContributorScriptPath"),
    ({"task_type": "ModelEngineer", "model_engineer_path": None}, "MissingModelEngineerPath"),
    ({"pays_amount": 2**127, "max_assignments": 4}, "Overflow"),
])
def test_create_task_refusals(substrate, keys, overrides, error):
    assert failed(call(substrate, keys["alice"], "create_task", **task_params(substrate, **overrides))) == error


def test_escrow_needs_funds(substrate, keys):
    poor = Keypair.create_from_mnemonic(Keypair.generate_mnemonic())
    si = substrate
    fund = si.compose_call("Balances", "transfer_keep_alive", {"dest": poor.ss58_address, "value": 10**9})
    assert si.submit_extrinsic(si.create_signed_extrinsic(fund, keypair=keys["alice"]),
                               wait_for_inclusion=True).is_success
    name = failed(call(si, poor, "create_task", **task_params(si, pays_amount=10**9, max_assignments=1)))
    assert name == "Token.FundsUnavailable"  # the escrow's Currency::transfer, as a polkadot-v1.0.0 node


def test_bounded_fields_are_checked_on_submission(substrate, keys):
    with pytest.raises(SubstrateRequestException) as info:
        call(substrate, keys["alice"], "create_task", **task_params(substrate, question="q" * 2049))
    err = info.value.args[0]
    assert err["code"] == 1001 and "question" in err["data"] and "2048" in err["data"]
    with pytest.raises(SubstrateRequestException) as info:
        call(substrate, keys["alice"], "create_task",
             **task_params(substrate, annotation_files=[[f"f{i}.jpg" for i in range(101)]]))
    assert "annotation_files" in info.value.args[0]["data"]


def test_errors_and_calls_carry_their_docs_in_metadata(substrate, keys):
    """As upstream's pallet: substrate-interface shows an error's docs in the receipt."""
    receipt = call(substrate, keys["eve"], "assign_task", task_id=987_654)
    assert receipt.error_message == {"type": "Module", "name": "TaskNotFound",
                                     "docs": ["The specified task does not exist."]}  # upstream's words
    pallet = substrate.metadata.get_metadata_pallet("DecentralMLModule")
    assert len(pallet.errors) == len(UPSTREAM_ERRORS + ADDED_ERRORS) and all(e.docs and e.docs[0] for e in pallet.errors)
    assert all(c.docs and c.docs[0] for c in pallet.calls)
    assert pallet.calls[0].docs[0] == "Creates a new task with specified parameters."  # upstream's
