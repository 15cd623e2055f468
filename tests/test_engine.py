"""The farm engine: one process, one chain connection, several worker accounts, on a real devnet with
real sandboxes. Workers of one host never race each other (no ``lost`` journal row, no claim refused on
chain), a task's assets are fetched once per host, and /metrics labels every series by worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from agent_process import CLI, Agent, decided, make_assets, settle, settle_on, task_decl, wait_for
from agents_inprocess import InProcessAgent
from devnet_process import free_port
from structlog.testing import capture_logs
from substrateinterface import Keypair

from agents.config import validate_config
from agents.engine import Engine
from agents.journal import Journal
from agents.metrics import Metrics
from agents.rendezvous import RANKS_WAITED, ClaimLedger, grace_for, rendezvous_score
from agents.runtime import run_engine
from agents.worker import WorkerAgent
from decentralml_core.chain import ChainClient, Checkpoint
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import (
    AnnotationType,
    ResultSpec,
    StorageType,
    SubmissionStatus,
    TaskSpec,
    TaskTerms,
    TaskType,
    ValidationStrategy,
)
from decentralml_core.chain.runtime import Event
from decentralml_core.devnet.inprocess import InProcessDevnet
from decentralml_core.sandbox import bubblewrap_works

WORKERS = 4


def test_rendezvous_grace_orders_hosts_the_same_everywhere():
    addresses = [Keypair.create_from_uri(f"//Alice//rv/{i}").ss58_address for i in range(8)]
    for task_id in range(20):
        best = max(addresses, key=lambda a: rendezvous_score(task_id, a))
        assert grace_for(task_id, best, addresses, 0.5) == 0  # the best-ranked worker's host claims at once
        waits = sorted(grace_for(task_id, a, addresses, 0.5) for a in addresses)
        assert waits[:RANKS_WAITED + 1] == [0.0, 0.5, 1.0, 1.5] and waits[-1] == 0.5 * RANKS_WAITED
        assert all(grace_for(task_id, a, addresses, 0) == 0 for a in addresses)  # 0: race as before


def journals(state: Path) -> dict[str, list]:
    found = {}
    for path in sorted(state.glob("annotator-*/journal.sqlite")):
        journal = Journal(path)
        try:
            found[path.parent.name] = journal.entries("task")
        finally:
            journal.close()
    return found


@pytest.mark.skipif(not bubblewrap_works(), reason="agents run task scripts in bubblewrap")
def test_one_engine_gives_each_slot_to_one_of_its_workers(devnet, tmp_path):
    folder = tmp_path / "assets"
    (folder / "annotation_files").mkdir(parents=True)
    (folder / "annotation_files" / "file_1.jpg").write_bytes(os.urandom(1000))
    (folder / "start_task.sh").write_text("mkdir -p outputs\necho '{}' > outputs/result.json\n")
    keys = [Keypair.create_from_uri(f"//Dave//engine/{i}") for i in range(WORKERS)]

    async def fund():
        async with await ChainClient.connect(devnet.url) as client:
            await asyncio.gather(*[client.submit(Keypair.create_from_uri("//Dave"), "Balances", "transfer_keep_alive",
                                                 {"dest": k.ss58_address, "value": 10**15}) for k in keys])
    asyncio.run(fund())
    store = str(tmp_path / "store")
    port = free_port()
    farm = tmp_path / "farm.yaml"
    farm.write_text(yaml.safe_dump({
        "state_root": "state", "metrics_base_port": port, "defaults": {"node": devnet.url, "storage": {"root": store}},
        "agents": {"annotator": {"count": WORKERS, "overrides": {
            "role": "annotator", "key": {"dev": "Dave", "derive": "//engine/{index}"},
            "policy": {"min_blocks_left": 0, "max_concurrent": 2}, "sandbox": {"timeout_s": 20}}}}}))
    with open(tmp_path / "engine.log", "wb") as log:
        engine = subprocess.Popen([CLI, "--log-json", "farm", "engine", str(farm)], stdout=log, stderr=log)
    creator = None
    try:
        wait_for(lambda: all(Journal(p).meta("checkpoint") for p in (tmp_path / "state").glob("*/journal.sqlite"))
                 and len(list((tmp_path / "state").glob("*/journal.sqlite"))) == WORKERS, timeout=90,
                 what="every worker of the engine started")
        # 6 tasks of one slot, 2 of three slots: 12 slots for 4 workers
        tasks = [task_decl(f"eng-{i}", folder) for i in range(6)]
        tasks += [task_decl(f"eng-multi-{i}", folder, max_assignments=3) for i in range(2)]
        creator = Agent(tmp_path, "creator", {"role": "creator", "node": devnet.url, "key": {"dev": "Alice"},
                                              "storage": {"root": store}, "tasks": tasks}).start()
        for decl in tasks:
            _, subs = asyncio.run(settle(devnet.url, decl["name"], lambda t, s, n=decl["max_assignments"]: len(
                [x for x in s if x.status == SubmissionStatus.ACCEPTED]) == n, timeout=120))
            assert len({s.worker for s in subs}) == len(subs)  # three slots went to three different workers

        rows = journals(tmp_path / "state")
        steps = [e.step for entries in rows.values() for e in entries]
        assert steps.count("submitted") == 12 and "lost" not in steps and "failed" not in steps
        assert sum(1 for entries in rows.values() if any(e.step == "submitted" for e in entries)) >= 3  # spread out
        assert len(list((tmp_path / "state" / ".assets").iterdir())) == 1  # one assets folder, fetched once

        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        claimed = [line for line in page.splitlines() if line.startswith("decentralml_tasks_claimed_total{")]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in claimed) == 12
        assert {'worker="annotator-0"' in page, "process_resident_memory_bytes" in page,
                "decentralml_created_to_claimed_seconds_bucket" in page,
                "decentralml_submitted_to_paid_seconds_count" in page} == {True}
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read())
        assert health["ok"] and sorted(health["workers"]) == [f"annotator-{i}" for i in range(WORKERS)]
        log_text = (tmp_path / "engine.log").read_text()
        assert log_text.count('"event": "worker_started"') == WORKERS and "payment_claim_refused" not in log_text
    finally:
        for proc in (engine, creator.proc if creator else None):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        assert engine.wait(timeout=60) == 0
        if creator:
            creator.proc.wait(timeout=60)


async def run_hosts(tmp_path: Path, running: int, hosts: int, per_host: int, n_tasks: int, grace_s: float):
    """``hosts`` engines of ``per_host`` annotators (max_concurrent 1) listing one another's workers as
    peers, of which the first ``running`` run (the others are hosts that are down), on a devnet in this
    event loop sealing a block every 0.3 s; a burst of ``n_tasks`` one-slot tasks. Returns the log
    events, each task's holder on chain, and the worker keys by host."""
    async with InProcessDevnet(block_time=0.3) as devnet:
        client = await devnet.client()
        try:
            keys = [[Keypair.create_from_uri(f"//Dave//rv/{h}/{i}") for i in range(per_host)] for h in range(hosts)]
            await asyncio.gather(*[client.submit(Keypair.create_from_uri("//Dave"), "Balances", "transfer_keep_alive",
                                                 {"dest": k.ss58_address, "value": 10**15}) for row in keys for k in row])
            store = str(tmp_path / "store")
            everyone = {k.ss58_address: None for row in keys for k in row}
            configs = [[(f"annotator-{i}", validate_config({
                "role": "annotator", "node": devnet.url, "key": {"dev": "Dave", "derive": f"//rv/{h}/{i}"},
                "state_dir": str(tmp_path / f"host-{h}" / f"annotator-{i}"), "storage": {"root": store},
                "policy": {"min_blocks_left": 0, "max_concurrent": 1}, "sandbox": {"timeout_s": 20}}))
                for i in range(per_host)] for h in range(running)]
            stop = asyncio.Event()
            with capture_logs() as logs:
                engines = [asyncio.create_task(run_engine(configs[h], None, grace_s=grace_s, peers=everyone, stop=stop,
                                                          asset_root=tmp_path / f"host-{h}" / ".assets",
                                                          dial=devnet.dial)) for h in range(running)]
                for _ in range(600):
                    if sum(e["event"] == "worker_started" for e in logs) == running * per_host and all(
                            (tmp_path / f"host-{h}" / f"annotator-{i}" / "journal.sqlite").exists()
                            for h in range(running) for i in range(per_host)):
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1)  # the engines follow the chain
                creator = InProcessAgent(tmp_path, "creator", {
                    "role": "creator", "key": {"dev": "Alice"}, "storage": {"root": store},
                    "tasks": [task_decl(f"rv-{t}", make_assets(tmp_path)) for t in range(n_tasks)]}, devnet).start()
                holders = {}
                for t in range(n_tasks):
                    task, subs = await settle_on(client, f"rv-{t}", decided(1), timeout=120)
                    holders[task.task_id] = subs[0].worker
                stop.set()
                await creator.stop()
                await asyncio.gather(*engines)
        finally:
            await client.close()
    assert not [e for e in logs if e["event"] == "rendezvous_unreadable"]
    lost = [e for e in logs if e["event"] == "task_lost"]
    assert all(e["reason"] == "all assignments taken" for e in lost)  # given up before sending, never refused
    return logs, holders, keys


