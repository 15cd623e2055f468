"""The DecentralML pallet's rules on the real executive and storage, without sockets or signatures.

Every pallet error is reached here, each by the smallest call that should raise it, and a refused
call leaves no trace (its storage layer and events are rolled back).
"""

from __future__ import annotations

import pytest
from substrateinterface import Keypair

from decentralml_core.devnet.chain import Chain
from decentralml_core.devnet.metadata import runtime
from decentralml_core.devnet.pallets import decentralml
from decentralml_core.devnet.pallets.decentralml import ADDED_ERRORS, PALLET, U32_MAX, UPSTREAM_ERRORS, task_account
from decentralml_core.devnet.store import ChainDatabase

ALICE, BOB, CHARLIE, EVE = (Keypair.create_from_uri(f"//{n}").public_key for n in ("Alice", "Bob", "Charlie", "Eve"))
PAYS = 1_000_000
BALANCES_CALLS = ("force_set_balance", "transfer_keep_alive", "transfer_allow_death", "transfer_all")


class Dispatcher:
    """The executive of a fresh chain, with calls dispatched directly as a signed origin."""

    def __init__(self, chain: Chain) -> None:
        self.ex = chain.executive
        self.ex.initialize_block(1, 0)
        self.names = {v: k[1] for k, v in chain.runtime.error_index.items()}

    def call(self, origin: bytes | str, name: str, **args) -> str | None:
        """None on success, else the refusal's error name (``Token.NAME`` / ``Arithmetic.NAME`` for
        sp_runtime's own errors)."""
        pallet = "Balances" if name in BALANCES_CALLS else PALLET
        error = self.ex.dispatch(origin, {pallet: {name: args}})
        if error is None or isinstance(error, str):
            return error
        if "Module" not in error:
            (kind, inner), = error.items()
            return f"{kind}.{inner}"
        return self.names[(error["Module"]["index"], error["Module"]["error"][0])]

    def ok(self, origin: bytes, name: str, **args) -> dict:
        """Dispatch, insist on success, return the pallet's event fields."""
        mark = len(self.ex.events)
        assert self.call(origin, name, **args) is None
        fields = [e["event"][PALLET] for e in self.ex.events[mark:] if PALLET in e["event"]]
        (event,) = fields
        (_, values), = event.items()
        return values

    def get(self, item: str, *keys):
        return self.ex.get(PALLET, item, *keys)

    def free(self, who: bytes) -> int:
        return self.ex.free_balance(who)

    def at(self, block: int) -> None:
        self.ex.block_number = block


def task(**overrides) -> dict:
    args = {
        "task_type": "DataAnnotators", "question": b"Find the samples", "pays_amount": PAYS,
        "expiration_block": 100, "max_assignments": 2, "validation_strategy": "ManualAccept",
        "model_contributor_script_path": None, "model_contributor_script_storage_type": None,
        "model_contributor_script_storage_credentials": None, "annotation_type": "Image",
        "annotation_media_samples": [b"sample_1.jpg"], "annotation_files": [b"file_1.jpg", b"file_2.jpg"],
        "annotation_class_labels": b"sample_1", "annotation_class_coordinates": None, "annotation_json": None,
        "annotation_files_storage_type": "IPFS", "annotation_files_storage_credentials": None,
        "model_engineer_path": None, "model_engineer_storage_type": None, "model_engineer_storage_credentials": None,
    }
    args.update(overrides)
    return args


def result(submission_id: int, **overrides) -> dict:
    args = {"submission_id": submission_id, "result": b"{}", "result_path": b"outputs",
            "result_storage_type": "IPFS", "result_storage_credentials": b""}
    args.update(overrides)
    return args


@pytest.fixture
def rt(tmp_path):
    chain = Chain(runtime("full"), ChainDatabase(tmp_path / "c.sqlite"))
    yield Dispatcher(chain)
    chain.store.close()


def submitted(rt: Dispatcher, worker: bytes = BOB, **overrides) -> tuple[int, int]:
    """A task with one result waiting for validation: (task id, submission id)."""
    task_id = rt.ok(ALICE, "create_task", **task(**overrides))["taskid"]
    sid = rt.ok(worker, "assign_task", task_id=task_id)["submission_index"]
    rt.ok(worker, "send_task_result", **result(sid))
    return task_id, sid


