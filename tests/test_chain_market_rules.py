"""The client side of the market rules: capability detection, terms and deadlines in the model, client
tokens, claim_payment; the CLI's flags; and the client's qualification check equal to the pallet's."""

from __future__ import annotations

import asyncio

import pytest
from devnet_process import DevnetProcess
from hypothesis import given
from hypothesis import strategies as st
from substrateinterface import Keypair
from test_chain_client import fresh, fund, spec
from test_cli_market import cli, js

from agents.config import AgentConfig
from agents.creator import CreatorAgent
from agents.journal import Journal
from agents.metrics import Metrics
from decentralml_core.chain import ChainClient, DispatchFailed, UnsupportedCall
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import ResultSpec, SubmissionStatus, TaskTerms, WorkerStats
from decentralml_core.devnet.pallets.decentralml import qualification_error, task_account

ALICE = Keypair.create_from_uri("//Alice")


@pytest.fixture
async def client(devnet):
    async with await ChainClient.connect(devnet.url, inclusion_timeout=30) as c:
        yield c


async def advance(client: ChainClient, blocks: int) -> None:
    for i in range(blocks):
        await client.submit(ALICE, "System", "remark", {"remark": f"0x{i:02x}"})


async def test_terms_token_deadlines_and_claim(client):
    market = Market(client)
    assert (market.capabilities.task_terms, market.capabilities.claim_payment) == (True, True)
    worker = fresh()
    await fund(client, worker)
    terms = TaskTerms(submit_within=20, review_window=2, max_rejection_rate=0.25, max_abandonment_rate=0.5)
    task_id, _ = await market.create_task(ALICE, spec(await client.block_number() + 100), terms, "client-rules:1")
    assert (await market.task(task_id)).terms == terms
    assert [t.terms for t in await market.tasks() if t.task_id == task_id] == [terms]
    with pytest.raises(DispatchFailed) as refused:
        await market.create_task(ALICE, spec(await client.block_number() + 100), terms, "client-rules:1")
    assert refused.value.error == "DuplicateClientToken"
    assert await market.task_by_client_token(ALICE.ss58_address, "client-rules:1") == task_id
    assert await market.task_by_client_token(ALICE.ss58_address, "never-used") is None

    sid, assigned = await market.assign_task(worker, task_id)
    pending = await market.submission(sid)
    assert pending.submit_deadline_block == assigned.block_number + 20 and pending.review_deadline_block is None
    sent = await market.send_task_result(worker, ResultSpec(sid, result="{}"))
    submission = await market.submission(sid)
    assert (submission.submitted_block, submission.review_deadline_block) == (sent.block_number, sent.block_number + 2)
    assert await market.review_deadline_block(sid) == sent.block_number + 2
    assert submission.review_blocks_left(sent.block_number) == 2
    assert [s.review_deadline_block for s in await market.submissions(task_id)] == [sent.block_number + 2]
    with pytest.raises(DispatchFailed, match="ReviewWindowOpen"):
        await market.claim_payment(worker, sid)
    await advance(client, 2)
    assert (await market.submission(sid)).review_blocks_left(await client.block_number()) == 0
    before = await client.free_balance(worker.ss58_address)
    receipt = await market.claim_payment(worker, sid)
    assert receipt.find("DecentralMLModule", "PaymentClaimed")[0]["amount"] == spec(0).pays_amount
    assert await client.free_balance(worker.ss58_address) == before + spec(0).pays_amount - receipt.fee
    assert (await market.submission(sid)).status == SubmissionStatus.ACCEPTED
    assert await market.worker_stats(worker.ss58_address) == WorkerStats(accepted=1, creators=(ALICE.ss58_address,))
    with pytest.raises(DispatchFailed, match="AlreadyDecided"):
        await market.claim_payment(worker, sid)