@pytest.mark.skipif(not bubblewrap_works(), reason="agents run task scripts in bubblewrap")
async def test_two_hosts_plan_alike_and_the_planned_host_claims_at_once(tmp_path):
    """Every task of a burst is dispatched without a grace on exactly one host — the one whose worker
    the shared plan chose — and that worker holds the task on chain; the other host waits and never
    sends a doomed claim. (Before the plan, a task whose best-ranked worker was busy had no host claim
    at once: this failed.)"""
    hosts, per_host = 2, 2
    logs, holders, keys = await run_hosts(tmp_path, hosts, hosts, per_host, n_tasks=4, grace_s=3.0)
    dispatched = [e for e in logs if e["event"] == "task_dispatched"]
    names = {f"annotator-{i}": [keys[h][i].ss58_address for h in range(hosts)] for i in range(per_host)}
    for task_id, holder in holders.items():
        at_once = [e for e in dispatched if e["task_id"] == task_id and e["grace_s"] == 0]
        assert len(at_once) == 1 and holder in names[at_once[0]["worker"]], (task_id, at_once)
        assert len([e for e in dispatched if e["task_id"] == task_id]) == hosts  # the other host waited


@pytest.mark.skipif(not bubblewrap_works(), reason="agents run task scripts in bubblewrap")
async def test_a_task_planned_to_a_host_that_is_down_is_claimed_after_the_grace(tmp_path):
    """Two hosts listed, one running: the tasks the plan gives the other host's workers wait a grace,
    then the running host claims them; every task is paid to a worker of the running host."""
    logs, holders, keys = await run_hosts(tmp_path, 1, 2, 2, n_tasks=4, grace_s=0.5)
    assert set(holders.values()) <= {k.ss58_address for k in keys[0]} and len(holders) == 4
    graces = {e["task_id"]: e["grace_s"] for e in logs if e["event"] == "task_dispatched"}
    assert sorted(graces) == sorted(holders) and any(g > 0 for g in graces.values())


