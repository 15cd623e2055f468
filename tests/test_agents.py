"""Agents as an operator runs them: real devnet, real agent processes, real sandbox.

Each test writes YAML configs, starts `decentralml agent run` processes, and watches the chain and
the agents' journals until the market settles — then stops every agent with SIGTERM (exit 0).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from agent_process import CLI, PAYS, Agent, decided, free, settle, task_decl
from devnet_process import free_port
from substrateinterface import Keypair

from agents.journal import Journal
from decentralml_core.chain import ChainClient
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import SubmissionStatus
from decentralml_core.sandbox import bubblewrap_works

pytestmark = pytest.mark.skipif(not bubblewrap_works(), reason="agents run task scripts in bubblewrap")
GOOD_SCRIPT = "mkdir -p outputs\nfor f in annotation_files/*; do echo '{\"file\": \"'$f'\"}' > outputs/$(basename $f).json; done\n"


@pytest.fixture
def market_setup(devnet, tmp_path):
    """Builders for assets, a creator and workers on this test's scratch dir; stops them all at the end."""
    started: list[Agent] = []
    store = str(tmp_path / "store")

    def assets(script: str = GOOD_SCRIPT) -> Path:
        folder = tmp_path / f"assets-{len(list(tmp_path.glob('assets-*')))}"
        (folder / "annotation_files").mkdir(parents=True)
        (folder / "annotation_samples").mkdir()
        (folder / "annotation_files" / "file_1.jpg").write_bytes(os.urandom(2000))
        (folder / "annotation_samples" / "sample_1.jpg").write_bytes(os.urandom(500))
        (folder / "start_task.sh").write_text(script)
        return folder

    def creator(tasks: list[dict], **extra) -> Agent:
        agent = Agent(tmp_path, "creator", {"role": "creator", "node": devnet.url, "key": {"dev": "Alice"},
                                             "storage": {"root": store}, "tasks": tasks, **extra})
        started.append(agent.start())
        return agent

    def worker(name: str, **policy) -> Agent:
        config = {"role": "annotator", "node": devnet.url, "key": {"dev": name}, "storage": {"root": store},
                  "policy": {"min_blocks_left": 0, **policy}, "sandbox": {"timeout_s": 5}}
        agent = Agent(tmp_path, name.lower(), config)
        started.append(agent.start())
        return agent.wait_ready()

    yield assets, creator, worker
    codes = {a.name: a.stop() for a in started if a.proc.poll() is None}
    assert all(code == 0 for code in codes.values()), codes


async def advance(url: str, blocks: int) -> None:
    """Seal ``blocks`` blocks (instant seal: one per extrinsic) with remarks from //Ferdie."""
    async with await ChainClient.connect(url) as client:
        for i in range(blocks):
            await client.submit(Keypair.create_from_uri("//Ferdie"), "System", "remark", {"remark": f"0x{i:02x}"})


def test_auto_accept_pays_every_worker_once(devnet, market_setup):
    assets, creator, worker = market_setup
    before = {n: free(devnet.url, n) for n in ("Bob", "Charlie")}
    creator([task_decl("auto", assets(), max_assignments=2)])
    bob, charlie = worker("Bob"), worker("Charlie")
    task, subs = asyncio.run(settle(devnet.url, "auto", decided(2)))
    assert {s.status for s in subs} == {SubmissionStatus.ACCEPTED} and all(s.paid_amount == PAYS for s in subs)
    for name in ("Bob", "Charlie"):
        gained = free(devnet.url, name) - before[name]
        assert PAYS - 10**9 < gained < PAYS  # paid once, minus two fees
    assert bob.journal()[("task", str(task.task_id))] == "submitted"
    assert charlie.journal()[("task", str(task.task_id))] == "submitted"


def test_policy_filters_and_the_race_for_the_last_slot(devnet, market_setup):
    assets, creator, worker = market_setup
    picky = worker("Eve", min_pay=PAYS * 10)
    racers = [worker("Dave"), worker("Ferdie")]
    creator([task_decl("race", assets(), max_assignments=1)])
    task, subs = asyncio.run(settle(devnet.url, "race", decided(1)))
    assert len(subs) == 1  # one slot, one claim
    time.sleep(1)
    assert picky.journal()[("task", str(task.task_id))] == "skipped"
    assert "min_pay" in picky.entry("task", task.task_id).data["reason"]
    steps = sorted(r.journal().get(("task", str(task.task_id))) for r in racers)
    assert steps == ["lost", "submitted"], steps  # the loser logged the lost race and moved on


