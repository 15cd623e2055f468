"""Creator and worker logic as operators run it — the YAML, ``run_agent``, real journals, real sandboxes —
in this test's event loop on the devnet's node in process (tests/agents_inprocess.py), with the agents'
log events asserted. What needs processes (kill -9, a signal, a full disk, the CLI and metrics port of a
running agent) stays in tests/test_agents.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agent_process import PAYS, decided, task_decl
from agents_inprocess import InProcessAgent, events, market_fixture
from structlog.testing import capture_logs
from substrateinterface import Keypair

from agents.journal import Journal
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import SubmissionStatus
from decentralml_core.devnet.inprocess import InProcessDevnet
from decentralml_core.sandbox import bubblewrap_works

pytestmark = pytest.mark.skipif(not bubblewrap_works(), reason="agents run task scripts in bubblewrap")
market = market_fixture()


async def advance(market, blocks: int) -> None:
    """Seal ``blocks`` blocks (instant seal: one per extrinsic) with remarks from //Ferdie."""
    for i in range(blocks):
        await market.client.submit(Keypair.create_from_uri("//Ferdie"), "System", "remark", {"remark": f"0x{i:02x}"})


async def test_auto_accept_pays_every_worker_once(market):
    before = {n: await market.free(n) for n in ("Bob", "Charlie")}
    with capture_logs() as logs:
        market.creator([task_decl("auto", market.assets(), max_assignments=2)])
        bob, charlie = await market.worker("Bob"), await market.worker("Charlie")
        task, subs = await market.settle("auto", decided(2))
        await bob.wait_step("task", task.task_id, "submitted")
        await charlie.wait_step("task", task.task_id, "submitted")
    assert {s.status for s in subs} == {SubmissionStatus.ACCEPTED} and all(s.paid_amount == PAYS for s in subs)
    for name in ("Bob", "Charlie"):
        gained = await market.free(name) - before[name]
        assert PAYS - 10**9 < gained < PAYS  # paid once, minus two fees
    assert events(logs, "task_published", name="auto", task_id=task.task_id)
    assert len(events(logs, "task_claimed", task_id=task.task_id)) == 2
    assert len(events(logs, "task_submitted", task_id=task.task_id)) == 2
    accepted = events(logs, "result_accepted", task_id=task.task_id)
    assert sorted(e["submission_id"] for e in accepted) == sorted(s.submission_id for s in subs)
    assert len(events(logs, "sandbox_run", status="ok", ahead=True)) == 2  # each started at its fetch
    for worker in (bob, charlie):  # what the run cost the task, for bench/farm.py and an operator
        data = worker.entry("task", task.task_id).data
        assert 0 < data["sandbox_s"] < 5 and 0 <= data["sandbox_start_wait_s"] <= data["sandbox_s"]


async def test_a_worker_stopped_between_the_fetch_and_the_run_leaves_no_sandbox_and_resumes(market, monkeypatch):
    """The sandbox started at the fetch is ended when the task's steps stop before its run (a SIGTERM during
    the fetch); the run happens after the restart, in a sandbox started then."""
    from agents.worker import WorkerAgent

    started = []
    fetch = WorkerAgent.fetch_assets

    async def fetch_then_stop(self, task_id, data):
        await fetch(self, task_id, data)
        started.append(self._sandboxes[task_id])
        self.stopping = True  # as when a SIGTERM comes during the fetch: the step ends, the run does not start

    monkeypatch.setattr(WorkerAgent, "fetch_assets", fetch_then_stop)
    market.creator([task_decl("halted", market.assets())])
    bob = await market.worker("Bob")
    sandbox = await bob.wait_until(lambda: started and started[0].proc.returncode is not None and started[0],
                                   what="the sandbox started at the fetch ended")
    task, _ = await market.settle("halted", lambda task, subs: task is not None and subs)
    assert bob.journal()[("task", str(task.task_id))] == "fetched"
    assert sandbox.cgroup is not None and not sandbox.cgroup.dirs  # its group removed
    assert not (sandbox.task_dir / "outputs").exists()  # the script never ran
    await bob.stop()
    monkeypatch.undo()
    with capture_logs() as logs:
        bob.start()
        await bob.wait_step("task", task.task_id, "submitted")
    assert events(logs, "sandbox_run", status="ok")