@pytest.mark.skipif(not bubblewrap_works(), reason="agents run task scripts in bubblewrap")
async def test_a_contributor_task_among_annotator_peers_is_claimed_without_a_grace(tmp_path):
    """A host whose one worker is a contributor, listing another host's annotators (``role: annotator``)
    as peers, with a 5 s grace: the ModelContributor task is planned to its contributor, dispatched
    without a grace and claimed within a few blocks. Ranked among all workers (as before peers had a
    role; here: ``peer_roles`` unset), the annotators ranked ahead of it had the plan, and it waited 15 s
    (3 graces) for hosts that never claim such a task."""
    grace_s = 5.0
    annotators = [Keypair.create_from_uri(f"//Dave//types/a/{i}").ss58_address for i in range(8)]
    async with InProcessDevnet(block_time=0.3) as devnet:
        client = await devnet.client()
        try:
            await client.submit(Keypair.create_from_uri("//Dave"), "Balances", "transfer_keep_alive",
                                {"dest": Keypair.create_from_uri("//Dave//types/c").ss58_address, "value": 10**15})
            store = str(tmp_path / "store")
            config = validate_config({"role": "contributor", "node": devnet.url, "key": {"dev": "Dave", "derive": "//types/c"},
                                      "state_dir": str(tmp_path / "contributor"), "storage": {"root": store},
                                      "policy": {"min_blocks_left": 0}, "sandbox": {"timeout_s": 20}})
            contributor = config.key.load().ss58_address
            stop = asyncio.Event()
            with capture_logs() as logs:
                engine = asyncio.create_task(run_engine(
                    [("contributor", config)], None, grace_s=grace_s, peers=dict.fromkeys(annotators),
                    peer_roles=dict.fromkeys(annotators, "annotator"), stop=stop, dial=devnet.dial))
                for _ in range(200):
                    if any(e["event"] == "engine_started" for e in logs):
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1)  # the engine follows the chain
                creator = InProcessAgent(tmp_path, "creator", {
                    "role": "creator", "key": {"dev": "Alice"}, "storage": {"root": store},
                    "tasks": [task_decl("types-0", make_assets(tmp_path), task_type="ModelContributor")]}, devnet).start()
                task, subs = await settle_on(client, "types-0", decided(1), timeout=60)
                stop.set()
                await creator.stop()
                await engine
        finally:
            await client.close()
    # ranked among every worker, annotators come first for this task: the host would have waited for them
    assert grace_for(task.task_id, contributor, annotators, grace_s) >= grace_s
    assert subs[0].worker == contributor
    assert [e["grace_s"] for e in logs if e["event"] == "task_dispatched" and e["task_id"] == task.task_id] == [0]
    assert subs[0].created_block - task.creation_block <= 8  # a grace is ~17 blocks of 0.3 s (room for a loaded CI)
    assert not [e for e in logs if e["event"] == "rendezvous_unreadable"]


