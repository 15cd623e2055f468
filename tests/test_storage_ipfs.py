"""The IPFS RPC backend against the real UnixFS importer/exporter (the JS libraries IPFS nodes use),
behind a minimal /api/v0/add + /api/v0/cat endpoint (tests/js_ipfs/ipfs_rpc.mjs): no IPFS daemon
installs on our machines, so the daemon's HTTP layer itself is not exercised here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from devnet_process import free_port
from node_packages import installed, needs_node
from servers import server_process
from test_storage import same_tree, tutorial_assets

from decentralml_core.storage import IpfsRpcStore, NotFound, get_folder, put_folder
from decentralml_core.storage.cid import CHUNK, cid_of

pytestmark = [pytest.mark.node, needs_node]


@pytest.fixture(scope="module")
def ipfs_api():
    folder = installed(Path(__file__).parent / "js_ipfs", "ipfs_rpc.mjs")
    port = free_port()
    with server_process(["node", "ipfs_rpc.mjs", str(port)], port, cwd=folder) as url:
        yield url


async def test_cids_equal_ipfs_add_raw_leaves(ipfs_api):
    store = IpfsRpcStore(ipfs_api)
    assert await store.put(b"hello") == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    block = os.urandom(CHUNK)  # exactly one chunk: still a single raw block for IPFS
    assert await store.put(block) == cid_of(block)
    assert await store.get(cid_of(block), CHUNK) == block
    with pytest.raises(NotFound):
        await store.get(cid_of(b"never added"), 100)


async def test_our_blocks_are_the_leaves_ipfs_makes_of_a_large_file(ipfs_api, tmp_path):
    """IPFS adds a 3-chunk file as a UnixFS DAG; each of our blocks is one of its raw leaves."""
    import aiohttp

    data = os.urandom(CHUNK * 2 + 1000)
    form = aiohttp.FormData()
    form.add_field("file", data, filename="big.bin")
    async with aiohttp.ClientSession() as s, s.post(f"{ipfs_api}/api/v0/add?cid-version=1&raw-leaves=true",
                                                    data=form) as r:
        root = (await r.json(content_type=None))["Hash"]
    assert root.startswith("bafybei")  # a dag-pb root: we do not compute it (see the module docstring)
    store = IpfsRpcStore(ipfs_api)
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
    assert [await store.get(cid_of(c), CHUNK) for c in chunks] == chunks


async def test_folder_round_trip_through_ipfs(ipfs_api, tmp_path):
    src = tutorial_assets(tmp_path / "assets")
    store = IpfsRpcStore(ipfs_api)
    ref = await put_folder(store, src)
    assert same_tree(src, await get_folder(store, ref, tmp_path / "out"))
