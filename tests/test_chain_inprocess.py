"""The chain client on the devnet's node in this process (``devnet.inprocess``): the same client, the same
node code, no socket — and its reconnect and recovery paths still run when the node restarts."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs
from substrateinterface import Keypair

from decentralml_core.chain import Checkpoint
from decentralml_core.devnet.inprocess import InProcessDevnet

ALICE = Keypair.create_from_uri("//Alice")
UNIT = 10**12


def fresh() -> str:
    return Keypair.create_from_mnemonic(Keypair.generate_mnemonic()).ss58_address


async def test_a_client_submits_reads_and_follows_events_in_process():
    dest = fresh()
    async with InProcessDevnet() as devnet, await devnet.client() as client:
        events = client.events(Checkpoint(1))
        receipt = await client.submit(ALICE, "Balances", "transfer_keep_alive", {"dest": dest, "value": UNIT})
        assert receipt.find("Balances", "Transfer")[0]["to"] == dest
        assert await client.free_balance(dest) == UNIT
        assert devnet.chain.best_number == receipt.block_number == await client.block_number()
        seen = [await asyncio.wait_for(anext(events), 10) for _ in range(len(receipt.events))]
        assert [(e.pallet, e.name) for e in seen] == [(e.pallet, e.name) for e in receipt.events]
        await events.aclose()


async def test_a_restart_with_extrinsics_in_the_pool_resends_them_and_each_lands_once():
    """As tests/test_chain_recovery.py does with a devnet process killed -9: blocks every 2 s, three
    transfers wait in the pool when the node restarts; the client reconnects and resends them in nonce
    order, each lands once, the event stream neither loses nor repeats one."""
    dest = fresh()
    async with InProcessDevnet(block_time=2.0) as devnet, \
            await devnet.client(reconnect_for=30, inclusion_timeout=60) as client:
        await client.submit(ALICE, "System", "remark", {"remark": "0x01"})  # just after a block
        stream = client.events(Checkpoint(await client.block_number() + 1))
        with capture_logs() as logs:
            pending = [asyncio.create_task(client.submit(ALICE, "Balances", "transfer_keep_alive",
                                                         {"dest": dest, "value": UNIT + i})) for i in range(3)]
            while len(client._inflight) < 3:
                await asyncio.sleep(0.01)
            assert await client.pool_backlog(ALICE.ss58_address) == 3
            await devnet.restart(down_for=0.3)  # the pool goes; the blocks (SQLite) stay
            assert len(devnet.chain.pool) == 0
            receipts = await asyncio.wait_for(asyncio.gather(*pending), 30)
        transfers = []
        while len(transfers) < 3:
            event = await asyncio.wait_for(anext(stream), 30)
            if (event.pallet, event.name) == ("Balances", "Transfer") and event.attributes["to"] == dest:
                transfers.append(event.attributes["amount"])
        await stream.aclose()
        assert transfers == [UNIT, UNIT + 1, UNIT + 2]
        assert len({r.extrinsic_hash for r in receipts}) == 3
        assert (await client.storage("System", "Account", [ALICE.ss58_address]))["nonce"] == 4
        names = [e["event"] for e in logs]
        assert "chain_reconnected" in names, names
        recovered = [e for e in logs if e["event"] == "extrinsics_recovered"]
        assert recovered and recovered[0]["reason"] == "reconnected" and recovered[0]["resent"] == 3, logs
        assert client.health["chain"] == "ok" and client.health["in_flight"] == 0 and client.recoveries == 1


async def test_a_node_that_is_down_is_dialled_until_it_is_back():
    async with InProcessDevnet() as devnet, await devnet.client(reconnect_for=30) as client:
        await devnet.stop()
        with capture_logs() as logs:
            read = asyncio.create_task(client.free_balance(ALICE.ss58_address))
            await asyncio.sleep(0.5)
            assert not read.done() and client.health["chain"] == "degraded"
            await devnet.start()
            assert await asyncio.wait_for(read, 10) > 0
        reconnected = [e for e in logs if e["event"] == "chain_reconnected"]
        assert reconnected and reconnected[0]["attempt"] > 1 and reconnected[0]["url"] == devnet.url
        assert client.health["chain"] == "ok"


async def test_clients_of_one_chain_share_one_loaded_runtime_and_another_metadata_gets_its_own():
    """Decoding the metadata costs 0.7–1 s of CPU per load: a process loads it once per chain and metadata
    (``chain.runtime``), and a client made after another has closed still signs with it."""
    dest = fresh()
    async with InProcessDevnet() as devnet:
        async with await devnet.client() as first:
            await first.submit(ALICE, "Balances", "transfer_keep_alive", {"dest": dest, "value": UNIT})
            loaded = await first.runtime.full()
        async with await devnet.client() as second:
            await second.submit(ALICE, "Balances", "transfer_keep_alive", {"dest": dest, "value": UNIT})
            assert await second.runtime.full() is loaded
            assert await second.free_balance(dest) == 2 * UNIT
    async with InProcessDevnet(pallet="upstream") as other, await other.client() as client:
        assert client.runtime.schema.key != second.runtime.schema.key
        await client.submit(ALICE, "Balances", "transfer_keep_alive", {"dest": dest, "value": UNIT})
        assert await client.runtime.full() is not loaded
        assert await client.free_balance(dest) == UNIT