async def test_odd_market_events_are_passed_over_with_one_line_each(tmp_path):
    """Hostile or odd event data reaching the rendezvous ledger: one warning each, nothing tracked, the
    engine's handler returns normally."""
    peer = Keypair.create_from_uri("//Dave//odd/peer").ss58_address
    async with InProcessDevnet() as devnet:
        client = await devnet.client()
        journal = Journal(tmp_path / "journal.sqlite")
        try:
            config = validate_config({"role": "annotator", "node": devnet.url, "key": {"dev": "Dave", "derive": "//odd"},
                                      "state_dir": str(tmp_path / "annotator")})
            worker = WorkerAgent(config, client, journal, Metrics("annotator", "annotator"))
            engine = Engine(client, [worker], Metrics("engine", "engine"), grace_s=1.0, peers={peer: 2})

            def event(name, attributes):
                return Event(7, "0x" + "00" * 32, 0, 1, "DecentralMLModule", name, lambda: attributes)

            with capture_logs() as logs:
                await engine.track(event("TaskAssigned", {"task_id": "x", "submission_index": 1}))
                await engine.track(event("TaskAssigned", {"task_id": 1, "submission_index": 99}))  # no such submission
                await engine.track(event("TaskAssigned", {"task_id": 1, "submission_index": 2**40}))  # not a u32
                await engine.track(event("TaskResultSubmitted", None))
                await engine.track(event("TaskClosed", {"task_id": [1]}))
                await engine.track(event("AssignmentAbandoned", {"submission_id": 10**30}))
                assert await engine.handle(event("TaskCreated", {"taskid": 10**6})) is True  # no such task
        finally:
            journal.close()
            await client.close()
    unreadable = [e for e in logs if e["event"] == "rendezvous_unreadable"]
    assert [e["event"] for e in logs] == ["rendezvous_unreadable"] * 4
    assert {e["block"] for e in unreadable} == {7} and all(e["error"] for e in unreadable)
    assert engine.ledger.holder == {} and engine.ledger.plans == {} and engine.ledger.capacity == {
        peer: 2, worker.address: config.policy.max_concurrent}
    # the peer's role unset: this host's workers' one task type (they all are annotators)
    assert engine.ledger.task_types == {peer: "DataAnnotators", worker.address: "DataAnnotators"}


