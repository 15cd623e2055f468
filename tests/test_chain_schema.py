"""The read schema (decentralml_core/chain/schema.py) against a real devnet: what it decodes equals what
substrate-interface decodes from the whole metadata, its cache is keyed by the metadata and survives
nothing stale or corrupt, and a read-only command needs neither substrate-interface nor aiohttp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from substrateinterface import Keypair

from decentralml_core.chain import ChainClient, Checkpoint
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import (
    AnnotationType,
    ResultSpec,
    StorageType,
    TaskSpec,
    TaskTerms,
    TaskType,
    ValidationStrategy,
)
from decentralml_core.chain.schema import SchemaCache, default_cache_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return default_cache_dir()


async def market_with_data(client: ChainClient) -> None:
    """A task with terms and a client token, assigned and answered: every market map has rows."""
    alice, bob = Keypair.create_from_uri("//Alice"), Keypair.create_from_uri("//Bob")
    market = Market(client)
    end = await client.block_number() + 500
    spec = TaskSpec(task_type=TaskType.DATA_ANNOTATORS, question="schema", pays_amount=1000, expiration_block=end,
                    max_assignments=2, validation_strategy=ValidationStrategy.MANUAL_ACCEPT,
                    annotation_type=AnnotationType.IMAGE, annotation_files=["a.jpg"],
                    annotation_files_storage_type=StorageType.IPFS)
    task_id, _ = await market.create_task(alice, spec, TaskTerms(submit_within=50, review_window=50), client_token="schema-1")
    sid, _ = await market.assign_task(bob, task_id)
    await market.send_task_result(bob, ResultSpec(sid, result="{}", result_path="bafy-outputs",
                                                         result_storage_type=StorageType.IPFS,
                                                         result_storage_credentials=""))


async def raw_rows(client: ChainClient, prefix: str) -> list[tuple[str, str]]:
    keys = await client.request("state_getKeysPaged", [prefix, 1000, prefix])
    if not keys:
        return []
    groups = await client.request("state_queryStorageAt", [keys])
    return [(k, v) for group in groups for k, v in group["changes"] if v is not None]


async def test_every_read_item_decodes_and_keys_as_the_full_runtime_does(devnet, cache_home):
    async with await ChainClient.connect(devnet.url) as client:
        await market_with_data(client)
        runtime, schema = client.runtime, client.runtime.schema
        si = await runtime.full()
        compared = 0
        for pallet, items in schema.data["storage"].items():
            for name, item in items.items():
                prefix = await runtime.storage_key(pallet, name)
                assert prefix == si.create_storage_key(pallet, name, []).to_hex()  # every item, read or not
                if not item["readable"]:
                    continue
                if not item["key_types"]:
                    raw = await client.request("state_getStorage", [prefix])
                    raw = raw or schema.default_hex(pallet, name)
                    if raw is not None:
                        assert schema.decode(item["value_type"], raw) == runtime._decode(item["value_type"], raw)
                        compared += 1
                    continue
                rows = await raw_rows(client, prefix)
                ours = await runtime.decode_map(pallet, name, prefix, rows)
                for (key_hex, value_hex), (key, value) in zip(rows, ours, strict=True):
                    assert value == runtime._decode(item["value_type"], value_hex)
                    params = list(key) if isinstance(key, tuple) else [key]
                    assert await runtime.storage_key(pallet, name, params) == key_hex
                    assert si.create_storage_key(pallet, name, params).to_hex() == key_hex
                    compared += 1
        assert compared >= 20
        assert schema.ss58_format == si.ss58_format
        for pallet in si.metadata.pallets:
            assert all(runtime.has_call(pallet.name, c.name) for c in pallet.calls or [])
            for index, error in enumerate(pallet.errors or []):
                assert runtime.module_error(pallet["index"].value, index)[:2] == (pallet.name, error.name)
        assert not runtime.has_call("DecentralMLModule", "no_such_call")


async def test_a_second_connect_reads_from_the_cache_and_loads_the_rest_on_first_need(devnet, cache_home):
    async with await ChainClient.connect(devnet.url) as first:
        assert first.runtime._si is not None  # nothing cached: the full runtime, and its schema written
        expected = await Market(first).tasks()
    assert [p.name for p in cache_home.iterdir()] == [SchemaCache(cache_home).path(first.runtime.schema.key).name]
    async with await ChainClient.connect(devnet.url) as client:
        assert client.runtime._si is None
        assert await Market(client).tasks() == expected
        assert (await client.storage("System", "Account", [Keypair.create_from_uri("//Alice").ss58_address]))["nonce"]
        assert client.runtime._si is None  # reads of the market and balances need nothing else
        receipt = await client.submit(Keypair.create_from_uri("//Alice"), "System", "remark_with_event",
                                      {"remark": "0x6869"})  # signing and events load it
        assert receipt.find("System", "Remarked") and client.runtime._si is not None


async def test_an_event_stream_reads_events_through_the_cached_schema_without_the_full_runtime(devnet, cache_home):
    """An agent catching up after an outage splits and decodes events with the schema's types: it does not
    wait for substrate-interface to load the whole runtime first (1.1 s of CPU at every start)."""
    alice = Keypair.create_from_uri("//Alice")
    async with await ChainClient.connect(devnet.url) as first:
        receipt = await first.submit(alice, "System", "remark_with_event", {"remark": "0x6869"})
        expected = [(e.pallet, e.name, e.attributes) for n in range(1, receipt.block_number + 1)
                    for e in await first.events_at(n)]
    async with await ChainClient.connect(devnet.url) as client:
        seen = []
        async for event in client.events(Checkpoint(1)):
            seen.append((event.pallet, event.name, event.attributes))
            if len(seen) == len(expected):
                break
        assert seen == expected and ("System", "Remarked") in [s[:2] for s in seen]
        assert client.runtime._si is None


async def test_a_corrupt_or_foreign_cache_entry_is_a_miss_and_is_rewritten(devnet, cache_home):
    async with await ChainClient.connect(devnet.url) as client:
        key = client.runtime.schema.key
    path = SchemaCache(cache_home).path(key)
    good = json.loads(path.read_text())
    for bad in ("{not json", json.dumps({**good, "version": 0}), json.dumps({**good, "metadata_hash": "00" * 32})):
        path.write_text(bad)
        assert SchemaCache(cache_home).get(key) is None
        async with await ChainClient.connect(devnet.url) as client:
            assert client.runtime._si is not None and client.runtime.schema.key == key
        assert json.loads(path.read_text()) == good


def test_task_list_imports_neither_substrate_interface_nor_aiohttp(devnet, tmp_path):
    """``task list`` reads through the cached schema and the websockets transport, and configures logging
    lazily (docs/benchmarks.md: the import of substrate-interface and the decoding of the metadata were
    most of its 1.9 s; aiohttp and structlog most of the rest)."""
    probe = ("import sys; from agents.cli import main; code = main(sys.argv[1:]); print('LOADED', sorted("
             "m for m in ('substrateinterface', 'aiohttp', 'anyio', 'structlog') if m in sys.modules)); "
             "sys.exit(code)")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    runs = [subprocess.run([sys.executable, "-c", probe, "task", "list", "--url", devnet.url, "--json"],
                           capture_output=True, text=True, env=env, timeout=120) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr
    assert "'substrateinterface'" in runs[0].stdout.split("LOADED")[1]  # the first: full runtime, then cached
    assert "LOADED []" in runs[1].stdout
    assert json.loads(runs[0].stdout.split("LOADED")[0]) == json.loads(runs[1].stdout.split("LOADED")[0])