async def test_the_client_refuses_as_the_chain_does_for_distinct_creators(client):
    """One creator accepted the worker: enough for another creator's task asking for one, not for
    that creator's own (its verdicts are not others' judgement) — the client says so before signing."""
    market = Market(client)
    worker, bob = fresh(), Keypair.create_from_uri("//Bob")
    await fund(client, worker)
    end = await client.block_number() + 100
    first, _ = await market.create_task(ALICE, spec(end), TaskTerms(max_abandonment_rate=0.0))
    sid, _ = await market.assign_task(worker, first)
    await market.send_task_result(worker, ResultSpec(sid, result="{}"))
    await market.accept_task_result(ALICE, sid)
    stats = await market.worker_stats(worker.ss58_address)
    asks_one = TaskTerms(min_distinct_creators=1)
    own, _ = await market.create_task(ALICE, spec(end), asks_one)
    assert (await market.task(own)).terms == asks_one
    assert asks_one.refusal(stats, ALICE.ss58_address) == "TooFewDistinctCreators"
    with pytest.raises(DispatchFailed, match="TooFewDistinctCreators"):
        await market.assign_task(worker, own)
    other, _ = await market.create_task(bob, spec(end), asks_one)
    assert asks_one.refusal(stats, bob.ss58_address) is None
    await market.assign_task(worker, other)


async def test_a_task_without_rules_reads_as_before(client):
    market = Market(client)
    task_id, _ = await market.create_task(ALICE, spec(await client.block_number() + 100))  # plain create_task
    assert (await market.task(task_id)).terms == TaskTerms()
    with pytest.raises(ValueError, match="client token"):
        await market.create_task(ALICE, spec(await client.block_number() + 100), client_token="x" * 65)


async def test_a_creator_rejecting_after_the_close_gets_the_pay_back(client, tmp_path):
    """The probe's case through the creator agent: its task closed with a result pending; rejecting it
    returns the pay to the creator in the same extrinsic, counted as reclaimed escrow."""
    market, worker = Market(client), fresh()
    await fund(client, worker)
    task_id, _ = await market.create_task(ALICE, spec(await client.block_number() + 3), TaskTerms(review_window=50))
    sid, _ = await market.assign_task(worker, task_id)
    await market.send_task_result(worker, ResultSpec(sid, result="{}"))
    await advance(client, 2)
    closed = await market.close_task(ALICE, task_id)
    assert closed.find("DecentralMLModule", "TaskClosed")[0]["refunded"] == spec(0).pays_amount  # the unused slot
    creator = CreatorAgent(AgentConfig.model_validate({
        "role": "creator", "node": client.url, "key": {"dev": "Alice"}, "state_dir": str(tmp_path / "c"),
        "tasks": []}), client, Journal(tmp_path / "j.sqlite"), Metrics("creator"))
    await creator.reject(await market.task(task_id), await market.submission(sid), "too late")
    assert creator.metrics.count("escrow_reclaimed") == spec(0).pays_amount
    assert (await market.submission(sid)).status == SubmissionStatus.REJECTED
    assert await client.free_balance(Keypair(public_key=task_account(task_id), ss58_format=42).ss58_address) == 0


def test_terms_are_checked_before_signing():
    for bad in ({"submit_within": 0}, {"review_window": -1}, {"max_rejection_rate": 1.5}, {"min_accepted": -1},
                {"max_abandonment_rate": -0.1}, {"min_distinct_creators": 17}):
        with pytest.raises(ValueError):
            TaskTerms(**bad)
    assert TaskTerms(max_rejection_rate=0.1).call_params()["max_rejection_rate"] == 100_000
    assert TaskTerms(max_abandonment_rate=0.2, min_distinct_creators=3).call_params() == {
        "submit_within": None, "review_window": None, "min_accepted": 0, "max_rejection_rate": None,
        "min_distinct_creators": 3, "max_abandonment_rate": 200_000}


PEOPLE = [Keypair.create_from_uri(f"//{n}") for n in ("Alice", "Bob", "Charlie", "Dave")]
PERMILLS = st.one_of(st.none(), st.integers(0, 1_000_000))


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.sets(st.sampled_from(range(4))),
       st.sampled_from(range(4)), st.integers(0, 60), PERMILLS, st.integers(0, 4), PERMILLS)
