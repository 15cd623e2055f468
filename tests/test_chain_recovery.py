"""Extrinsics a node drops are recovered by the chain client: a real devnet killed with them in its pool,
an endpoint that accepts extrinsics and silently drops them, and a node that comes back as another chain."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from devnet_process import DevnetProcess, free_port
from structlog.testing import capture_logs
from substrateinterface import Keypair

from decentralml_core.chain import ChainChanged, ChainClient, InclusionTimeout

ALICE = Keypair.create_from_uri("//Alice")
UNIT = 10**12


def fresh() -> str:
    return Keypair.create_from_mnemonic(Keypair.generate_mnemonic()).ss58_address


async def transfers_to(client: ChainClient, dest: str) -> list[int]:
    """Every Balances.Transfer to ``dest`` on the chain, by amount: a resend landing twice would show here."""
    amounts = []
    for number in range(1, await client.block_number() + 1):
        amounts += [e.attributes["amount"] for e in await client.events_at(number)
                    if (e.pallet, e.name) == ("Balances", "Transfer") and e.attributes["to"] == dest]
    return amounts


async def held(client: ChainClient, count: int) -> None:
    while len(client._inflight) < count:
        await asyncio.sleep(0.01)


async def test_extrinsics_in_a_killed_nodes_pool_are_resent_and_land_once(tmp_path):
    """Blocks every 4 s; three transfers wait in the pool when the node is killed: after the restart the
    client resends the same bytes in nonce order, each lands once, and the next transfer is not stuck
    behind a gap (before: its nonce followed the lost ones and it waited until the task expired)."""
    port, db = free_port(), str(tmp_path / "chain.sqlite")
    node = DevnetProcess("--block-time", "4", db=db, port=port, log_path=tmp_path / "devnet.log").start(timeout=90)
    dest = fresh()
    try:
        async with await ChainClient.connect(node.url, reconnect_for=90, inclusion_timeout=120) as client:
            await client.submit(ALICE, "System", "remark", {"remark": "0x01"})  # just after a block: ~4 s to the next
            with capture_logs() as logs:
                pending = [asyncio.create_task(client.submit(ALICE, "Balances", "transfer_keep_alive",
                                                             {"dest": dest, "value": UNIT + i})) for i in range(3)]
                await asyncio.wait_for(held(client, 3), 10)
                assert await client.pool_backlog(ALICE.ss58_address) == 3
                node.stop(kill=True)  # the pool dies with the process; the blocks (SQLite) do not
                node.start(timeout=90)
                receipts = await asyncio.wait_for(asyncio.gather(*pending), 90)
                after = await asyncio.wait_for(client.submit(ALICE, "Balances", "transfer_keep_alive",
                                                             {"dest": dest, "value": UNIT + 3}), 60)
            assert sorted(await transfers_to(client, dest)) == [UNIT + i for i in range(4)]
            assert after.block_number >= max(r.block_number for r in receipts)
            recovered = [e for e in logs if e["event"] == "extrinsics_recovered"]
            # reconnected, or stalled first when the restart outlasts the 10 s stall watch (a loaded machine):
            # either way the three are resent, and landed once each (the transfers above)
            assert recovered and {e["reason"] for e in recovered} <= {"reconnected", "stalled"}, logs
            assert max(e["resent"] for e in recovered) == 3, logs
            assert client.health["chain"] == "ok" and client.health["in_flight"] == 0
    finally:
        node.stop()


class DroppingEndpoint:
    """A WebSocket front for a node that answers the first ``drops`` extrinsic submissions with a hash,
    as a node does, and never passes them on: a pool eviction or a load balancer's bad backend."""

    def __init__(self, upstream: str, drops: int) -> None:
        self.upstream, self.drops, self.port = upstream, drops, free_port()
        self.dropped: list[str] = []

    async def __aenter__(self) -> DroppingEndpoint:
        app = web.Application()
        app.router.add_get("/", self.serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async with aiohttp.ClientSession() as session, session.ws_connect(self.upstream, max_msg_size=0) as up:
            async def down() -> None:
                async for msg in up:
                    await ws.send_str(msg.data)
            relay = asyncio.create_task(down())
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                req = json.loads(msg.data)  # a batch (a list) is relayed as it is: no extrinsic goes in one
                if isinstance(req, dict) and req.get("method") == "author_submitExtrinsic" and self.drops > 0:
                    self.drops -= 1
                    self.dropped.append(req["params"][0])
                    await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": "0x" + "00" * 32}))
                    continue
                await up.send_str(msg.data)
            relay.cancel()
        return ws


async def test_an_endpoint_that_silently_drops_an_extrinsic_is_noticed_and_the_extrinsic_resent(devnet):
    """The first of two transfers is swallowed, the second waits in the pool behind its nonce: the account
    stalls, the client reads its nonce and resends both in order, and both land once."""
    dest = fresh()
    async with DroppingEndpoint(devnet.url, drops=1) as endpoint, \
            await ChainClient.connect(f"ws://127.0.0.1:{endpoint.port}", stall_after=1.5) as client:
        with capture_logs() as logs:
            receipts = await asyncio.wait_for(asyncio.gather(*(
                client.submit(ALICE, "Balances", "transfer_keep_alive", {"dest": dest, "value": UNIT + i})
                for i in range(2))), 30)
        assert len(endpoint.dropped) == 1
        assert sorted(await transfers_to(client, dest)) == [UNIT, UNIT + 1]
        assert receipts[0].block_number <= receipts[1].block_number  # nonce order kept
        recovered = [e for e in logs if e["event"] == "extrinsics_recovered"]
        assert recovered and recovered[0]["reason"] == "stalled" and recovered[0]["resent"] >= 1, logs


async def test_a_step_retried_after_an_inclusion_timeout_joins_the_extrinsic_still_held(devnet):
    """A caller gave up waiting (the endpoint swallowed its extrinsic); the same call again, by key, waits
    for the held one instead of signing a second that the chain would refuse as done already."""
    dest = fresh()
    async with DroppingEndpoint(devnet.url, drops=1) as endpoint, \
            await ChainClient.connect(f"ws://127.0.0.1:{endpoint.port}", stall_after=3, inclusion_timeout=1) as client:
        call = ("Balances", "transfer_keep_alive", {"dest": dest, "value": UNIT})
        with pytest.raises(InclusionTimeout, match="not included in 1 s"):
            await client.submit(ALICE, *call, key="pay:1")
        client.inclusion_timeout = 30
        with capture_logs() as logs:
            await client.submit(ALICE, *call, key="pay:1")
        assert [e["event"] for e in logs if e["event"] == "extrinsic_joined"] == ["extrinsic_joined"]
        assert await transfers_to(client, dest) == [UNIT]


async def test_a_node_that_comes_back_as_another_chain_fails_what_is_held_and_every_stream(tmp_path):
    """A devnet restarted with --tmp has the same genesis but other blocks: nothing signed for the old
    chain may be resent there, and an agent's journal no longer describes it."""
    port = free_port()
    node = DevnetProcess(port=port).start(timeout=90)
    try:
        async with await ChainClient.connect(node.url, reconnect_for=90) as client:
            for i in range(3):
                await client.submit(ALICE, "System", "remark", {"remark": f"0x0{i}"})
            await asyncio.sleep(0.5)  # the follower has seen the blocks
            stream = client.events()
            next_event = asyncio.ensure_future(anext(stream))
            node.stop(kill=True)
            node.start(timeout=90)  # a fresh chain on the same port
            async with await ChainClient.connect(node.url) as other:  # the new chain reaches the old height
                for i in range(4):
                    await other.submit(Keypair.create_from_uri("//Bob"), "System", "remark", {"remark": f"0x1{i}"})
            with pytest.raises(ChainChanged, match="another chain"):
                await asyncio.wait_for(next_event, 60)
            with pytest.raises(ChainChanged):
                await client.submit(ALICE, "System", "remark", {"remark": "0x09"})
            assert client.health["chain"] == "failed"
    finally:
        node.stop()