def test_custom_validator_rejects_with_a_reason_on_chain(devnet, market_setup):
    assets, creator, worker = market_setup
    creator([task_decl("custom", assets("mkdir -p outputs; echo 'not json' > outputs/a.txt"),
                       strategy="CustomAccept", validator="json_outputs")])
    worker("Bob")
    task, subs = asyncio.run(settle(devnet.url, "custom", decided(1)))
    assert subs[0].status == SubmissionStatus.REJECTED and subs[0].paid_amount is None


def test_manual_review_auto_approves_after_the_delay(devnet, market_setup):
    assets, creator, worker = market_setup
    creator([task_decl("manual", assets(), strategy="ManualAccept")], review={"auto_approve_after_s": 2})
    worker("Charlie")
    task, subs = asyncio.run(settle(devnet.url, "manual", decided(1)))
    assert subs[0].status == SubmissionStatus.ACCEPTED


def test_a_hostile_script_fails_its_task_and_nothing_is_submitted(devnet, market_setup):
    assets, creator, worker = market_setup
    creator([task_decl("hostile", assets("while true; do :; done"))])
    eve = worker("Eve")
    task, subs = asyncio.run(settle(devnet.url, "hostile", lambda t, s: len(s) == 1))
    deadline = time.monotonic() + 30
    while eve.journal().get(("task", str(task.task_id))) != "failed":
        assert time.monotonic() < deadline, eve.journal()
        time.sleep(0.3)
    assert "timed out" in eve.entry("task", task.task_id).data["error"]
    _, subs = asyncio.run(settle(devnet.url, "hostile", lambda t, s: True))
    assert subs[0].status == SubmissionStatus.ASSIGNED  # never submitted


def test_kill_9_mid_task_resumes_and_is_paid_once(devnet, market_setup):
    assets, creator, worker = market_setup
    creator([task_decl("crash", assets("sleep 4\n" + GOOD_SCRIPT))])  # caught mid-run (timeout_s 5)
    ferdie = worker("Ferdie")
    before = free(devnet.url, "Ferdie")
    deadline = time.monotonic() + 30
    # watch the journal alone (a chain read first could outlast the 2 s script on a loaded machine)
    while not {"fetched", "ran", "uploaded"} & {step for (kind, _), step in ferdie.journal().items() if kind == "task"}:
        assert time.monotonic() < deadline, ferdie.journal()
        time.sleep(0.05)
    assert ferdie.stop(signal.SIGKILL) == -signal.SIGKILL
    ferdie.start()  # same state dir: resumes from the journal
    task, subs = asyncio.run(settle(devnet.url, "crash", decided(1)))
    assert len(subs) == 1 and subs[0].status == SubmissionStatus.ACCEPTED
    assert ferdie.journal()[("task", str(task.task_id))] == "submitted"
    assert PAYS - 10**9 < free(devnet.url, "Ferdie") - before < PAYS