def test_the_clients_qualification_check_is_the_pallets(accepted, rejected, abandoned, creators, creator,
                                                         min_accepted, permill, min_creators, abandon_permill):
    terms = TaskTerms(min_accepted=min_accepted, max_rejection_rate=None if permill is None else permill / 1_000_000,
                      min_distinct_creators=min_creators,
                      max_abandonment_rate=None if abandon_permill is None else abandon_permill / 1_000_000)
    stats = WorkerStats(accepted=accepted, rejected=rejected, abandoned=abandoned,
                        creators=tuple(PEOPLE[c].ss58_address for c in sorted(creators)))
    on_chain = {"accepted": accepted, "rejected": rejected, "abandoned": abandoned,
                "creators": [PEOPLE[c].public_key for c in sorted(creators)]}
    assert terms.refusal(stats, PEOPLE[creator].ss58_address) == qualification_error(
        terms.call_params(), on_chain, PEOPLE[creator].public_key)


async def test_an_upstream_node_lacks_the_rules(tmp_path):
    with DevnetProcess("--pallet", "upstream", log_path=tmp_path / "devnet.log") as node:
        async with await ChainClient.connect(node.url, inclusion_timeout=30) as client:
            market = Market(client)
            assert (market.capabilities.task_terms, market.capabilities.claim_payment) == (False, False)
            end = await client.block_number() + 100
            with pytest.raises(UnsupportedCall):
                await market.create_task(ALICE, spec(end), TaskTerms(review_window=5))
            with pytest.raises(UnsupportedCall):
                await market.create_task(ALICE, spec(end), client_token="once")
            task_id, _ = await market.create_task(ALICE, spec(end))
            worker = fresh()
            await fund(client, worker)
            sid, _ = await market.assign_task(worker, task_id)
            assert (await market.task(task_id)).terms == TaskTerms()
            assert (await market.submission(sid)).review_deadline_block is None
            assert await market.worker_stats(worker.ss58_address) == WorkerStats()
            assert await market.task_by_client_token(ALICE.ss58_address, "once") is None
            with pytest.raises(UnsupportedCall):
                await market.claim_payment(worker, sid)
            creator = CreatorAgent(AgentConfig.model_validate({
                "role": "creator", "node": node.url, "key": {"dev": "Alice"}, "state_dir": str(tmp_path / "c"),
                "tasks": [{"name": "ruled", "assets": str(tmp_path), "question": "q", "pays": 10**12,
                           "review_window": 10}]}), client, Journal(tmp_path / "j.sqlite"), Metrics("creator"))
            assert await creator.publish(creator.config.tasks[0]) is None  # not posted without its rules
            assert creator.journal.get("published", "ruled") is None
            assert len(await market.tasks()) == 1


def test_cli_creates_with_rules_once_and_claims(devnet):
    args = ["task", "create", "--question", "Label the cars", "--pays", "5000000planck", "--annotation-type", "Image",
            "--files", "file_1.jpg", "--storage-type", "IPFS", "--review-window", "1", "--submit-within", "30",
            "--min-accepted", "0", "--max-rejection-rate", "0.5", "--min-distinct-creators", "0",
            "--max-abandonment-rate", "0.25", "--client-token", "cli-once"]
    created = js(devnet, *args, key="//Alice")
    assert created["terms"] == {"submit_within": 30, "review_window": 1, "min_accepted": 0, "max_rejection_rate": 0.5,
                                "min_distinct_creators": 0, "max_abandonment_rate": 0.25}
    again = cli(devnet, *args, key="//Alice", ok=False)
    assert again.returncode != 0 and "already created a task with this --client-token" in again.stderr
    task_id = created["task_id"]
    sid = js(devnet, "task", "assign", str(task_id), "--dev-key", "dave")["submission_id"]
    js(devnet, "result", "send", str(sid), "--result", "{}", "--dev-key", "dave")
    asyncio.run(_advance(devnet.url, 2))
    assert js(devnet, "result", "claim", str(sid), "--dev-key", "dave") == {"submission_id": sid, "paid": 5_000_000}


async def _advance(url: str, blocks: int) -> None:
    async with await ChainClient.connect(url) as client:
        await advance(client, blocks)
