"""The chain client, unchanged, against a real Substrate runtime (chopsticks: see real_runtime.py).

What any Substrate chain has is checked on a production runtime's own wasm (Rococo Asset Hub:
System, Balances, fees, events, metadata of 21 pallets): pipelined submission from one account,
inclusion receipts and fees, ``events(since=…)``, a WebSocket cut mid-stream, reading every plain
storage item of the runtime, and the upstream-compat creator path (a verdict by
``System.remark_with_event``, the pay by ``Balances.transfer_keep_alive``).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlparse

import pytest
from node_packages import locked_version, registry_hosts
from proxies import FaultProxy
from real_runtime import PACKAGES
from substrateinterface import Keypair

from decentralml_core.chain import ChainClient, Checkpoint, DispatchFailed
from decentralml_core.chain.market import Market, parse_verdict
from decentralml_core.chain.model import Submission, Task
from decentralml_core.devnet.hashing import blake2_256

pytestmark = pytest.mark.node

AMOUNT = 10**10  # above the runtime's existential deposit (3,333,333)
ALICE = Keypair.create_from_uri("//Alice")


def fresh() -> Keypair:
    return Keypair.create_from_mnemonic(Keypair.generate_mnemonic())


def address(client: ChainClient, who: Keypair) -> str:
    """The account as this runtime's events show it (its SS58 prefix is 2, not the devnet's 42)."""
    return client.runtime.ss58(who.public_key)


def fee(client: ChainClient, receipt) -> int:
    """The fee the signer paid: this runtime (older than TransactionFeePaid, so ``Receipt.fee`` is 0
    here) reports it only as the Balances.Withdraw from the signer before the call."""
    (withdrawn, *_) = receipt.find("Balances", "Withdraw")
    return withdrawn["amount"]


@pytest.fixture
async def client(real_node):
    async with await ChainClient.connect(real_node.url, inclusion_timeout=180) as c:
        yield c


async def transfers_to(client: ChainClient, dest: str, since: Checkpoint, count: int, within: float = 60) -> list:
    """The first ``count`` Balances.Transfer events to ``dest`` after ``since`` (waiting ``within`` seconds)."""
    found = []
    async with asyncio.timeout(within):
        async for event in client.events(since):
            if (event.pallet, event.name) == ("Balances", "Transfer") and event.attributes["to"] == dest:
                found.append(event)
                if len(found) == count:
                    return found
    return found


async def test_twenty_pipelined_transfers_from_one_account(client):
    sink = address(client, fresh())
    nonce = await client.request("system_accountNextIndex", [ALICE.ss58_address])
    before = await client.free_balance(ALICE.ss58_address)
    receipts = await asyncio.gather(*[client.submit(ALICE, "Balances", "transfer_keep_alive",
                                                    {"dest": sink, "value": AMOUNT + i}) for i in range(20)])
    assert sorted(r.find("Balances", "Transfer")[0]["amount"] for r in receipts) == [AMOUNT + i for i in range(20)]
    assert len({r.extrinsic_hash for r in receipts}) == 20
    assert all(r.find("System", "ExtrinsicSuccess") and fee(client, r) > 0 for r in receipts)
    assert {r.find("Balances", "Withdraw")[0]["who"] for r in receipts} == {address(client, ALICE)}
    for r in receipts:  # the receipt names the block and position the runtime put the extrinsic at
        assert await client.block_hash(r.block_number) == r.block_hash
        block = await client.request("chain_getBlock", [r.block_hash])
        raw = block["block"]["extrinsics"][r.extrinsic_index]
        assert "0x" + blake2_256(bytes.fromhex(raw[2:])).hex() == r.extrinsic_hash
    assert await client.request("system_accountNextIndex", [ALICE.ss58_address]) == nonce + 20
    assert await client.free_balance(sink) == sum(AMOUNT + i for i in range(20))
    spent = sum(AMOUNT + i for i in range(20)) + sum(fee(client, r) for r in receipts)
    assert await client.free_balance(ALICE.ss58_address) == before - spent  # fee charged == fee reported


async def test_events_since_a_checkpoint_resume_without_loss_or_repeat(client):
    sink = address(client, fresh())
    receipts = [await client.submit(ALICE, "Balances", "transfer_keep_alive", {"dest": sink, "value": AMOUNT + i})
                for i in range(4)]
    since = Checkpoint(receipts[0].block_number)
    seen = await transfers_to(client, sink, since, 4)
    assert [e.attributes["amount"] for e in seen] == [AMOUNT + i for i in range(4)]
    assert [e.position for e in seen] == sorted({e.position for e in seen})
    rest = await transfers_to(client, sink, Checkpoint.after(seen[1]), 2)  # a restart after the second
    assert [e.position for e in rest] == [e.position for e in seen[2:]]


async def test_a_connection_cut_mid_stream_loses_and_repeats_nothing(real_node):
    proxy = await FaultProxy(urlparse(real_node.url).port).start()
    try:
        async with await ChainClient.connect(f"ws://127.0.0.1:{proxy.port}", reconnect_for=30,
                                             inclusion_timeout=180) as client:
            sink = address(client, fresh())
            # the stream's wait covers the six sends too, each of which may wait out a stall (10 s) after a cut
            # on a loaded machine (CI saw four such at load 10): the client's own inclusion bound, not 60 s
            stream = asyncio.create_task(transfers_to(client, sink, Checkpoint(await client.block_number() + 1), 6,
                                                      within=180))
            for i in range(6):
                await client.submit(ALICE, "Balances", "transfer_keep_alive", {"dest": sink, "value": AMOUNT + i})
                if i in (1, 3):
                    proxy.drop()  # the client's socket (and its subscriptions) go mid-stream
            seen = await stream
            assert [e.attributes["amount"] for e in seen] == [AMOUNT + i for i in range(6)]
            assert await client.free_balance(sink) == sum(AMOUNT + i for i in range(6))  # each sent once
    finally:
        await proxy.close()


async def test_reads_a_production_runtime_without_errors(client):
    """Every plain storage item of every pallet (21 pallets: XCM, assets, collators, parachain system …,
    83 items) decodes; every pallet error is named; recent blocks' events decode."""
    pallets = client.runtime.si.metadata.pallets
    assert len(pallets) >= 20
    decoded = 0
    for pallet in pallets:
        for item in pallet.storage or []:
            if item.get_params_type_string():
                continue  # maps: keys would be needed
            await client.storage(pallet.name, item.name)
            decoded += 1
        for index, error in enumerate(pallet.errors or []):
            assert client.runtime.module_error(pallet["index"], index)[:2] == (pallet.name, error.name)
    assert decoded >= 80
    number = await client.block_number()
    events = [e for n in range(max(number - 3, 0), number + 1) for e in await client.events_at(n)]
    assert all(e.pallet and e.name for e in events)


