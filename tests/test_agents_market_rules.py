"""The market rules as agents live them: real agent processes on a devnet that seals a block every 0.5 s
(deadlines are counted in blocks, so the chain must move on its own).

A creator publishes with its YAML terms through a client token (and, restarted mid-publish, never
posts twice); a worker claims the pay of a result nobody reviewed, exactly once, across a restart; a
silent worker's slot is abandoned and a worker agent takes it; a slow script's result is not sent
past its deadline; a worker skips a task it does not qualify for without sending an extrinsic.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from agent_process import PAYS, settle, task_decl, wait_for
from devnet_process import DevnetProcess
from substrateinterface import Keypair
from test_agents import market_setup  # noqa: F401 (a fixture)

from agents.journal import Journal
from decentralml_core.chain import ChainClient, DispatchFailed
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import ResultSpec, SubmissionStatus, TaskTerms, WorkerStats
from decentralml_core.sandbox import bubblewrap_works

pytestmark = pytest.mark.skipif(not bubblewrap_works(), reason="agents run task scripts in bubblewrap")
BLOCK_S = 0.5


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    log = tmp_path_factory.mktemp("devnet") / "devnet.log"
    with DevnetProcess("--block-time", str(BLOCK_S), log_path=log) as node:
        yield node


def key(name: str) -> Keypair:
    return Keypair.create_from_uri(f"//{name}")


async def on_chain(url: str, fn):
    async with await ChainClient.connect(url) as client:
        return await fn(Market(client), client)


def events_named(url: str, name: str, since: int) -> list[dict]:
    async def read(market, client):
        found = []
        for number in range(since, await client.block_number() + 1):
            found += [e.attributes for e in await client.events_at(number) if e.name == name]
        return found
    return asyncio.run(on_chain(url, read))


def test_unreviewed_result_is_claimed_by_the_worker_once(devnet, market_setup):  # noqa: F811
    assets, creator, worker = market_setup
    start = asyncio.run(on_chain(devnet.url, lambda m, c: c.block_number()))
    boss = creator([task_decl("window", assets(), strategy="ManualAccept", review_window=3, submit_within=60)])
    bob = worker("Bob")
    task, subs = asyncio.run(settle(devnet.url, "window", lambda t, s: s and s[0].status == SubmissionStatus.ACCEPTED,
                                    timeout=90))
    assert task.terms == TaskTerms(submit_within=60, review_window=3)
    token = boss.entry("published", "window").data["client_token"]
    assert asyncio.run(on_chain(devnet.url, lambda m, c: m.task_by_client_token(key("Alice").ss58_address, token))) \
        == task.task_id
    (sub,) = subs
    assert sub.paid_amount == PAYS and sub.paid_block > sub.review_deadline_block
    wait_for(lambda: bob.journal().get(("claim", str(sub.submission_id))) == "claimed", what="claim journaled")
    assert bob.journal()[("task", str(task.task_id))] == "submitted"
    wait_for(lambda: boss.journal().get(("submission", str(sub.submission_id))) == "paid", what="creator saw it")
    bob.stop()
    nonce = asyncio.run(on_chain(devnet.url, lambda m, c: c.storage("System", "Account", [key("Bob").ss58_address])))
    bob.start().wait_ready()
    time.sleep(3 * BLOCK_S + 2.5)  # a sweep or two after the restart
    after = asyncio.run(on_chain(devnet.url, lambda m, c: c.storage("System", "Account", [key("Bob").ss58_address])))
    assert after["nonce"] == nonce["nonce"]  # nothing sent again
    claimed = events_named(devnet.url, "PaymentClaimed", start)
    assert [c["submission_id"] for c in claimed] == [sub.submission_id]


def test_a_silent_workers_slot_goes_to_a_worker_agent(devnet, market_setup):  # noqa: F811
    assets, creator, worker = market_setup
    creator([task_decl("relay", assets(), submit_within=24)])
    task, _ = asyncio.run(settle(devnet.url, "relay", lambda t, s: True))
    charlie = key("Charlie")

    async def take(market, client):
        return (await market.assign_task(charlie, task.task_id))[0]
    silent = asyncio.run(on_chain(devnet.url, take))
    dave = worker("Dave")  # the task is full when Dave starts: it is not even considered yet
    task, subs = asyncio.run(settle(devnet.url, "relay", lambda t, s: any(
        x.status == SubmissionStatus.ACCEPTED for x in s), timeout=120))
    by_worker = {s.worker: s for s in subs}
    assert by_worker[charlie.ss58_address].status == SubmissionStatus.ABANDONED
    assert by_worker[key("Dave").ss58_address].paid_amount == PAYS
    assert dave.journal()[("task", str(task.task_id))] == "submitted"

    async def late(market, client):
        with pytest.raises(DispatchFailed, match="SubmissionDeadlinePassed"):
            await market.send_task_result(charlie, ResultSpec(silent, result="{}"))
        return await market.worker_stats(charlie.ss58_address)
    assert asyncio.run(on_chain(devnet.url, late)).abandoned >= 1


def test_a_result_past_its_deadline_is_not_sent(devnet, market_setup):  # noqa: F811
    assets, creator, worker = market_setup
    slow = "sleep 4\nmkdir -p outputs\necho '{}' > outputs/r.json\n"
    creator([task_decl("slow", assets(slow), submit_within=3)])
    eve = worker("Eve")
    task, _ = asyncio.run(settle(devnet.url, "slow", lambda t, s: s and s[0].status == SubmissionStatus.ABANDONED,
                                 timeout=60))
    wait_for(lambda: eve.journal().get(("task", str(task.task_id))) == "abandoned", what="worker gave up")
    entry = eve.entry("task", task.task_id)
    assert "due by block" in entry.data["reason"] or "abandoned on chain" in entry.data["reason"]


def test_an_unqualified_worker_skips_without_an_extrinsic(devnet, market_setup):  # noqa: F811
    assets, creator, worker = market_setup
    ferdie = key("Ferdie")
    stats = asyncio.run(on_chain(devnet.url, lambda m, c: m.worker_stats(ferdie.ss58_address)))
    assert stats == WorkerStats()  # a newcomer
    account = asyncio.run(on_chain(devnet.url, lambda m, c: c.storage("System", "Account", [ferdie.ss58_address])))
    creator([task_decl("experts", assets(), min_accepted=2, min_distinct_creators=1, max_abandonment_rate=0.1,
                       pays=3 * PAYS)])
    task, _ = asyncio.run(settle(devnet.url, "experts", lambda t, s: True))
    assert (task.terms.min_distinct_creators, task.terms.max_abandonment_rate) == (1, 0.1)  # YAML → chain
    agent = worker("Ferdie", min_pay=3 * PAYS)  # other tests' open tasks are not for Ferdie
    wait_for(lambda: agent.journal().get(("task", str(task.task_id))) == "skipped", what="skipped")
    reason = agent.entry("task", task.task_id).data["reason"]
    assert "TooFewAccepted" in reason and "≥ 1 other creator(s)" in reason
    after = asyncio.run(on_chain(devnet.url, lambda m, c: c.storage("System", "Account", [ferdie.ss58_address])))
    assert after["nonce"] == account["nonce"]


def test_a_publish_interrupted_after_the_create_posts_once(devnet, market_setup, tmp_path):  # noqa: F811
    """The journal says "publishing" with a token and the create did land (a crash in between): the
    restarted creator finds the task by its token instead of posting a second one."""
    assets, creator, _ = market_setup
    folder = assets()
    declared = task_decl("once", folder, review_window=50)
    alice = key("Alice")

    async def crashed_publish(market, client):
        from test_chain_client import spec
        task_id, _ = await market.create_task(alice, spec(await client.block_number() + 500, annotation_json=
                                              '{"name": "once"}'), TaskTerms(review_window=50), "crashed-token")
        return task_id
    first = asyncio.run(on_chain(devnet.url, crashed_publish))
    journal = Journal(tmp_path / "creator" / "journal.sqlite")
    journal.set("published", "once", "publishing", assets="bafy-any", client_token="crashed-token")
    journal.close()
    boss = creator([declared])
    wait_for(lambda: boss.journal().get(("published", "once")) == "published", what="published")
    assert boss.entry("published", "once").data["task_id"] == first
    tasks = asyncio.run(on_chain(devnet.url, lambda m, c: m.tasks()))
    assert len([t for t in tasks if t.creator == alice.ss58_address and '"name": "once"' in (t.annotation_json or "")
                ]) == 1