def test_metadata_errors_are_upstreams_then_ours():
    full = runtime("full").error_index
    assert sorted((i, name) for (p, name), (_, i) in full.items() if p == PALLET) == \
        list(enumerate(UPSTREAM_ERRORS + ADDED_ERRORS))
    upstream = {name for (p, name) in runtime("upstream").error_index if p == PALLET}
    assert upstream == set(UPSTREAM_ERRORS)


def test_task_account_is_the_pallet_sub_account():
    assert task_account(7) == b"modldecentml\x07" + b"\x00" * 19
    assert len({task_account(i) for i in range(1000)}) == 1000


def test_create_escrows_all_assignments_and_opens_the_task(rt):
    alice0 = rt.free(ALICE)
    created = rt.ok(ALICE, "create_task", **task(max_assignments=3))
    assert created == {"taskid": 0, "created": 1}
    assert rt.free(task_account(0)) == 3 * PAYS
    assert rt.free(ALICE) == alice0 - 3 * PAYS
    stored = rt.get("Tasks", 0)
    assert (stored["status"], stored["creator"], stored["annotation_files"]) == \
        ("Created", ALICE, [b"file_1.jpg", b"file_2.jpg"])
    assert rt.get("OpenTasks") == [0] and rt.get("TaskCount") == 1
    assert rt.ok(ALICE, "create_task", **task())["taskid"] == 1


