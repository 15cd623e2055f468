"""``make demo``: the data-annotation tutorial's flow on a fresh devnet, with plain substrate-interface.

//Alice is the model creator, //Bob the data annotator. Until the agents exist this script is the
flow they automate: create a task (escrowing its pay), assign it, send a result, accept it (paying).
"""

from __future__ import annotations

import sys

from substrateinterface import Keypair, SubstrateInterface

from .devnet.pallets.decentralml import task_account
from .devnet.process import DevnetProcess


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


def submit(si: SubstrateInterface, who: Keypair, pallet: str, call: str, params: dict):
    receipt = si.submit_extrinsic(
        si.create_signed_extrinsic(si.compose_call(pallet, call, params), keypair=who), wait_for_inclusion=True)
    if not receipt.is_success:
        raise SystemExit(f"{pallet}.{call} failed: {receipt.error_message}")
    events = [(e.value["module_id"], e.value["event_id"], e.value["attributes"]) for e in receipt.triggered_events
              if e.value["module_id"] == "DecentralMLModule"]
    print(f"  block #{si.get_block_number(receipt.block_hash)}  {pallet}.{call}  fee {receipt.total_fee_amount}")
    for _, name, attrs in events:
        print(f"    event {name} {attrs}")
    return events


def free(si: SubstrateInterface, address: str) -> int:
    return si.query("System", "Account", [address]).value["data"]["free"]


def run(url: str) -> None:
    si = SubstrateInterface(url=url)
    creator, annotator = Keypair.create_from_uri("//Alice"), Keypair.create_from_uri("//Bob")
    print(f"connected to {si.chain} at {url}")
    bob_before = free(si, annotator.ss58_address)
    pays, assignments = 1_000_000, 2
    expiration = si.get_block_number(None) + 600

    print("1. model creator //Alice creates a data-annotation task (object detection)")
    created = submit(si, creator, "DecentralMLModule", "create_task", seed_task_params(
        pays_amount=pays, expiration_block=expiration, max_assignments=assignments, validation_strategy="AutoAccept"))
    task_id = next(a["taskid"] for _, n, a in created if n == "TaskCreated")
    escrow = si.ss58_encode(task_account(task_id))
    print(f"  task {task_id}: escrow account {escrow} holds {free(si, escrow)}")

    print("2. data annotator //Bob takes the task")
    assigned = submit(si, annotator, "DecentralMLModule", "assign_task", {"task_id": task_id})
    submission_id = next(a["submission_index"] for _, n, a in assigned if n == "TaskAssigned")

    print("3. //Bob runs start_task.sh and sends the outputs folder as the result")
    submit(si, annotator, "DecentralMLModule", "send_task_result", {
        "submission_id": submission_id, "result": '{"annotations": "outputs/annotations_coco.json"}',
        "result_path": "outputs", "result_storage_type": "IPFS", "result_storage_credentials": ""})

    print("4. //Alice validates (AutoAccept) and accepts: //Bob is paid from the escrow")
    bob_mid = free(si, annotator.ss58_address)
    submit(si, creator, "DecentralMLModule", "accept_task_result", {"submission_id": submission_id})
    bob_after = free(si, annotator.ss58_address)
    submission = si.query("DecentralMLModule", "TaskResultSubmissions", [submission_id]).value
    task = si.query("DecentralMLModule", "Tasks", [task_id]).value
    print("result:")
    print(f"  task {task_id} status {task['status']}, submission {submission_id} status {submission['status']},"
          f" paid {submission['paid_amount']} at block {submission['paid_block']}")
    print(f"  //Bob received {bob_after - bob_mid} (net of his fees since the start:"
          f" {bob_after - bob_before:+d}); escrow left {free(si, escrow)}")
    si.close()
    if submission["status"] != "Accepted" or bob_after - bob_mid != pays:
        raise SystemExit("demo failed: the result was not accepted and paid")
    print("demo ok")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        run(argv[0])
        return 0
    with DevnetProcess() as node:
        print(f"devnet started at {node.url} (pid {node.proc.pid})")
        run(node.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
