"""The devnet's JSON-RPC edge, spoken to over a raw WebSocket: errors, batches, abuse, subscriptions."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import ClientSession, WSCloseCode, WSMsgType
from substrateinterface import SubstrateInterface

from decentralml_core.devnet.codec import compact_bytes
from decentralml_core.devnet.server import FINALITY_LAG

pytestmark = pytest.mark.asyncio


async def rpc(ws, method, params=None, req_id=1):
    await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params or []}))
    return json.loads((await ws.receive(timeout=10)).data)


async def test_connect_methods_answer_like_a_node(devnet):
    async with ClientSession() as s, s.ws_connect(devnet.url) as ws:
        methods = (await rpc(ws, "rpc_methods"))["result"]["methods"]
        for needed in ("chain_getBlockHash", "state_getMetadata", "state_getStorage", "state_getKeysPaged",
                       "author_submitAndWatchExtrinsic", "chain_subscribeNewHeads", "state_subscribeStorage",
                       "state_call", "system_accountNextIndex", "payment_queryInfo"):
            assert needed in methods
        genesis = (await rpc(ws, "chain_getBlockHash", [0]))["result"]
        assert genesis.startswith("0x") and len(genesis) == 66
        version = (await rpc(ws, "state_getRuntimeVersion"))["result"]
        assert (version["specName"], version["specVersion"], version["transactionVersion"]) == ("node-template", 100, 1)
        props = (await rpc(ws, "system_properties"))["result"]
        assert props == {"ss58Format": 42, "tokenDecimals": 12, "tokenSymbol": "UNIT"}
        meta = (await rpc(ws, "state_getMetadata"))["result"]
        assert meta.startswith("0x6d6574610e")  # "meta" magic, then version 14
        assert (await rpc(ws, "chain_getBlockHash", [10**6]))["result"] is None


async def test_protocol_errors_keep_the_connection_usable(devnet):
    async with ClientSession() as s, s.ws_connect(devnet.url) as ws:
        assert (await rpc(ws, "no_such_method"))["error"]["code"] == -32601
        await ws.send_str("{not json")
        assert json.loads((await ws.receive(timeout=10)).data)["error"]["code"] == -32700
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 3, "params": []}))
        assert json.loads((await ws.receive(timeout=10)).data)["error"]["code"] == -32600
        await ws.send_str(json.dumps([1, 2]))
        replies = json.loads((await ws.receive(timeout=10)).data)
        assert [r["error"]["code"] for r in replies] == [-32600, -32600]
        assert (await rpc(ws, "state_getStorage", ["nothex"]))["error"]["code"] == -32602
        assert (await rpc(ws, "chain_getHeader", ["0x" + "11" * 32]))["error"]["code"] == 4003
        assert (await rpc(ws, "chain_getBlockHash", [-1]))["error"]["code"] == -32602
        await ws.send_bytes(b"\xff\xfe\x00")
        assert json.loads((await ws.receive(timeout=10)).data)["error"]["code"] == -32700
        await ws.send_str("[" * 100_000 + "]" * 100_000)  # nesting deeper than any parser allows
        assert json.loads((await ws.receive(timeout=10)).data)["error"]["code"] == -32700
        # still serving on the same connection
        assert (await rpc(ws, "system_chain"))["result"] == "Development"


async def test_batch_requests(devnet):
    async with ClientSession() as s, s.ws_connect(devnet.url) as ws:
        await ws.send_str(json.dumps([
            {"jsonrpc": "2.0", "id": 1, "method": "system_chain", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "system_name", "params": []},
            {"jsonrpc": "2.0", "method": "system_chain", "params": []},  # a notification: no reply
        ]))
        replies = json.loads((await ws.receive(timeout=10)).data)
        assert [r["id"] for r in replies] == [1, 2]


async def test_oversized_frame_closes_only_that_connection(devnet):
    async with ClientSession() as s:
        async with s.ws_connect(devnet.url, max_msg_size=0) as ws:
            try:  # the server may close while the 17 MiB frame is still being written
                await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "system_chain",
                                              "params": ["x" * (17 * 1024 * 1024)]}))
                msg = await ws.receive(timeout=30)
                assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
                assert msg.type != WSMsgType.CLOSE or msg.data == WSCloseCode.MESSAGE_TOO_BIG
            except ConnectionError:
                pass
        async with s.ws_connect(devnet.url) as ws:
            assert (await rpc(ws, "system_chain"))["result"] == "Development"


async def test_http_post_transport(devnet):
    async with ClientSession() as s:
        async with s.post(devnet.http_url, json={"jsonrpc": "2.0", "id": 7, "method": "system_chain"}) as r:
            assert (await r.json()) == {"jsonrpc": "2.0", "id": 7, "result": "Development"}
        async with s.post(devnet.http_url, json={"jsonrpc": "2.0", "id": 8,
                                                 "method": "chain_subscribeNewHeads"}) as r:
            assert (await r.json())["error"]["code"] == -32000


async def test_subscriptions_send_current_value_then_unsubscribe(devnet):
    async with ClientSession() as s, s.ws_connect(devnet.url) as ws:
        sub = (await rpc(ws, "chain_subscribeNewHeads"))["result"]
        head = json.loads((await ws.receive(timeout=10)).data)
        assert head["method"] == "chain_newHead" and head["params"]["subscription"] == sub
        assert set(head["params"]["result"]) == {"parentHash", "number", "stateRoot", "extrinsicsRoot", "digest"}
        assert (await rpc(ws, "chain_unsubscribeNewHeads", [sub], req_id=2))["result"] is True
        assert (await rpc(ws, "chain_unsubscribeNewHeads", [sub], req_id=3))["result"] is False
        version_sub = await rpc(ws, "state_subscribeRuntimeVersion", req_id=4)
        note = json.loads((await ws.receive(timeout=10)).data)
        assert note["params"]["subscription"] == version_sub["result"]
        assert note["params"]["result"]["specVersion"] == 100


async def test_metadata_runtime_api_v2(devnet):
    """What @polkadot/api asks first: the metadata versions, then V14 by version, at any block."""
    async with ClientSession() as s, s.ws_connect(devnet.url) as ws:
        apis = dict((await rpc(ws, "state_getRuntimeVersion"))["result"]["apis"])
        assert apis["0x37e397fc7c91f5e4"] == 2
        meta = bytes.fromhex((await rpc(ws, "state_getMetadata"))["result"][2:])
        genesis = (await rpc(ws, "chain_getBlockHash", [0]))["result"]
        opaque = "0x" + (compact_bytes(len(meta)) + meta).hex()

        async def call(method, data, *at):
            return await rpc(ws, "state_call", [method, data, *at])

        assert (await call("Metadata_metadata_versions", "0x"))["result"] == "0x040e000000"  # Vec<u32> [14]
        assert (await call("Metadata_metadata_at_version", "0x0e000000", genesis))["result"] == "0x01" + opaque[2:]
        assert (await call("Metadata_metadata_at_version", "0x0f000000"))["result"] == "0x00"  # None
        assert (await call("Metadata_metadata", "0x", genesis))["result"] == opaque
        assert (await call("Metadata_metadata_at_version", "0x0e"))["error"]["code"] == -32602
        assert (await call("Metadata_metadata_versions", "0x", "0x" + "11" * 32))["error"]["code"] == 4003


async def test_transaction_payment_api_quotes_the_fee_charged(devnet, keys):
    si = SubstrateInterface(url=devnet.url)
    call = si.compose_call("Balances", "transfer_keep_alive", {"dest": keys["bob"].ss58_address, "value": 10**6})
    quote = si.get_payment_info(call, keys["charlie"])  # state_call TransactionPaymentApi_query_info
    assert quote["class"] == "Normal" and quote["weight"]["ref_time"] > 0
    xt = si.create_signed_extrinsic(call, keypair=keys["charlie"])
    async with ClientSession() as s, s.ws_connect(devnet.url) as ws:
        info = (await rpc(ws, "payment_queryInfo", [str(xt.data)]))["result"]
        assert int(info["partialFee"]) == quote["partialFee"]
        truncated = await rpc(ws, "state_call", ["TransactionPaymentApi_query_info", str(xt.data)])  # no u32 length
        assert truncated["error"]["code"] == -32602
    assert si.submit_extrinsic(xt, wait_for_inclusion=True).total_fee_amount == quote["partialFee"]
    si.close()


async def test_watched_extrinsic_is_finalized_a_moment_after_in_block(devnet, keys):
    """`finalized` trails `inBlock` by FINALITY_LAG (or never comes once unwatched)."""
    si = SubstrateInterface(url=devnet.url)
    nonce = si.get_account_nonce(keys["dave"].ss58_address)
    remarks = [str(si.create_signed_extrinsic(si.compose_call("System", "remark", {"remark": f"0x0{i}"}),
                                              keypair=keys["dave"], nonce=nonce + i).data) for i in range(2)]
    si.close()
    async with ClientSession() as s, s.ws_connect(devnet.url) as ws:
        sub = (await rpc(ws, "author_submitAndWatchExtrinsic", [remarks[0]]))["result"]
        updates, times = [], []
        while len(updates) < 3:
            note = json.loads((await ws.receive(timeout=10)).data)
            assert note["params"]["subscription"] == sub
            updates.append(note["params"]["result"])
            times.append(time.monotonic())
        assert updates[0] == "ready" and updates[1]["inBlock"] == updates[2]["finalized"]
        assert times[2] - times[1] >= FINALITY_LAG * 0.9

        sub = (await rpc(ws, "author_submitAndWatchExtrinsic", [remarks[1]], req_id=2))["result"]
        assert json.loads((await ws.receive(timeout=10)).data)["params"]["result"] == "ready"
        assert "inBlock" in json.loads((await ws.receive(timeout=10)).data)["params"]["result"]
        assert (await rpc(ws, "author_unwatchExtrinsic", [sub], req_id=3))["result"] is True
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=FINALITY_LAG * 2)
