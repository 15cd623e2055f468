"""Hostile tasks, chain data and peers against real agents (in process, on the devnet's node in process:
tests/agents_inprocess.py; real sandboxes): whatever a creator puts on chain or a worker submits, the
agents contain it, say why in their journal and their log, and keep serving."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from pathlib import Path

import pytest
from agent_process import PAYS, decided, task_decl
from agents_inprocess import InProcessAgent, events, market_fixture
from structlog.testing import capture_logs
from substrateinterface import Keypair
from substrateinterface.exceptions import SubstrateRequestException

from decentralml_core import work
from decentralml_core.chain import ChainClient
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import (
    AnnotationType,
    ResultSpec,
    StorageType,
    SubmissionStatus,
    TaskSpec,
    TaskType,
    ValidationStrategy,
)
from decentralml_core.storage import LocalStore, put_blob
from decentralml_core.storage.manifest import SCHEMA

market = market_fixture()


async def wait_step(agent: InProcessAgent, kind: str, key, steps: tuple[str, ...], timeout: float = 60) -> str:
    return await agent.wait_until(lambda: (step := agent.journal().get((kind, str(key)))) in steps and step,
                                  timeout, f"{kind} {key} not at {steps}: {agent.journal()}")


HOSTILE_TIMEOUT_S = 10


async def test_a_worker_keeps_serving_while_a_hostile_task_runs(market):
    hostile = "kill -9 -1 2>/dev/null; f() { f | f & }; f & while true; do :; done"
    market.creator([task_decl("hostile", market.assets(hostile)), task_decl("good", market.assets())])
    # The hostile script runs until its timeout, which is all this test waits on; the good task is submitted
    # 1-2 s after the worker starts (at load 27 too), so 10 s keeps it well inside the hostile run (30 s before).
    worker = market.agent("bob", {"role": "annotator", "key": {"dev": "Bob"},
                                  "policy": {"min_blocks_left": 0, "max_concurrent": 2},
                                  "sandbox": {"timeout_s": HOSTILE_TIMEOUT_S, "max_procs": 64}})
    with capture_logs() as logs:
        await worker.start().wait_ready()
        bad, _ = await market.settle("hostile", lambda t, s: len(s) == 1)
        good, subs = await market.settle("good", decided(1), timeout=90)
        assert subs[0].status == SubmissionStatus.ACCEPTED
        await wait_step(worker, "task", bad.task_id, ("failed",))
    error = worker.entry("task", bad.task_id).data["error"]
    assert f"timed out after {HOSTILE_TIMEOUT_S} s" in error, error
    _, subs = await market.settle("hostile", lambda t, s: True)
    assert subs[0].status == SubmissionStatus.ASSIGNED  # nothing submitted for it
    assert events(logs, "task_script_failed", task_id=bad.task_id, status="timeout")
    assert events(logs, "task_submitted", task_id=good.task_id) and not events(logs, "task_submitted",
                                                                                task_id=bad.task_id)
    # served alongside: the good result went out while the hostile script still ran (the logs' order, not a
    # look at the journal at some moment, which a loaded machine (load 10) made later than the timeout)
    order = [(e["event"], e.get("task_id")) for e in logs]
    assert order.index(("task_submitted", good.task_id)) < order.index(("task_script_failed", bad.task_id)), order
    await worker.stop()


STORE_LIMIT_FILES = 10_000  # storage.Limits.max_files: what a worker fetches at most


async def publish_raw(client: ChainClient, tasks: list[tuple[str, dict]]) -> list[int]:
    """Tasks put on chain directly by //Alice, with whatever the fields hold (a hostile creator)."""
    expires = await client.block_number() + 500

    async def create(annotation_json: str, fields: dict) -> int:
        spec = TaskSpec(**{"task_type": TaskType.DATA_ANNOTATORS, "question": "q", "pays_amount": PAYS,
                           "expiration_block": expires, "max_assignments": 1,
                           "validation_strategy": ValidationStrategy.AUTO_ACCEPT,
                           "annotation_type": AnnotationType.IMAGE, "annotation_files": ["annotation_files/f.jpg"],
                           "annotation_files_storage_type": StorageType.IPFS, "annotation_json": annotation_json,
                           **fields})
        task_id, _ = await Market(client).create_task(Keypair.create_from_uri("//Alice"), spec)
        return task_id

    return list(await asyncio.gather(*(create(a, f) for a, f in tasks)))


def manifest(entries: list[tuple[str, str]]) -> bytes:
    return json.dumps({"schema": SCHEMA, "files": [{"path": p, "size": 1, "cid": c} for p, c in entries]}).encode()


