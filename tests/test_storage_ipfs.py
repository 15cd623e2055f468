"""The IPFS RPC backend against the real UnixFS importer and exporter (the JS libraries IPFS nodes in JS
use), behind a minimal /api/v0 endpoint (tests/js_ipfs/ipfs_rpc.mjs: add, cat, block/put, block/get).

No IPFS daemon installs on our machines, so kubo's own HTTP layer, pinning, networking and its Go
importer are not exercised here; the CIDs kubo gives are covered by the importer's (same defaults).
"""

from __future__ import annotations

import aiohttp
import pytest
from devnet_process import free_port
from node_packages import installed, needs_node
from servers import server_process
from test_storage import same_tree, tutorial_assets
from test_storage_cid import BIG, VECTORS, data

from decentralml_core.storage import IpfsRpcStore, NotFound, file_cid, get_blob, get_folder, put_blob, put_folder
from decentralml_core.storage.cid import CHUNK, cid_of

pytestmark = [pytest.mark.node, needs_node]


@pytest.fixture(scope="module")
def ipfs_api():
    from pathlib import Path

    folder = installed(Path(__file__).parent / "js_ipfs", "ipfs_rpc.mjs")
    port = free_port()
    with server_process(["node", "ipfs_rpc.mjs", str(port)], port, cwd=folder) as url:
        yield url


async def add(api: str, content: bytes, params: str) -> str:
    """``ipfs add`` by hand, with the given parameters: what any IPFS client would send."""
    form = aiohttp.FormData()
    form.add_field("file", content, filename="f")
    async with aiohttp.ClientSession() as s, s.post(f"{api}/api/v0/add?{params}", data=form) as r:
        assert r.status == 200, await r.text()
        return (await r.json(content_type=None))["Hash"]


async def cat(api: str, cid: str) -> bytes:
    async with aiohttp.ClientSession() as s, s.post(f"{api}/api/v0/cat?arg={cid}") as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def test_add_gives_the_cids_we_compute(ipfs_api):
    store = IpfsRpcStore(ipfs_api)
    assert await store.put(b"hello") == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    for size, cid in [*VECTORS.items(), BIG]:
        content = data(size)
        assert await store.add_file(content, size) == file_cid(content) == cid, size
    with pytest.raises(NotFound):
        await store.get(cid_of(b"never added"), 100)


async def test_folder_round_trip_through_ipfs(ipfs_api, tmp_path):
    src = tutorial_assets(tmp_path / "assets")
    store = IpfsRpcStore(ipfs_api)
    ref = await put_folder(store, src)  # files go in with add, and the node's CIDs are checked
    assert same_tree(src, await get_folder(store, ref, tmp_path / "out"))  # blocks come out with block/get
    big = (src / "annotation_files" / "file_1.jpg").read_bytes()
    assert await cat(ipfs_api, file_cid(big)) == big  # the node serves the files under the CIDs in the manifest


class BlocksOnly:
    """The IPFS store without its whole-file import: blocks and dag-pb nodes we build go in one by one."""

    name = "ipfs-blocks"

    def __init__(self, store: IpfsRpcStore) -> None:
        self.put, self.get = store.put, store.get


async def test_the_real_exporter_reads_dags_we_build(ipfs_api):
    content = data(3 * CHUNK + 1000)
    root = await put_blob(BlocksOnly(IpfsRpcStore(ipfs_api)), content)  # leaves with add, nodes with block/put
    assert root == VECTORS[3 * CHUNK + 1000]
    assert await cat(ipfs_api, root) == content


async def test_we_read_dags_other_importers_build(ipfs_api):
    """Other chunk sizes, and CIDv0 files whose leaves are dag-pb nodes holding data (no raw leaves)."""
    store = IpfsRpcStore(ipfs_api)
    content = data(200_000)
    small_chunks = await add(ipfs_api, content, "cid-version=1&raw-leaves=true&chunker=size-1000")
    assert small_chunks.startswith("bafybei") and small_chunks != file_cid(content)
    assert await get_blob(store, small_chunks, len(content)) == content
    v0 = await add(ipfs_api, content, "cid-version=0&raw-leaves=false&chunker=size-65536")
    assert v0.startswith("Qm")
    assert await get_blob(store, v0, len(content)) == content