async def test_policy_filters_and_the_race_for_the_last_slot(market):
    with capture_logs() as logs:
        picky = await market.worker("Eve", min_pay=PAYS * 10)
        racers = [await market.worker("Dave"), await market.worker("Ferdie")]
        market.creator([task_decl("race", market.assets(), max_assignments=1)])
        task, subs = await market.settle("race", decided(1))
        assert len(subs) == 1  # one slot, one claim
        await picky.wait_step("task", task.task_id, "skipped")
        # each racer is an engine of its own (two hosts): the loser either raced and journaled the lost race,
        # or looked when the slot was already taken and, never asked by its engine, journaled nothing
        await racers[0].wait_until(lambda: sorted(r.journal().get(("task", str(task.task_id))) or "" for r in racers)
                                   in (["lost", "submitted"], ["", "submitted"]), what="one racer submitted")
    assert "min_pay" in picky.entry("task", task.task_id).data["reason"]
    assert any("min_pay" in e["reason"] for e in events(logs, "task_skipped", task_id=task.task_id))
    assert len(events(logs, "task_lost", task_id=task.task_id)) <= 1  # a loser that raced logged it, moved on
    assert len(events(logs, "task_claimed", task_id=task.task_id)) == 1


async def test_custom_validator_rejects_with_a_reason_on_chain(market):
    with capture_logs() as logs:
        market.creator([task_decl("custom", market.assets("mkdir -p outputs; echo 'not json' > outputs/a.txt"),
                                  strategy="CustomAccept", validator="json_outputs")])
        await market.worker("Bob")
        task, subs = await market.settle("custom", decided(1))
    assert subs[0].status == SubmissionStatus.REJECTED and subs[0].paid_amount is None
    (rejected,) = events(logs, "result_rejected", submission_id=subs[0].submission_id)
    assert rejected["reason"] and not events(logs, "result_accepted")


async def test_manual_review_auto_approves_after_the_delay(market):
    with capture_logs() as logs:
        market.creator([task_decl("manual", market.assets(), strategy="ManualAccept")],
                       review={"auto_approve_after_s": 2})
        await market.worker("Charlie")
        task, subs = await market.settle("manual", decided(1))
    assert subs[0].status == SubmissionStatus.ACCEPTED
    sid = subs[0].submission_id
    assert events(logs, "result_waiting_for_review", submission_id=sid)
    assert events(logs, "result_auto_approved", submission_id=sid, after_s=2)


async def test_a_hostile_script_fails_its_task_and_nothing_is_submitted(market):
    with capture_logs() as logs:
        market.creator([task_decl("hostile", market.assets("while true; do :; done"))])
        eve = await market.worker("Eve", sandbox={"timeout_s": 1})  # the busy loop runs until it: 1 s shows it
        task, subs = await market.settle("hostile", lambda t, s: len(s) == 1)
        await eve.wait_step("task", task.task_id, "failed")
    assert "timed out" in eve.entry("task", task.task_id).data["error"]
    _, subs = await market.settle("hostile", lambda t, s: True)
    assert subs[0].status == SubmissionStatus.ASSIGNED  # never submitted
    (failed,) = events(logs, "task_script_failed", task_id=task.task_id)
    assert failed["status"] == "timeout", failed
    assert not events(logs, "task_submitted")


@pytest.mark.parametrize("role,task_type,assets_dir,key,expected", [
    ("engineer", "ModelEngineer", "model_engineer", "Eve", "model_int8.npz"),
])  # model contributors: tests/test_federated_agents.py
async def test_model_roles_run_their_example_tasks(market, tmp_path, role, task_type, assets_dir, key, expected):
    from decentralml_core.storage import LocalStore, get_folder

    market.creator([task_decl(f"{role}-task", Path(__file__).parents[1] / "assets" / assets_dir,
                              task_type=task_type)])
    agent = market.agent(role, {"role": role, "key": {"dev": key}, "policy": {"min_blocks_left": 0},
                                "sandbox": {"timeout_s": 60, "share_python": True}})
    with capture_logs() as logs:
        await agent.start().wait_ready()
        task, subs = await market.settle(f"{role}-task", decided(1), timeout=90)
    assert subs[0].status == SubmissionStatus.ACCEPTED and task.task_type == task_type
    result = await get_folder(LocalStore(market.store), subs[0].result_path, tmp_path / "result")
    assert sorted(p.name for p in result.iterdir()) == sorted(["metrics.json", expected])
    assert json.loads((result / "metrics.json").read_text())
    assert events(logs, "sandbox_run", status="ok")


