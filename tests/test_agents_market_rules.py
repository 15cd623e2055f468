"""The market rules as agents live them: agents in process on a devnet in process that seals a block every
0.5 s (deadlines are counted in blocks, so the chain must move on its own; tests/agents_inprocess.py).

A creator publishes with its YAML terms through a client token (and, restarted mid-publish, never
posts twice); a worker claims the pay of a result nobody reviewed, exactly once, across a restart; a
silent worker's slot is abandoned and a worker agent takes it; a slow script's result is not sent
past its deadline; a worker skips a task it does not qualify for without sending an extrinsic.
"""

from __future__ import annotations

import asyncio

import pytest
from agent_process import PAYS, task_decl
from agents_inprocess import events, market_fixture
from structlog.testing import capture_logs
from substrateinterface import Keypair

from agents.journal import Journal
from decentralml_core.chain import DispatchFailed
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import ResultSpec, SubmissionStatus, TaskTerms, WorkerStats
from decentralml_core.sandbox import bubblewrap_works

pytestmark = pytest.mark.skipif(not bubblewrap_works(), reason="agents run task scripts in bubblewrap")
BLOCK_S = 0.5
market = market_fixture(block_time=BLOCK_S)


def key(name: str) -> Keypair:
    return Keypair.create_from_uri(f"//{name}")


async def events_named(client, name: str, since: int) -> list[dict]:
    found = []
    for number in range(since, await client.block_number() + 1):
        found += [e.attributes for e in await client.events_at(number) if e.name == name]
    return found


async def test_unreviewed_result_is_claimed_by_the_worker_once(market):
    client = market.client
    start = await client.block_number()
    with capture_logs() as logs:
        boss = market.creator([task_decl("window", market.assets(), strategy="ManualAccept", review_window=3,
                                         submit_within=60)])
        bob = await market.worker("Bob")
        task, subs = await market.settle("window", lambda t, s: s and s[0].status == SubmissionStatus.ACCEPTED,
                                         timeout=90)
        (sub,) = subs
        await bob.wait_step("payment_claim", sub.submission_id, "claimed")
        await boss.wait_step("submission", sub.submission_id, "paid")
    assert task.terms == TaskTerms(submit_within=60, review_window=3)
    token = boss.entry("published", "window").data["client_token"]
    assert await Market(client).task_by_client_token(key("Alice").ss58_address, token) == task.task_id
    assert sub.paid_amount == PAYS and sub.paid_block > sub.review_deadline_block
    assert bob.journal()[("task", str(task.task_id))] == "submitted"
    assert events(logs, "payment_claimed", submission_id=sub.submission_id)
    assert events(logs, "result_waiting_for_review", submission_id=sub.submission_id)
    await bob.stop()
    nonce = await client.storage("System", "Account", [key("Bob").ss58_address])
    with capture_logs() as logs:
        await bob.start().wait_ready()
        await asyncio.sleep(3 * BLOCK_S + 2.5)  # a sweep or two after the restart
    after = await client.storage("System", "Account", [key("Bob").ss58_address])
    assert after["nonce"] == nonce["nonce"]  # nothing sent again
    assert not events(logs, "payment_claimed")
    claimed = await events_named(client, "PaymentClaimed", start)
    assert [c["submission_id"] for c in claimed] == [sub.submission_id]


async def test_a_silent_workers_slot_goes_to_a_worker_agent(market):
    market.creator([task_decl("relay", market.assets(), submit_within=24)])
    task, _ = await market.settle("relay", lambda t, s: True)
    charlie = key("Charlie")
    silent = (await Market(market.client).assign_task(charlie, task.task_id))[0]
    with capture_logs() as logs:
        dave = await market.worker("Dave")  # the task is full when Dave starts: it is not even considered yet
        task, subs = await market.settle("relay", lambda t, s: any(x.status == SubmissionStatus.ACCEPTED for x in s),
                                         timeout=120)
        await dave.wait_step("task", task.task_id, "submitted")
    by_worker = {s.worker: s for s in subs}
    assert by_worker[charlie.ss58_address].status == SubmissionStatus.ABANDONED
    assert by_worker[key("Dave").ss58_address].paid_amount == PAYS
    assert events(logs, "task_claimed", task_id=task.task_id) and events(logs, "task_submitted", task_id=task.task_id)
    with pytest.raises(DispatchFailed, match="SubmissionDeadlinePassed"):
        await Market(market.client).send_task_result(charlie, ResultSpec(silent, result="{}"))
    assert (await Market(market.client).worker_stats(charlie.ss58_address)).abandoned >= 1


async def test_a_result_past_its_deadline_is_not_sent(market):
    slow = "sleep 4\nmkdir -p outputs\necho '{}' > outputs/r.json\n"
    with capture_logs() as logs:
        market.creator([task_decl("slow", market.assets(slow), submit_within=3)])
        eve = await market.worker("Eve")
        task, _ = await market.settle("slow", lambda t, s: s and s[0].status == SubmissionStatus.ABANDONED,
                                      timeout=60)
        await eve.wait_step("task", task.task_id, "abandoned")
    entry = eve.entry("task", task.task_id)
    assert "due by block" in entry.data["reason"] or "abandoned on chain" in entry.data["reason"]
    assert events(logs, "task_abandoned", task_id=task.task_id) and not events(logs, "task_submitted")


