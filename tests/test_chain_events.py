"""Events split into records by their layout (decentralml_core/chain/events.py), each decoded when read, against
a real devnet: the same pallets, names, phases and attributes as substrate-interface's whole-block decode;
bytes that do not follow the layout fall back to that decode (and fail as it fails)."""

from __future__ import annotations

import threading

import pytest
from substrateinterface import Keypair
from test_chain_schema import market_with_data

from decentralml_core.chain import ChainClient
from decentralml_core.chain.events import MalformedEvents


async def test_every_event_reads_as_the_whole_block_decode_gives_it(devnet):
    alice, bob = Keypair.create_from_uri("//Alice"), Keypair.create_from_uri("//Bob")
    async with await ChainClient.connect(devnet.url) as client:
        start = await client.block_number()
        await market_with_data(client)
        await client.submit(alice, "Balances", "transfer_keep_alive", {"dest": bob.ss58_address, "value": 10**12})
        await client.submit(alice, "System", "remark_with_event", {"remark": "0x0102"})
        head = await client.block_number()
        runtime, kinds = client.runtime, set()
        for number in range(max(start, 1), head + 1):
            block_hash = await client.block_hash(number)
            raw = await client.request("state_getStorage", [client._events_key, block_hash])
            ours = await runtime.decode_events(number, block_hash, raw)
            whole = await runtime._decode_events_whole(number, block_hash, raw)
            assert [(e.index, e.extrinsic_index, e.pallet, e.name) for e in ours] == \
                   [(e.index, e.extrinsic_index, e.pallet, e.name) for e in whole]
            assert [e.attributes for e in ours] == [e.attributes for e in whole]
            kinds |= {(e.pallet, e.name) for e in ours}
        assert {("DecentralMLModule", "TaskCreated"), ("DecentralMLModule", "TaskResultSubmitted"),
                ("Balances", "Transfer"), ("System", "Remarked"), ("System", "ExtrinsicSuccess")} <= kinds


async def test_attributes_read_from_other_threads_at_once_decode_alike(devnet):
    """A record's decoder has a registry of its own: reads from several threads do not mix (scale.py's race)."""
    alice, bob = Keypair.create_from_uri("//Alice"), Keypair.create_from_uri("//Bob")
    async with await ChainClient.connect(devnet.url) as client:
        await client.submit(alice, "Balances", "transfer_keep_alive", {"dest": bob.ss58_address, "value": 10**12})
        head = await client.block_number()
        expected = []
        for number in range(1, head + 1):
            block_hash = await client.block_hash(number)
            raw = await client.request("state_getStorage", [client._events_key, block_hash])
            if raw:
                expected += [e.attributes for e in await client.runtime._decode_events_whole(number, block_hash, raw)]
        fresh = []
        for _ in range(4):
            client._decoded.clear()  # each list its own unread events
            fresh.append([e for n in range(1, head + 1) for e in await client.events_at(n)])
        seen: list[list] = [[] for _ in fresh]
        threads = [threading.Thread(target=lambda i=i: seen[i].extend(e.attributes for e in fresh[i]))
                   for i in range(len(fresh))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert seen == [expected] * len(fresh)


async def test_bytes_off_the_layout_fall_back_to_the_whole_decode(devnet):
    async with await ChainClient.connect(devnet.url) as client:
        number = await client.block_number()
        block_hash = await client.block_hash(number)
        raw = await client.request("state_getStorage", [client._events_key, block_hash])
        layout, _ = await client.runtime._events_reader()
        with pytest.raises(MalformedEvents):
            layout.records(bytes.fromhex(raw[2:]) + b"\x00")  # a byte too many
        with pytest.raises(MalformedEvents):
            layout.records(bytes.fromhex(raw[2:])[:-1])  # a byte short
        with pytest.raises(Exception):  # noqa: B017 — substrate-interface's own error, whatever its class
            await client.runtime.decode_events(number, block_hash, "0x08ffff")  # two events of no pallet


async def test_a_real_runtimes_events_read_as_the_whole_block_decode_gives_them(real_node):
    """A real Substrate runtime's types (weights, dispatch info, its own pallets) walk to the same records."""
    alice = Keypair.create_from_uri("//Alice")
    async with await ChainClient.connect(real_node.url, inclusion_timeout=180) as client:
        receipt = await client.submit(alice, "System", "remark_with_event", {"remark": "0x0102"})
        compared = 0
        for number in range(max(receipt.block_number - 3, 1), receipt.block_number + 1):
            block_hash = await client.block_hash(number)
            raw = await client.request("state_getStorage", [client._events_key, block_hash])
            if not raw:
                continue
            layout, _ = await client.runtime._events_reader()
            layout.records(bytes.fromhex(raw[2:]))  # walks the layout: no fallback
            ours = await client.runtime.decode_events(number, block_hash, raw)
            whole = await client.runtime._decode_events_whole(number, block_hash, raw)
            assert [(e.index, e.extrinsic_index, e.pallet, e.name, e.attributes) for e in ours] == \
                   [(e.index, e.extrinsic_index, e.pallet, e.name, e.attributes) for e in whole]
            compared += len(ours)
        assert compared >= 3