async def test_restarts_at_the_money_steps_never_pay_or_submit_twice(market):
    """A crash right after the chain call but before the journal recorded it: the journal says
    "paying" / "uploaded" although the chain already has the payment / the result."""
    boss = market.creator([task_decl("twice", market.assets())])
    bob = await market.worker("Bob")
    task, subs = await market.settle("twice", decided(1))
    sid = subs[0].submission_id
    await boss.wait_step("submission", sid, "paid")
    await bob.wait_step("task", task.task_id, "submitted")
    await boss.stop()
    await bob.stop()
    for agent, kind, key, step in ((boss, "submission", sid, "paying"), (bob, "task", task.task_id, "uploaded")):
        journal = Journal(agent.state / "journal.sqlite")
        journal.set(kind, key, step)
        journal.close()
    paid_before = await market.free("Bob")
    with capture_logs() as logs:
        boss.start()
        bob.start()
        await boss.wait_step("submission", sid, "paid")
        await bob.wait_step("task", task.task_id, "submitted")
    _, subs = await market.settle("twice", decided(1))
    assert len(subs) == 1 and subs[0].status == SubmissionStatus.ACCEPTED
    assert await market.free("Bob") == paid_before  # neither paid again nor another submission fee
    assert events(logs, "task_already_submitted", task_id=task.task_id, submission_id=sid)  # not sent again
    assert not events(logs, "result_accepted")  # the creator read the payment on chain, journaled it, paid nothing


async def test_creator_closes_an_expired_task_and_reclaims_the_escrow(market):
    with capture_logs() as logs:
        boss = market.creator([task_decl("expiring", market.assets(), max_assignments=3, expires_in=4)])
        await market.worker("Charlie")  # takes one of the three slots; the other two expire unused
        task, subs = await market.settle("expiring", decided(1))
        await advance(market, 6)
        await boss.wait_step("published", "expiring", "closed")
    assert boss.entry("published", "expiring").data["refunded"] == 2 * PAYS
    task, _ = await market.settle("expiring", lambda t, s: True)
    assert task.status == "Completed"
    assert events(logs, "task_closed", task_id=task.task_id, refunded=2 * PAYS)


async def test_tasks_with_unusable_assets_are_skipped(market):
    """Malformed chain data: no assets folder, or a script name that would leave the work dir."""
    from decentralml_core.chain.model import AnnotationType, StorageType, TaskSpec, TaskType, ValidationStrategy

    dave = await market.worker("Dave")

    async def publish(annotation_json: str) -> int:
        spec = TaskSpec(task_type=TaskType.DATA_ANNOTATORS, question="q", pays_amount=PAYS,
                        expiration_block=await market.client.block_number() + 100, max_assignments=1,
                        validation_strategy=ValidationStrategy.AUTO_ACCEPT, annotation_type=AnnotationType.IMAGE,
                        annotation_files=["a.jpg"], annotation_files_storage_type=StorageType.IPFS,
                        annotation_json=annotation_json)
        task_id, _ = await Market(market.client).create_task(Keypair.create_from_uri("//Alice"), spec)
        return task_id

    cid = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    with capture_logs() as logs:
        cases = {await publish("not json {"): "names no assets folder",
                 await publish(json.dumps({"assets": cid, "script": "../../bin/evil"})): "unusable assets"}
        for task_id, reason in cases.items():
            await dave.wait_step("task", task_id, "skipped", timeout=20)
            assert reason in dave.entry("task", task_id).data["reason"]
    assert dave.running  # still running
    for task_id, reason in cases.items():
        assert any(reason in e["reason"] for e in events(logs, "task_skipped", task_id=task_id)), logs


async def test_a_result_in_review_when_its_task_expires_is_still_decided_and_paid(market):
    """Closing an expired task keeps a pending result's pay in escrow; the creator must still decide it."""
    with capture_logs() as logs:
        boss = market.creator([task_decl("late", market.assets(), strategy="ManualAccept", expires_in=6)],
                              review={"auto_approve_after_s": 6})
        await market.worker("Charlie")
        task, subs = await market.settle("late", lambda t, s: s and s[0].status == "PendingValidation")
        await advance(market, 8)
        await boss.wait_step("published", "late", "closed")
        task, subs = await market.settle("late", decided(1), timeout=40)
    assert subs[0].status == SubmissionStatus.ACCEPTED and subs[0].paid_amount == PAYS
    assert events(logs, "task_closed", task_id=task.task_id)
    assert events(logs, "result_auto_approved", submission_id=subs[0].submission_id)