async def test_hostile_chain_data_is_refused_with_a_reason(market, tmp_path):
    store = LocalStore(tmp_path / "store")
    one = await put_blob(store, b"x")

    async def ref(data: bytes) -> str:
        return json.dumps({"assets": await put_blob(store, data), "script": "start_task.sh"})

    meta = "$(touch /tmp/pwned-{0});`touch /tmp/pwned-{0}`|rm -rf ~ & echo \"'\\ {0} %s %n ${{IFS}}"
    good = await work.publish_assets(store, market.assets())
    cases = {  # annotation_json (and fields) → (journal step, what the reason says)
        "deep JSON": (("[" * 2040 + "]" * 2040, {}), "skipped", "names no assets folder"),
        "traversal": ((await ref(manifest([("annotation_files/../../../escaped", one)])), {}), "failed", "unsafe file name"),
        "absolute": ((await ref(manifest([("/tmp/escaped-abs", one)])), {}), "failed", "unsafe file name"),
        "NUL": ((await ref(manifest([("a\0b", one)])), {}), "failed", "unsafe file name"),
        "over-long": ((await ref(manifest([("a" * 600, one)])), {}), "failed", "bad file name"),
        "10,001 files": ((await ref(manifest([(f"f{i}", one) for i in range(STORE_LIMIT_FILES + 1)])), {}), "failed",
                         "max_files"),
        "deep manifest": ((await ref(b"[" * 100_000 + b"]" * 100_000), {}), "failed", "nested too deeply"),
        "not a manifest": ((await ref(b"\xff\xfe garbage"), {}), "failed", "not a folder manifest"),
        "absent": ((json.dumps({"assets": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"}), {}),
                   "failed", "NotFound"),
        "script is a path": ((json.dumps({"assets": good.ref, "script": "/bin/sh"}), {}), "skipped", "unsafe"),
        "metacharacters": ((json.dumps({"assets": good.ref, "note": meta.format("json")}),
                            {"question": meta.format("question"), "annotation_class_labels": meta.format("labels"),
                             "annotation_class_coordinates": meta.format("coords"),
                             "annotation_files": [meta.format("file")[:200]],
                             "annotation_media_samples": [meta.format("sample")[:200]],
                             "annotation_files_storage_credentials": meta.format("creds")}), "submitted", ""),
    }
    ids = dict(zip(cases, await publish_raw(market.client, [p for p, _, _ in cases.values()]), strict=True))
    with capture_logs() as logs:
        dave = await market.worker("Dave")
        for task_id in ids.values():
            await wait_step(dave, "task", task_id, ("skipped", "failed", "submitted", "lost"))
    for name, (_, step, reason) in cases.items():
        entry = dave.entry("task", ids[name])
        said = entry.data.get("reason") or entry.data.get("error") or ""
        assert entry.step == step and reason in said, (name, entry)
        logged = {"skipped": "task_skipped", "failed": "task_failed", "submitted": "task_submitted"}[step]
        assert events(logs, logged, task_id=ids[name]), (name, logged)  # said in the log too
    assert not list(Path("/tmp").glob("pwned-*")) and not Path("/tmp/escaped-abs").exists()
    assert not [p for p in tmp_path.rglob("escaped*")], "a hostile name was written outside its work dir"
    task_json = json.loads(next((tmp_path / "dave" / "work").glob(f"task-{ids['metacharacters']}/*/task.json"))
                           .read_text())
    assert task_json["question"] == meta.format("question")  # data, never a command
    assert "annotation_files_storage_credentials" not in task_json  # credentials never reach the script
    assert dave.running


def test_over_long_and_over_many_fields_are_refused_by_the_node(devnet, substrate, keys):
    """A creator bypassing the client's checks: the node refuses the extrinsic with a clear error."""
    for files in ([f"f{i}" for i in range(10_000)], ["a" * 600], ["../../etc/passwd\0"] * 2):
        call = substrate.compose_call("DecentralMLModule", "create_task", {
            **TaskSpec(task_type=TaskType.DATA_ANNOTATORS, question="q", pays_amount=PAYS, expiration_block=10**6,
                       max_assignments=1, validation_strategy=ValidationStrategy.AUTO_ACCEPT,
                       annotation_type=AnnotationType.IMAGE, annotation_files=["x"], annotation_json="{}",
                       annotation_files_storage_type=StorageType.IPFS).call_params(),
            "annotation_files": [files]})
        xt = substrate.create_signed_extrinsic(call, keys["alice"])
        try:
            receipt = substrate.submit_extrinsic(xt, wait_for_inclusion=True)
            assert not receipt.is_success or files[0].startswith(".."), receipt.error_message
        except SubstrateRequestException as exc:
            assert "invalid" in str(exc).lower() or "bound" in str(exc).lower(), exc
    assert substrate.get_block_number(None) > 0  # still serving


async def hostile_results(client: ChainClient, task_id: int, results: dict[str, ResultSpec]) -> dict[str, int]:
    """Workers (dev accounts by name) that claim a slot and send whatever ``results`` says; submission ids."""
    market = Market(client)

    async def send(name: str, spec: ResultSpec) -> int:
        keypair = Keypair.create_from_uri(f"//{name}")
        sid, _ = await market.assign_task(keypair, task_id)
        await market.send_task_result(keypair, dataclasses.replace(spec, submission_id=sid))
        return sid

    return dict(zip(results, await asyncio.gather(*(send(n, s) for n, s in results.items())), strict=True))


async def test_a_creator_refuses_garbage_and_foreign_results_and_pays_the_honest_one(market, tmp_path):
    store = LocalStore(tmp_path / "store")
    probe = socket.socket()  # "someone else's storage": it must never be contacted
    probe.bind(("127.0.0.1", 0))
    probe.listen()
    probe.settimeout(0.1)
    deep = await put_blob(store, b"[" * 100_000 + b"]" * 100_000)
    honest_output = await put_blob(store, manifest([]))
    with capture_logs() as logs:
        boss = market.creator([task_decl("garbage", market.assets(), max_assignments=5, strategy="CustomAccept",
                                         validator="outputs_present")])
        task, _ = await market.settle("garbage", lambda t, s: True)
        sids = await hostile_results(market.client, task.task_id, {
            "Charlie": ResultSpec(0, result_path="$(touch /tmp/pwned-result);`id`|rm -rf ~", result_storage_type="IPFS",
                                  result_storage_credentials=""),
            "Dave": ResultSpec(0, result_path=f"http://127.0.0.1:{probe.getsockname()[1]}/steal",
                               result_storage_type="IPFS", result_storage_credentials=""),
            "Eve": ResultSpec(0, result_path=honest_output, result_storage_type="S3",
                              result_storage_credentials="AKIAEXAMPLE:someone-elses-secret"),
            "Ferdie": ResultSpec(0, result_path=deep, result_storage_type="IPFS", result_storage_credentials=""),
        })
        await market.worker("Bob")
        task, subs = await market.settle("garbage", decided(5), timeout=60)
        for sid in sids.values():
            await wait_step(boss, "submission", sid, ("rejected",))
    by_id = {s.submission_id: s for s in subs}
    [honest] = [s for s in subs if s.submission_id not in sids.values()]
    assert honest.status == SubmissionStatus.ACCEPTED and honest.paid_amount == PAYS
    for name, reason in (("Charlie", "unusable result_path"), ("Dave", "unusable result_path"),
                         ("Eve", "S3"), ("Ferdie", "nested too deeply")):
        assert by_id[sids[name]].status == SubmissionStatus.REJECTED, name
        assert reason in boss.entry("submission", sids[name]).data["reason"], (name, boss.entry("submission", sids[name]))
        (rejected,) = events(logs, "result_rejected", submission_id=sids[name])
        assert reason in rejected["reason"], (name, rejected)
    assert events(logs, "result_accepted", submission_id=honest.submission_id)
    with pytest.raises(TimeoutError):
        probe.accept()
    probe.close()
    assert not Path("/tmp/pwned-result").exists()
    assert boss.running


async def test_a_creator_that_rejects_everything_is_reported_and_then_avoided(market):
    folder = market.assets("mkdir -p outputs; echo 'not json' > outputs/a.txt")
    with capture_logs() as logs:
        market.creator([task_decl(f"reject-{i}", folder, strategy="CustomAccept", validator="json_outputs")
                        for i in range(3)])
        bob = await market.worker("Bob")
        for i in range(3):
            task, _ = await market.settle(f"reject-{i}", decided(1))
            await bob.wait_until(lambda t=task: "verdict" in bob.entry("task", t.task_id).data, 30, "no verdict")
            data = bob.entry("task", task.task_id).data
            assert data["verdict"] == "rejected" and "not JSON" in data["verdict_reason"]
        [fourth] = await publish_raw(market.client, [(task.annotation_json.replace("reject-2", "reject-3"), {})])
        await wait_step(bob, "task", fourth, ("skipped",))
    (reported,) = events(logs, "creator_rejects_everything")
    assert reported["rejected"] == 3, reported
    assert "rejected all 3 of our results" in bob.entry("task", fourth).data["reason"]