def seed_spec(expiration_block: int, max_assignments: int = 1) -> TaskSpec:
    return TaskSpec(task_type=TaskType.DATA_ANNOTATORS, question="seed", pays_amount=10**12,
                    expiration_block=expiration_block, max_assignments=max_assignments,
                    validation_strategy=ValidationStrategy.MANUAL_ACCEPT, annotation_type=AnnotationType.IMAGE,
                    annotation_files=["file_1.jpg"], annotation_files_storage_type=StorageType.IPFS)


async def test_a_host_started_after_assignments_exist_plans_as_one_that_saw_them(tmp_path):
    """Another host's workers hold, send, abandon and lose (closed task) assignments before this host
    starts. Started then, its ledger is seeded from the chain's state: it holds and plans exactly as an
    engine that followed every block — also when resuming from a checkpoint inside a block, and when
    the state is read at the head and the events replayed onto it. Unseeded (as before), it planned
    other workers."""
    alice, ferdie = Keypair.create_from_uri("//Alice"), Keypair.create_from_uri("//Ferdie")
    p0, p1, p2 = peers = [Keypair.create_from_uri(f"//Dave//seed/{i}") for i in range(3)]
    capacity = {p.ss58_address: 2 for p in peers}
    async with InProcessDevnet() as devnet:
        client = await devnet.client()
        journals: list[Journal] = []
        try:
            market = Market(client)

            async def advance(blocks: int) -> None:
                for i in range(blocks):
                    await client.submit(ferdie, "System", "remark", {"remark": f"0x{i:02x}"})

            async def assign(worker: Keypair, task_id: int) -> int:
                return (await market.assign_task(worker, task_id))[0]

            def engine(name: str) -> Engine:
                config = validate_config({"role": "annotator", "node": devnet.url, "key": {"dev": "Dave", "derive": "//seed/own"},
                                          "state_dir": str(tmp_path / name), "policy": {"max_concurrent": 2}})
                journals.append(Journal(tmp_path / f"{name}.sqlite"))
                worker = WorkerAgent(config, client, journals[-1], Metrics("annotator", "annotator"))
                return Engine(client, [worker], Metrics("engine", "engine"), grace_s=1.0, peers=capacity)

            async def replay(into: Engine, since: Checkpoint, head: int) -> None:
                for n in range(since.block_number, head + 1):
                    for event in await client.events_at(n):
                        if (n, event.index) > (since.block_number, since.index) and into.reads(event):
                            await into.track(event)

            await asyncio.gather(*[client.submit(Keypair.create_from_uri("//Dave"), "Balances", "transfer_keep_alive",
                                                 {"dest": p.ss58_address, "value": 10**15}) for p in peers])
            end = await client.block_number() + 1000
            t0 = (await market.create_task(alice, seed_spec(end, max_assignments=2)))[0]
            t1, t2, t5 = [(await market.create_task(alice, seed_spec(end)))[0] for _ in range(3)]
            t3 = (await market.create_task(alice, seed_spec(end), TaskTerms(submit_within=1)))[0]
            for worker, task_id in [(p0, t0), (p1, t0), (p0, t1)]:  # open
                await assign(worker, task_id)
            sent = await assign(p1, t2)
            await market.send_task_result(p1, ResultSpec(sent, result="ok"))
            await market.accept_task_result(alice, sent)  # sent, then decided
            await assign(p2, t3)
            await advance(2)  # abandoned past submit_within: the slot goes to another worker
            t4 = (await market.create_task(alice, seed_spec(await client.block_number() + 3)))[0]
            closing = await assign(p2, t4)
            await advance(3)
            await market.close_task(alice, t4)  # expired and closed: its assignment (still Assigned) ends
            for worker, task_id in [(p1, t3), (p2, t5)]:  # open
                await assign(worker, task_id)
            assert await market.open_task_ids() == []  # nothing for a fresh worker to claim
            head = await client.block_number()

            genesis = engine("genesis")  # followed every block
            await replay(genesis, Checkpoint(0), head)
            held = {p0.ss58_address: {t0, t1}, p1.ss58_address: {t0, t3}, p2.ss58_address: {t5}}
            assert {w: set(mine.values()) for w, mine in genesis.ledger.open.items() if mine} == held

            late = engine("late")  # this host's first start, after all that
            with capture_logs() as logs:
                assert await late.first_look() == (head + 1, -1)
            assert late.ledger.open == genesis.ledger.open and late.ledger.full() == {p0.ss58_address, p1.ss58_address}
            assert [(e["event"], e["block"], e["assignments"]) for e in logs] == [("rendezvous_seeded", head, 5)]

            # resumed inside a block: its state before the block, then the block's events up to the checkpoint
            (closing_event,) = [e for e in await client.events_at(
                (await market.submission(closing)).created_block) if e.name == "TaskAssigned"]
            resumed = engine("resumed")
            checkpoint = Checkpoint.after(closing_event)
            assert await resumed.seed_ledger(checkpoint) == 4 and closing in resumed.ledger.holder
            await replay(resumed, checkpoint, head)  # ... then what the stream brings: t4 closed, t3 and t5 taken
            assert resumed.ledger.open == genesis.ledger.open

            # read at the head (a node that pruned the block's state), the events replayed onto it
            at_head = engine("at_head")
            with capture_logs() as logs:
                assert await at_head.seed_ledger(Checkpoint(head + 10)) == 5  # a block the node does not have
            assert logs[0]["read_at"] == "head" and "LookupError" in logs[0]["reason"]
            await replay(at_head, Checkpoint(0), head)
            assert at_head.ledger.open == genesis.ledger.open

            unseeded, differed = ClaimLedger(late.ledger.capacity), 0
            for task_id in range(1000, 1020):  # a burst of new tasks: the same plan on both hosts
                planned = genesis.ledger.plan(task_id, 1, head)
                assert late.ledger.plan(task_id, 1, head) == planned
                differed += unseeded.plan(task_id, 1, head) != planned
            assert differed  # unseeded, it planned workers that are full

            # odd data where the open assignments are read (a node serving garbage): one line, and the engine
            # starts with the ledger unseeded, as before
            key = await client.runtime.storage_key("DecentralMLModule", "TaskResultSubmissions", [10**6])
            devnet.chain.state.put(bytes.fromhex(key.removeprefix("0x")), b"\x07")
            odd = engine("odd")
            with capture_logs() as logs:
                assert await odd.first_look() == (head + 1, -1)
            assert [(e["event"], e["market_event"]) for e in logs] == [("rendezvous_unreadable", "seed")]
            assert odd.ledger.holder == {}
        finally:
            for journal in journals:
                journal.close()
            await client.close()