@pytest.mark.parametrize("overrides,error", [
    ({"pays_amount": 0}, "TaskInvalidPaysAmount"),
    ({"pays_amount": 499}, "TaskInvalidPaysAmount"),
    ({"max_assignments": 0}, "InvalidMaxAssignments"),
    ({"max_assignments": 10_000}, "InvalidMaxAssignments"),  # upstream's [u32; 10000] holds 9,999
    ({"expiration_block": 1}, "TaskEndTooEarly"),
    ({"question": None}, "InvalidQuestion"),
    ({"question": b""}, "InvalidQuestion"),
    ({"task_type": "Unknown"}, "InvalidTaskType"),
    ({"annotation_type": None}, "MissingAnnotationType"),
    ({"annotation_files": None}, "MissingAnnotationFiles"),
    ({"annotation_files": []}, "MissingAnnotationFiles"),
    ({"annotation_files_storage_type": None}, "MissingAnnotationFilesStorageType"),
    ({"task_type": "ModelContributor"}, "MissingModelContributorScriptPath"),
    ({"task_type": "ModelContributor", "model_contributor_script_path": b"train.py"},
     "MissingModelContributorScriptStorageType"),
    ({"task_type": "ModelEngineer"}, "MissingModelEngineerPath"),
    ({"task_type": "ModelEngineer", "model_engineer_path": b"model.py"}, "MissingModelEngineerStorageType"),
    ({"pays_amount": 2**127, "max_assignments": 2}, "Overflow"),  # escrow beyond u128
    # the escrow's transfer fails as polkadot-v1.0.0's Currency::transfer decides (see pallets/balances.py)
    ({"pays_amount": 10**30}, "Arithmetic.Underflow"),  # more than the total issuance
    ({"pays_amount": (1 << 60) + 1, "max_assignments": 1}, "Token.FundsUnavailable"),  # more than Alice has
    ({"pays_amount": ((1 << 60) - 400) // 2}, "Token.NotExpendable"),  # would leave Alice below the deposit
])
def test_create_refusals_leave_no_trace(rt, overrides, error):
    before = rt.free(ALICE), len(rt.ex.events)
    assert rt.call(ALICE, "create_task", **task(**overrides)) == error
    assert (rt.free(ALICE), len(rt.ex.events)) == before
    assert rt.get("TaskCount") == 0 and rt.get("Tasks", 0) is None and rt.get("OpenTasks") == []


def test_other_task_types_need_only_their_own_fields(rt):
    rt.ok(ALICE, "create_task", **task(task_type="ModelContributor", annotation_type=None, annotation_files=None,
                                       model_contributor_script_path=b"train.py",
                                       model_contributor_script_storage_type="S3"))
    rt.ok(ALICE, "create_task", **task(task_type="ModelEngineer", annotation_type=None,
                                       model_engineer_path=b"model.py", model_engineer_storage_type="GCP"))


def test_task_count_overflow(rt):
    rt.ex.set(PALLET, "TaskCount", U32_MAX)
    assert rt.call(ALICE, "create_task", **task()) == "Overflow"


def test_open_tasks_limit_rolls_back_the_escrow(rt, monkeypatch):
    monkeypatch.setattr(decentralml, "MAX_OPEN_TASKS", 1)
    rt.ok(ALICE, "create_task", **task())
    alice = rt.free(ALICE)
    assert rt.call(ALICE, "create_task", **task()) == "OpenTasksLimitReached"
    assert rt.free(ALICE) == alice and rt.free(task_account(1)) == 0 and rt.get("TaskCount") == 1


def test_assignment_caps_and_closes_the_task_to_new_workers(rt):
    rt.ok(ALICE, "create_task", **task(max_assignments=2))
    first = rt.ok(BOB, "assign_task", task_id=0)
    assert first == {"task_id": 0, "submission_index": 0, "modified_block": 1}
    assert rt.get("Tasks", 0)["status"] == "InProgress"
    assert rt.call(BOB, "assign_task", task_id=0) == "AlreadyAssigned"
    assert rt.ok(CHARLIE, "assign_task", task_id=0)["submission_index"] == 1
    assert rt.get("OpenTasks") == []
    assert rt.call(EVE, "assign_task", task_id=0) == "MaxAssignmentsReached"  # upstream allowed this one
    assert rt.get("TaskResultSubmissionCountByTaskId", 0) == 2
    assert rt.get("TaskResultSubmissionIds", 0) == [0, 1]
    assert rt.get("WorkerSubmissions", BOB) == [0] and rt.get("WorkerSubmissions", CHARLIE) == [1]
    sub = rt.get("TaskResultSubmissions", 1)
    assert (sub["worker"], sub["status"], sub["paid_amount"]) == (CHARLIE, "Assigned", None)


def test_assign_refusals(rt, monkeypatch):
    assert rt.call(BOB, "assign_task", task_id=0) == "TaskNotFound"
    rt.ok(ALICE, "create_task", **task(expiration_block=5))
    rt.at(6)
    assert rt.call(BOB, "assign_task", task_id=0) == "TaskExpired"
    rt.at(5)  # the expiration block itself still takes work
    monkeypatch.setattr(decentralml, "MAX_SUBMISSIONS_PER_WORKER", 0)
    assert rt.call(BOB, "assign_task", task_id=0) == "WorkerSubmissionLimit"
    assert rt.get("TaskResultSubmissionCount") == 0  # rolled back


def test_send_rules(rt):
    rt.ok(ALICE, "create_task", **task(expiration_block=10))
    sid = rt.ok(BOB, "assign_task", task_id=0)["submission_index"]
    assert rt.call(BOB, "send_task_result", **result(99)) == "SubmissionNotFound"
    assert rt.call(EVE, "send_task_result", **result(sid)) == "NotAuthorized"
    for bad in ({"result": None, "result_path": None}, {"result_storage_type": None},
                {"result_storage_credentials": None}):
        assert rt.call(BOB, "send_task_result", **result(sid, **bad)) == "InvalidResultSubmission"
    rt.at(11)
    assert rt.call(BOB, "send_task_result", **result(sid)) == "TaskExpired"
    rt.at(10)
    sent = rt.ok(BOB, "send_task_result", **result(sid, result_path=None, result_storage_type=None))
    assert sent == {"task_id": 0, "submission_id": sid, "worker": BOB, "block": 10}
    assert rt.get("TaskResultSubmissions", sid)["status"] == "PendingValidation"
    assert rt.call(BOB, "send_task_result", **result(sid)) == "InvalidStatus"


def test_accept_pays_once_from_escrow(rt):
    task_id, sid = submitted(rt)
    bob = rt.free(BOB)
    accepted = rt.ok(ALICE, "accept_task_result", submission_id=sid)
    assert accepted == {"task_id": task_id, "submission_id": sid, "worker": BOB, "amount": PAYS, "block": 1}
    assert rt.free(BOB) == bob + PAYS and rt.free(task_account(task_id)) == PAYS
    sub = rt.get("TaskResultSubmissions", sid)
    assert (sub["status"], sub["paid_amount"], sub["paid_block"]) == ("Accepted", PAYS, 1)
    assert rt.call(ALICE, "accept_task_result", submission_id=sid) == "AlreadyDecided"
    assert rt.call(ALICE, "reject_task_result", submission_id=sid, reason=b"late") == "AlreadyDecided"
    assert rt.free(BOB) == bob + PAYS


def test_last_payment_empties_the_escrow(rt):
    _, sid = submitted(rt, max_assignments=1)
    rt.ok(ALICE, "accept_task_result", submission_id=sid)
    assert rt.free(task_account(0)) == 0


def test_decision_refusals(rt):
    assert rt.call(ALICE, "accept_task_result", submission_id=0) == "SubmissionNotFound"
    rt.ok(ALICE, "create_task", **task())
    sid = rt.ok(BOB, "assign_task", task_id=0)["submission_index"]
    assert rt.call(ALICE, "accept_task_result", submission_id=sid) == "ResultNotSubmitted"
    rt.ok(BOB, "send_task_result", **result(sid))
    assert rt.call(BOB, "accept_task_result", submission_id=sid) == "NotAuthorized"
    assert rt.call(EVE, "reject_task_result", submission_id=sid, reason=b"no") == "NotAuthorized"
    assert rt.call("root", "force_set_balance", who={"Id": task_account(0)}, new_free=PAYS - 1) is None
    assert rt.call(ALICE, "accept_task_result", submission_id=sid) == "InsufficientEscrow"


def test_reject_keeps_the_pay_in_escrow(rt):
    task_id, sid = submitted(rt)
    bob = rt.free(BOB)
    rejected = rt.ok(ALICE, "reject_task_result", submission_id=sid, reason=b"boxes outside the image")
    assert rejected["reason"] == b"boxes outside the image" and rejected["worker"] == BOB
    assert rt.free(BOB) == bob and rt.free(task_account(task_id)) == 2 * PAYS
    assert rt.get("TaskResultSubmissions", sid)["status"] == "Rejected"


def test_close_refunds_all_but_pending_pay(rt):
    task_id, pending = submitted(rt, max_assignments=3, expiration_block=20)
    rt.ok(CHARLIE, "assign_task", task_id=task_id)  # never sends: its slot is refunded after expiry
    assert rt.call(BOB, "close_task", task_id=task_id) == "NotAuthorized"
    assert rt.call(ALICE, "close_task", task_id=task_id) == "TaskNotExpired"
    assert rt.call(ALICE, "close_task", task_id=99) == "TaskNotFound"
    rt.at(21)
    alice = rt.free(ALICE)
    closed = rt.ok(ALICE, "close_task", task_id=task_id)
    assert closed == {"task_id": task_id, "refunded": 2 * PAYS, "block": 21}
    assert rt.free(ALICE) == alice + 2 * PAYS and rt.free(task_account(task_id)) == PAYS
    assert rt.get("Tasks", task_id)["status"] == "Completed" and task_id not in rt.get("OpenTasks")
    assert rt.call(ALICE, "close_task", task_id=task_id) == "TaskClosed"
    assert rt.call(EVE, "assign_task", task_id=task_id) == "TaskClosed"
    rt.ok(ALICE, "accept_task_result", submission_id=pending)  # a pending result is still paid
    assert rt.free(task_account(task_id)) == 0


def test_close_before_expiry_once_every_slot_is_decided(rt):
    task_id, first = submitted(rt, max_assignments=2)
    second = rt.ok(CHARLIE, "assign_task", task_id=task_id)["submission_index"]
    rt.ok(ALICE, "accept_task_result", submission_id=first)
    assert rt.call(ALICE, "close_task", task_id=task_id) == "TaskNotExpired"
    rt.ok(CHARLIE, "send_task_result", **result(second))
    rt.ok(ALICE, "reject_task_result", submission_id=second, reason=b"empty")
    assert rt.ok(ALICE, "close_task", task_id=task_id)["refunded"] == PAYS
    assert rt.call(CHARLIE, "send_task_result", **result(second)) == "InvalidStatus"


def test_send_after_close_is_refused(rt):
    rt.ok(ALICE, "create_task", **task(expiration_block=3))
    sid = rt.ok(BOB, "assign_task", task_id=0)["submission_index"]
    rt.at(4)
    rt.ok(ALICE, "close_task", task_id=0)
    rt.at(2)  # even were the clock earlier, a closed task takes no results
    assert rt.call(BOB, "send_task_result", **result(sid)) == "TaskClosed"


def test_upstream_runtime_keeps_upstreams_rules_and_layout(tmp_path):
    chain = Chain(runtime("upstream"), ChainDatabase(tmp_path / "u.sqlite"))
    rt = Dispatcher(chain)
    alice = rt.free(ALICE)
    rt.ok(ALICE, "create_task", **task(max_assignments=1, expiration_block=5))
    assert rt.free(task_account(0)) == PAYS and rt.free(ALICE) == alice - PAYS  # pays_amount only
    sid = rt.ok(BOB, "assign_task", task_id=0)["submission_index"]
    mark = len(rt.ex.events)
    assert rt.call(BOB, "send_task_result", **result(sid)) is None
    assert not [e for e in rt.ex.events[mark:] if PALLET in e["event"]]  # upstream emits nothing here
    rt.at(9)  # no expiry check upstream, and one assignment more than max_assignments
    assert rt.ok(BOB, "assign_task", task_id=0)["submission_index"] == sid + 1
    assert rt.call(CHARLIE, "assign_task", task_id=0) == "MaxAssignmentsReached"
    ids = rt.get("TaskResultSubmissionIds", 0)
    assert len(ids) == 10_000 and ids[:3] == [0, sid, sid + 1]  # upstream's [u32; 10000], 1-based slots
    assert rt.get("Tasks", 0)["status"] == "Created"
    chain.store.close()


def test_upstream_escrow_below_the_existential_deposit_fails_as_a_v1_node_does(tmp_path):
    """Upstream moves ``pays_amount`` with ``Currency::transfer(AllowDeath)`` into a fresh task account:
    below the existential deposit (500) the account cannot be created — ``Token(BelowMinimum)``; more
    than the creator has — ``Token(FundsUnavailable)``; a creator may empty their account."""
    chain = Chain(runtime("upstream"), ChainDatabase(tmp_path / "u.sqlite"))
    rt = Dispatcher(chain)
    assert rt.call(ALICE, "create_task", **task(pays_amount=499)) == "Token.BelowMinimum"
    assert rt.call(ALICE, "create_task", **task(pays_amount=(1 << 60) + 1)) == "Token.FundsUnavailable"
    assert rt.call(ALICE, "create_task", **task(pays_amount=1 << 60)) is None  # AllowDeath: Alice is reaped
    assert rt.free(ALICE) == 0 and rt.free(task_account(0)) == 1 << 60
    chain.store.close()


def dev_account(n: int) -> bytes:
    return Keypair.create_from_uri(f"//Fresh{n}").public_key


@pytest.mark.parametrize("call,value,error", [
    # pallet_balances of polkadot-v1.0.0: fungible::Mutate::transfer, can_withdraw then can_deposit
    ("transfer_keep_alive", (1 << 60) + 1, "Token.FundsUnavailable"),
    ("transfer_allow_death", 10**30, "Arithmetic.Underflow"),  # above the total issuance: checked first
    ("transfer_keep_alive", (1 << 60) - 499, "Token.NotExpendable"),  # 499 left, the deposit is 500
    ("transfer_allow_death", 499, "Token.BelowMinimum"),  # a new account needs 500
    ("transfer_keep_alive", 499, "Token.BelowMinimum"),
])
def test_balances_transfers_fail_with_v1_dispatch_errors(rt, call, value, error):
    before = rt.free(ALICE), len(rt.ex.events)
    assert rt.call(ALICE, call, dest={"Id": dev_account(1)}, value=value) == error
    assert (rt.free(ALICE), len(rt.ex.events)) == before


def test_balances_transfers_that_succeed(rt):
    fresh = dev_account(2)
    assert rt.call(ALICE, "transfer_allow_death", dest={"Id": fresh}, value=0) is None  # Transfer of 0, as v1
    assert rt.ex.events[-1]["event"] == {"Balances": {"Transfer": {"from": ALICE, "to": fresh, "amount": 0}}}
    assert rt.call(ALICE, "transfer_keep_alive", dest={"Id": fresh}, value=500) is None
    assert rt.call(fresh, "transfer_keep_alive", dest={"Id": ALICE}, value=1) == "Token.NotExpendable"
    assert rt.call(fresh, "transfer_allow_death", dest={"Id": ALICE}, value=1) is None  # reaped, dust burned
    assert rt.free(fresh) == 0
    assert rt.call(ALICE, "transfer_keep_alive", dest={"Raw": b"x"}, value=1) == "CannotLookup"


def test_a_pallet_bug_fails_only_its_call(rt, monkeypatch):
    def broken(env, origin, **_):
        env.set(PALLET, "TaskCount", 99)
        raise KeyError("bug")

    monkeypatch.setitem(rt.ex._dispatchers, (PALLET, "assign_task"), broken)
    assert rt.call(BOB, "assign_task", task_id=0) == "Other"
    assert rt.get("TaskCount") == 0  # rolled back
    assert rt.call(ALICE, "create_task", **task()) is None