async def test_an_agent_started_before_its_node_waits_for_it(tmp_path):
    """A host's boot order or a node restarting: the agent says the node is unreachable and starts
    once it answers, instead of exiting (found by make faults: every agent starting during a devnet
    restart exited and needed its supervisor)."""
    devnet = InProcessDevnet()  # not started: dialling it fails as a closed port does
    agent = InProcessAgent(tmp_path, "early", {"role": "annotator", "key": {"dev": "Bob"},
                                               "storage": {"root": str(tmp_path / "store")}}, devnet)
    try:
        with capture_logs() as logs:
            agent.start()
            await agent.wait_until(lambda: events(logs, "node_unreachable"), what="said the node is unreachable")
            await devnet.start()
            await agent.wait_ready()
            await agent.stop()
        (unreachable, *_) = events(logs, "node_unreachable", node=devnet.url)
        assert unreachable["retry_in_s"] == 1.0
        assert events(logs, "agent_running") and events(logs, "agent_exited")
    finally:
        if agent.running:
            agent.task.cancel()
        await devnet.__aexit__(None, None, None)



async def test_a_worker_that_cannot_pay_fees_says_so_once_and_waits(market, monkeypatch):
    """An unfunded worker logs ``account_cannot_pay_fees`` once (not once per poll of its balance), fails
    nothing, and takes the task once funded. Counted in balance polls (sped up to 0.5 s), not a fixed
    sleep (this test ran as an agent process with 12 s of sleep, 22–30 s under load)."""
    from agents import worker as worker_module
    from decentralml_core.chain import ChainClient

    monkeypatch.setattr(worker_module, "FUNDS_POLL_S", 0.5)
    monkeypatch.setenv("UNFUNDED_KEY", "//unfunded-worker")
    address = Keypair.create_from_uri("//unfunded-worker").ss58_address
    polls: list[str] = []
    free_balance = ChainClient.free_balance

    async def counted(client, who: str) -> int:
        if who == address:
            polls.append(who)
        return await free_balance(client, who)

    monkeypatch.setattr(ChainClient, "free_balance", counted)
    with capture_logs() as logs:
        poor = market.agent("poor", {"role": "annotator", "key": {"env": "UNFUNDED_KEY"},
                                     "policy": {"min_blocks_left": 0}, "sandbox": {"timeout_s": 5}}).start()
        await poor.wait_ready()
        market.creator([task_decl("for the poor worker", market.assets())])
        await poor.wait_until(lambda: events(logs, "account_cannot_pay_fees"), 60, "never said it cannot pay fees")
        polled = len(polls)
        await poor.wait_until(lambda: len(polls) >= polled + 2, 30, "two more polls of its balance")
        assert len(events(logs, "account_cannot_pay_fees")) == 1
        assert not events(logs, "task_failed")
        await market.client.submit(Keypair.create_from_uri("//Alice"), "Balances", "transfer_keep_alive",
                                   {"dest": address, "value": 10**12})
        await poor.wait_until(lambda: events(logs, "account_funded"), 60, "never saw its funds")
        await poor.wait_until(lambda: events(logs, "task_submitted"), 60, "never submitted once funded")
    assert len(events(logs, "account_cannot_pay_fees")) == 1 and not events(logs, "task_failed")


async def test_a_fetch_taken_again_keeps_one_sandbox_for_its_task(market, monkeypatch):
    """A step can be taken again (a retry after the node went away): the sandbox the first fetch started is
    ended when the second starts another, and the task runs in the second."""
    from agents.worker import WorkerAgent

    started = []
    fetch = WorkerAgent.fetch_assets

    async def fetch_twice(self, task_id, data):
        for _ in range(2):
            await fetch(self, task_id, data)
            started.append(self._sandboxes[task_id])

    monkeypatch.setattr(WorkerAgent, "fetch_assets", fetch_twice)
    market.creator([task_decl("twice-fetched", market.assets())])
    bob = await market.worker("Bob")
    task, _ = await market.settle("twice-fetched", lambda task, subs: task is not None and subs)
    await bob.wait_step("task", task.task_id, "submitted")
    first, second = started
    assert first is not second and first.proc.returncode is not None and not first.cgroup.dirs
    assert second.used and second.proc.returncode == 0  # the one that ran the script