def test_config_errors_stop_start_up_with_the_key_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("role: annotator\nkey: {dev: Bob}\nstate_dir: s\npolicy: {max_concurrent: 0}\n")
    out = subprocess.run([CLI, "agent", "run", str(bad)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "policy.max_concurrent" in out.stderr
    bad.write_text("role: annotator\nkey: {dev: Bob}\nstate_dir: s\nsandbox: {timeout: 5}\n")
    out = subprocess.run([CLI, "agent", "check", str(bad)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "sandbox.timeout" in out.stderr and "Extra inputs" in out.stderr


def test_review_queue_metrics_and_status(devnet, market_setup, tmp_path):
    assets, creator, worker = market_setup
    boss = creator([task_decl("review", assets(), strategy="ManualAccept")], metrics_port=free_port())
    worker("Dave")
    task, subs = asyncio.run(settle(devnet.url, "review", lambda t, s: s and s[0].status == "PendingValidation"))
    sid = subs[0].submission_id
    deadline = time.monotonic() + 20
    while boss.journal().get(("submission", str(sid))) != "review":
        assert time.monotonic() < deadline, boss.journal()
        time.sleep(0.2)
    listed = json.loads(subprocess.run([CLI, "review", "list", "--config", str(boss.path), "--json"],
                                       capture_output=True, text=True, timeout=60).stdout)
    assert [r["submission_id"] for r in listed] == [sid]
    out = subprocess.run([CLI, "review", "accept", str(sid), "--config", str(boss.path), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout) == {"accepted": [sid]}, out.stderr
    asyncio.run(settle(devnet.url, "review", decided(1)))
    while boss.journal().get(("submission", str(sid))) != "paid":  # the agent notices on its next sweep
        assert time.monotonic() < deadline + 20
        time.sleep(0.2)
    port = yaml.safe_load(boss.path.read_text())["metrics_port"]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'decentralml_tasks_published_total{role="creator",worker="creator"} 1.0' in metrics
    assert 'decentralml_results_seen_total{role="creator",worker="creator"} 1.0' in metrics
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read())
    assert health["ok"] is True and health["role"] == "creator"
    status = json.loads(subprocess.run([CLI, "status", str(boss.state), "--json"], capture_output=True, text=True,
                                       timeout=60).stdout)
    assert {"kind": "submission", "step": "paid"}.items() <= next(r for r in status if r["kind"] == "submission").items()


@pytest.mark.parametrize("role,task_type,assets_dir,key,expected", [
    ("engineer", "ModelEngineer", "model_engineer", "Eve", "model_int8.npz"),
])  # model contributors: tests/test_federated_agents.py
def test_model_roles_run_their_example_tasks(devnet, market_setup, tmp_path, role, task_type, assets_dir, key,
                                             expected):
    from decentralml_core.storage import LocalStore, get_folder

    _, creator, _ = market_setup
    store = str(tmp_path / "store")
    creator([task_decl(f"{role}-task", Path(__file__).parents[1] / "assets" / assets_dir, task_type=task_type)])
    agent = Agent(tmp_path, role, {"role": role, "node": devnet.url, "key": {"dev": key}, "storage": {"root": store},
                                   "policy": {"min_blocks_left": 0}, "sandbox": {"timeout_s": 60, "share_python": True}})
    agent.start().wait_ready()
    try:
        task, subs = asyncio.run(settle(devnet.url, f"{role}-task", decided(1), timeout=90))
        assert subs[0].status == SubmissionStatus.ACCEPTED and task.task_type == task_type
        result = asyncio.run(get_folder(LocalStore(store), subs[0].result_path, tmp_path / "result"))
        assert sorted(p.name for p in result.iterdir()) == sorted(["metrics.json", expected])
        assert json.loads((result / "metrics.json").read_text())
    finally:
        assert agent.stop() == 0


def test_restarts_at_the_money_steps_never_pay_or_submit_twice(devnet, market_setup):
    """A crash right after the chain call but before the journal recorded it: the journal says
    "paying" / "uploaded" although the chain already has the payment / the result."""
    assets, creator, worker = market_setup
    boss = creator([task_decl("twice", assets())])
    bob = worker("Bob")
    task, subs = asyncio.run(settle(devnet.url, "twice", decided(1)))
    sid = subs[0].submission_id
    deadline = time.monotonic() + 20
    while boss.journal().get(("submission", str(sid))) != "paid":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert boss.stop() == 0 and bob.stop() == 0
    for agent, kind, key, step in ((boss, "submission", sid, "paying"), (bob, "task", task.task_id, "uploaded")):
        journal = Journal(agent.state / "journal.sqlite")
        journal.set(kind, key, step)
        journal.close()
    paid_before = free(devnet.url, "Bob")
    boss.start()
    bob.start()
    deadline = time.monotonic() + 30
    while (boss.journal().get(("submission", str(sid))), bob.journal().get(("task", str(task.task_id)))) != \
            ("paid", "submitted"):
        assert time.monotonic() < deadline, (boss.journal(), bob.journal())
        time.sleep(0.2)
    _, subs = asyncio.run(settle(devnet.url, "twice", decided(1)))
    assert len(subs) == 1 and subs[0].status == SubmissionStatus.ACCEPTED
    assert free(devnet.url, "Bob") == paid_before  # neither paid again nor another submission fee


def test_creator_closes_an_expired_task_and_reclaims_the_escrow(devnet, market_setup):
    assets, creator, worker = market_setup
    boss = creator([task_decl("expiring", assets(), max_assignments=3, expires_in=4)])
    worker("Charlie")  # takes one of the three slots; the other two expire unused
    task, subs = asyncio.run(settle(devnet.url, "expiring", decided(1)))

    asyncio.run(advance(devnet.url, 6))
    deadline = time.monotonic() + 30
    while boss.journal().get(("published", "expiring")) != "closed":
        assert time.monotonic() < deadline, boss.journal()
        time.sleep(0.3)
    assert boss.entry("published", "expiring").data["refunded"] == 2 * PAYS
    task, _ = asyncio.run(settle(devnet.url, "expiring", lambda t, s: True))
    assert task.status == "Completed"


def test_tasks_with_unusable_assets_are_skipped(devnet, market_setup):
    """Malformed chain data: no assets folder, or a script name that would leave the work dir."""
    from decentralml_core.chain.model import AnnotationType, StorageType, TaskSpec, TaskType, ValidationStrategy

    _, _, worker = market_setup
    dave = worker("Dave")

    async def publish(annotation_json: str) -> int:
        async with await ChainClient.connect(devnet.url) as client:
            spec = TaskSpec(task_type=TaskType.DATA_ANNOTATORS, question="q", pays_amount=PAYS,
                            expiration_block=await client.block_number() + 100, max_assignments=1,
                            validation_strategy=ValidationStrategy.AUTO_ACCEPT, annotation_type=AnnotationType.IMAGE,
                            annotation_files=["a.jpg"], annotation_files_storage_type=StorageType.IPFS,
                            annotation_json=annotation_json)
            task_id, _ = await Market(client).create_task(Keypair.create_from_uri("//Alice"), spec)
            return task_id

    cid = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    cases = {asyncio.run(publish("not json {")): "names no assets folder",
             asyncio.run(publish(json.dumps({"assets": cid, "script": "../../bin/evil"}))): "unusable assets"}
    deadline = time.monotonic() + 20
    for task_id, reason in cases.items():
        while dave.journal().get(("task", str(task_id))) != "skipped":
            assert time.monotonic() < deadline, dave.journal()
            time.sleep(0.2)
        assert reason in dave.entry("task", task_id).data["reason"]
    assert dave.proc.poll() is None  # still running


def test_a_result_in_review_when_its_task_expires_is_still_decided_and_paid(devnet, market_setup):
    """Closing an expired task keeps a pending result's pay in escrow; the creator must still decide it."""
    assets, creator, worker = market_setup
    boss = creator([task_decl("late", assets(), strategy="ManualAccept", expires_in=6)],
                   review={"auto_approve_after_s": 6})
    worker("Charlie")
    task, subs = asyncio.run(settle(devnet.url, "late", lambda t, s: s and s[0].status == "PendingValidation"))

    asyncio.run(advance(devnet.url, 8))
    deadline = time.monotonic() + 30
    while boss.journal().get(("published", "late")) != "closed":
        assert time.monotonic() < deadline, boss.journal()
        time.sleep(0.3)
    task, subs = asyncio.run(settle(devnet.url, "late", decided(1), timeout=40))
    assert subs[0].status == SubmissionStatus.ACCEPTED and subs[0].paid_amount == PAYS


def test_an_agent_started_before_its_node_waits_for_it(tmp_path):
    """A host's boot order or a node restarting: the agent says the node is unreachable and starts
    once it answers, instead of exiting (found by make faults: every agent starting during a devnet
    restart exited and needed its supervisor)."""
    from devnet_process import DevnetProcess

    port = free_port()
    agent = Agent(tmp_path, "early", {"role": "annotator", "node": f"ws://127.0.0.1:{port}", "key": {"dev": "Bob"},
                                      "storage": {"root": str(tmp_path / "store")}}).start()
    try:
        agent.wait_log("node_unreachable")
        with DevnetProcess(port=port):
            agent.wait_ready()
            assert agent.stop() == 0
    finally:
        if agent.proc.poll() is None:
            agent.proc.kill()


def test_an_agent_waiting_for_its_node_stops_on_sigterm(tmp_path):
    agent = Agent(tmp_path, "waiting", {"role": "annotator", "node": f"ws://127.0.0.1:{free_port()}",
                                        "key": {"dev": "Bob"}, "storage": {"root": str(tmp_path / "store")}}).start()
    assert agent.wait_log("node_unreachable").stop() == 0, agent.log.read_text()[-2000:]


def test_a_full_disk_under_the_state_dir_is_one_clear_line(devnet, tmp_path):
    """Nothing can be journaled, so nothing is done: the agent exits 1 with one line naming the journal
    (its supervisor restarts it once there is room; make faults fills a worker's disk mid-run)."""
    agent = Agent(tmp_path, "full", {"role": "annotator", "node": devnet.url, "key": {"dev": "Bob"},
                                     "storage": {"root": str(tmp_path / "store")}})
    agent.state.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(agent.state)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={agent.state / 'filler'}", "bs=4k"], capture_output=True)
        assert agent.start().proc.wait(timeout=90) == 1
        log = agent.log.read_text()
        assert f"decentralml agent run: the journal in {agent.state}" in log and "Traceback" not in log, log[-2000:]
    finally:
        subprocess.run(["umount", "-l", str(agent.state)])