async def test_a_module_error_of_the_real_runtime_is_named_with_its_docs(client):
    poor = fresh()
    await client.submit(ALICE, "Balances", "transfer_keep_alive", {"dest": poor.ss58_address, "value": AMOUNT})
    with pytest.raises(DispatchFailed) as info:  # this runtime's pallet_balances predates v1.0.0
        await client.submit(poor, "Balances", "transfer_keep_alive", {"dest": ALICE.ss58_address, "value": 2 * AMOUNT})
    assert (info.value.pallet, info.value.error, info.value.docs) == (
        "Balances", "InsufficientBalance", "Balance too low to send value")


def pending(worker: Keypair, pays: int) -> tuple[Submission, Task]:
    """What an upstream node's DecentralML storage would hold for a result waiting for Alice's decision
    (the real runtime has no DecentralML pallet: only these reads are given, every call is real)."""
    submission = Submission.from_chain({
        "submission_id": 41, "task_id": 7, "worker": worker.ss58_address, "created_block": 1,
        "status": "PendingValidation", "result": "{}"})
    task = Task.from_chain(7, {
        "status": "Created", "task_type": "DataAnnotators", "creator": ALICE.ss58_address, "pays_amount": pays,
        "creation_block": 1, "expiration_block": 10_000, "max_assignments": 1,
        "validation_strategy": "ManualAccept", "question": "Find the samples", "annotation_type": "Image",
        "annotation_files": ["file_1.jpg"], "annotation_files_storage_type": "IPFS"})
    return submission, task


async def test_upstream_compat_verdicts_and_pay_on_the_real_system_and_balances(client, monkeypatch):
    market = Market(client)
    assert not market.capabilities.verdict_calls  # no DecentralML pallet: the upstream-compat path
    worker, loser = fresh(), fresh()
    decisions = {41: pending(worker, AMOUNT), 42: pending(loser, AMOUNT)}

    async def given(creator, submission_id):
        return decisions[submission_id]

    monkeypatch.setattr(market, "_pending", given)
    start = Checkpoint(await client.block_number() + 1)
    paid = await market.accept_task_result(ALICE, 41)
    assert paid.find("Balances", "Transfer")[0]["amount"] == AMOUNT
    assert await client.free_balance(worker.ss58_address) == AMOUNT
    assert paid.find("Balances", "Transfer")[0]["to"] == address(client, worker)
    rejected = await market.reject_task_result(ALICE, 42, "blurry boxes")
    assert await client.free_balance(loser.ss58_address) == 0

    verdicts = []
    for number in range(start.block_number, rejected.block_number + 1):
        verdicts += await market.verdicts_at(await client.block_hash(number))
    alice = address(client, ALICE)
    assert [(who, v["verdict"], v["amount"], v["reason"]) for who, v in verdicts] == [
        (alice, "accept", AMOUNT, ""), (alice, "reject", 0, "blurry boxes")]
    remarked = [e.attributes for n in range(start.block_number, rejected.block_number + 1)
                for e in await client.events_at(n) if (e.pallet, e.name) == ("System", "Remarked")]
    records = [json.dumps(v, separators=(",", ":"), sort_keys=True).encode() for _, v in verdicts]
    assert [r["hash"] for r in remarked] == ["0x" + blake2_256(r).hex() for r in records]
    assert all(parse_verdict(r) for r in records)


async def test_upstream_compat_pay_below_the_existential_deposit_is_refused_by_the_runtime(client, monkeypatch):
    market = Market(client)

    async def given(creator, submission_id):
        return pending(fresh(), 1_000)  # below this runtime's existential deposit, to a new account

    monkeypatch.setattr(market, "_pending", given)
    with pytest.raises(DispatchFailed) as info:
        await market.accept_task_result(ALICE, 43)
    assert (info.value.pallet, info.value.error) == ("Balances", "ExistentialDeposit")  # pre-v1.0.0 runtime



def test_lockfile_names_no_registry_and_pins_the_packages():
    assert registry_hosts(PACKAGES) == set(), "regenerate with --omit-lockfile-registry-resolved (see node_packages.py)"
    wanted = json.loads((PACKAGES / "package.json").read_text())["dependencies"]
    assert {name: locked_version(PACKAGES, name) for name in wanted} == wanted