async def test_a_result_ready_after_its_task_expired_is_abandoned_not_failed(market):
    """The task's own end (not the assignment's deadline) passes while the script runs: the send is refused
    as expired or closed, and the worker journals the task abandoned with a warning, not a failure.

    The script holds its result until the test has seen the task's end pass on chain (a ``go`` file in
    its task dir), so no block budget has to outlast publishing and claiming on a loaded machine (a
    CI run at load 10 saw 10 blocks pass before the create landed)."""
    gated = ("i=0; while [ ! -e go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"
             "mkdir -p outputs\necho '{}' > outputs/r.json\n")
    with capture_logs() as logs:
        market.creator([task_decl("expiring", market.assets(gated), expires_in=20)])
        eve = await market.worker("Eve", sandbox={"timeout_s": 90})
        task, _ = await market.settle("expiring", lambda t, s: bool(s), timeout=60)
        await wait_for_block(market.client, task.expiration_block + 1, timeout=60)
        running = lambda: list((market.tmp / "eve").rglob("start_task.sh"))  # noqa: E731
        await eve.wait_until(lambda: running() or getattr(eve.entry("task", task.task_id), "step", None) == "abandoned",
                             timeout=60, what="the run, or its task abandoned before it")
        for script in running():
            (script.parent / "go").touch()
        await eve.wait_step("task", task.task_id, "abandoned", timeout=60)
    reason = eve.entry("task", task.task_id).data["reason"]
    assert "expired" in reason or "closed" in reason or "due by block" in reason, reason
    assert events(logs, "task_abandoned", task_id=task.task_id)
    assert not events(logs, "task_failed") and not events(logs, "task_submitted")


async def wait_for_block(client, number: int, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await client.block_number() < number:
        assert asyncio.get_running_loop().time() < deadline, f"block {number} did not come in {timeout} s"
        await asyncio.sleep(0.3)


async def test_a_task_the_pallet_refuses_is_one_line_and_the_creator_goes_on(market):
    """A task whose escrow Alice cannot fund is refused on chain: one error line, journaled refused, and
    her other task is published and paid as usual (before, the refusal ended the creator)."""
    with capture_logs() as logs:
        creator = market.creator([task_decl("too-dear", market.assets(), pays=10**30),
                                  task_decl("fine", market.assets())])
        await market.worker("Eve")
        await market.settle("fine", lambda t, s: s and s[0].status == SubmissionStatus.ACCEPTED, timeout=60)
        await creator.wait_step("published", "too-dear", "refused")
    refused = events(logs, "task_publish_refused", name="too-dear")
    assert len(refused) == 1 and refused[0]["log_level"] == "error" and "YAML" in refused[0]["action"], refused
    assert creator.running
    assert not events(logs, "task_published", name="too-dear")


async def test_an_unqualified_worker_skips_without_an_extrinsic(market):
    ferdie = key("Ferdie")
    assert await Market(market.client).worker_stats(ferdie.ss58_address) == WorkerStats()  # a newcomer
    account = await market.client.storage("System", "Account", [ferdie.ss58_address])
    market.creator([task_decl("experts", market.assets(), min_accepted=2, min_distinct_creators=1,
                              max_abandonment_rate=0.1, pays=3 * PAYS)])
    task, _ = await market.settle("experts", lambda t, s: True)
    assert (task.terms.min_distinct_creators, task.terms.max_abandonment_rate) == (1, 0.1)  # YAML → chain
    with capture_logs() as logs:
        agent = await market.worker("Ferdie", min_pay=3 * PAYS)
        await agent.wait_step("task", task.task_id, "skipped")
    reason = agent.entry("task", task.task_id).data["reason"]
    assert "TooFewAccepted" in reason and "≥ 1 other creator(s)" in reason
    assert any("TooFewAccepted" in e["reason"] for e in events(logs, "task_skipped", task_id=task.task_id))
    after = await market.client.storage("System", "Account", [ferdie.ss58_address])
    assert after["nonce"] == account["nonce"]


async def test_a_publish_interrupted_after_the_create_posts_once(market, tmp_path):
    """The journal says "publishing" with a token and the create did land (a crash in between): the
    restarted creator finds the task by its token instead of posting a second one."""
    from test_chain_client import spec

    declared = task_decl("once", market.assets(), review_window=50)
    alice = key("Alice")
    first, _ = await Market(market.client).create_task(
        alice, spec(await market.client.block_number() + 500, annotation_json='{"name": "once"}'),
        TaskTerms(review_window=50), "crashed-token")
    journal = Journal(tmp_path / "creator" / "journal.sqlite")
    journal.set("published", "once", "publishing", assets="bafy-any", client_token="crashed-token")
    journal.close()
    with capture_logs() as logs:
        boss = market.creator([declared])
        await boss.wait_step("published", "once", "published")
    assert boss.entry("published", "once").data["task_id"] == first
    tasks = await Market(market.client).tasks()
    assert len([t for t in tasks if t.creator == alice.ss58_address and '"name": "once"' in (t.annotation_json or "")
                ]) == 1
    assert events(logs, "task_published", name="once", task_id=first)
