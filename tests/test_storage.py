"""Storage: CIDs, folders round trip, and hostile input (tampered bytes, traversal names, links,
oversize, dropped connections) against real servers: a gateway subprocess, a moto S3 server process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from devnet_process import free_port
from servers import app_server, server_process

from decentralml_core.storage import (
    FallbackStore,
    GatewayStore,
    IntegrityError,
    Limits,
    LocalStore,
    NotFound,
    S3Store,
    StorageConfig,
    StorageError,
    TooLarge,
    UnsafeName,
    UnsupportedStorage,
    credentials_for_chain,
    get_folder,
    open_store,
    put_folder,
)
from decentralml_core.storage.cid import CHUNK, cid_of, verify
from decentralml_core.storage.manifest import SCHEMA

CLI = str(Path(sys.executable).parent / "decentralml")


def tutorial_assets(root: Path) -> Path:
    """The data-annotation tutorial's asset layout, with one file spanning several blocks."""
    (root / "annotation_files").mkdir(parents=True)
    (root / "annotation_samples").mkdir()
    (root / "annotation_files" / "file_1.jpg").write_bytes(os.urandom(CHUNK * 2 + 123))
    (root / "annotation_files" / "file_2.jpg").write_bytes(b"\xff\xd8small jpeg")
    (root / "annotation_samples" / "sample_1.jpg").write_bytes(b"sample")
    (root / "start_task.sh").write_text("#!/bin/sh\nmkdir -p outputs\n")
    return root


def same_tree(a: Path, b: Path) -> bool:
    files = lambda r: {p.relative_to(r).as_posix(): p.read_bytes() for p in r.rglob("*") if p.is_file()}  # noqa: E731
    return files(a) == files(b)


def test_cids_match_ipfs_raw_leaves():
    assert cid_of(b"hello") == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    assert cid_of(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    with pytest.raises(IntegrityError, match="does not match"):
        verify(cid_of(b"hello"), b"hellO")
    with pytest.raises(IntegrityError, match="only raw sha2-256"):
        verify("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", b"x")  # a dag-pb CID
    with pytest.raises(IntegrityError, match="not a CID"):
        verify("../../etc/passwd", b"x")


async def test_folder_round_trip(tmp_path):
    src = tutorial_assets(tmp_path / "assets")
    store = LocalStore(tmp_path / "store")
    ref = await put_folder(store, src)
    assert ref == await put_folder(store, src)  # content addressed: same folder, same reference
    out = await get_folder(store, ref, tmp_path / "work" / "task-1")
    assert same_tree(src, out)
    with pytest.raises(StorageError, match="already exists"):
        await get_folder(store, ref, out)


async def test_tampered_block_is_refused_and_nothing_is_left(tmp_path):
    src = tutorial_assets(tmp_path / "assets")
    store = LocalStore(tmp_path / "store")
    ref = await put_folder(store, src)
    victim = store.path(cid_of((src / "annotation_samples" / "sample_1.jpg").read_bytes()))
    victim.write_bytes(b"evil")
    with pytest.raises(IntegrityError):
        await get_folder(store, ref, tmp_path / "work" / "t")
    assert list((tmp_path / "work").iterdir()) == []  # no partial folder


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../b", "a\x00b", "a\\..\\b", "C:evil", "",
                                  "a//b", "./a"])
async def test_hostile_names_in_a_manifest_are_refused(tmp_path, name):
    store = LocalStore(tmp_path / "store")
    block = await store.put(b"payload")
    manifest = json.dumps({"schema": SCHEMA, "files": [{"path": name, "size": 7, "blocks": [block]}]})
    ref = await store.put(manifest.encode())
    with pytest.raises(UnsafeName, match="unsafe|bad file name"):
        await get_folder(store, ref, tmp_path / "work" / "t")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "work").exists()  # refused before writing


async def test_inconsistent_manifests_are_refused(tmp_path):
    store = LocalStore(tmp_path / "store")
    block = await store.put(b"payload")
    for files in ([{"path": "a", "size": 7, "blocks": [block]}, {"path": "a", "size": 7, "blocks": [block]}],
                  [{"path": "a", "size": 7, "blocks": [block]}, {"path": "a/b", "size": 7, "blocks": [block]}],
                  [{"path": "a", "size": CHUNK + 1, "blocks": [block]}],
                  [{"path": "a", "size": 7, "blocks": ["not-a-cid"]}]):
        ref = await store.put(json.dumps({"schema": SCHEMA, "files": files}).encode())
        with pytest.raises(IntegrityError):
            await get_folder(store, ref, tmp_path / "work" / "t")
    liar = await store.put(json.dumps({"schema": SCHEMA, "files": [
        {"path": "a", "size": 8, "blocks": [block]}]}).encode())  # blocks hold 7 bytes
    with pytest.raises(StorageError, match="add up to 7 bytes"):
        await get_folder(store, liar, tmp_path / "work" / "t")


async def test_links_and_devices_are_not_published(tmp_path):
    src = tutorial_assets(tmp_path / "assets")
    (src / "annotation_files" / "link.jpg").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeName, match="symlink"):
        await put_folder(LocalStore(tmp_path / "store"), src)
    (src / "annotation_files" / "link.jpg").unlink()
    os.mkfifo(src / "pipe")
    with pytest.raises(UnsafeName, match="not a regular file"):
        await put_folder(LocalStore(tmp_path / "store"), src)


async def test_limits(tmp_path):
    src = tutorial_assets(tmp_path / "assets")
    store = LocalStore(tmp_path / "store")
    with pytest.raises(TooLarge, match="more than 2 files"):
        await put_folder(store, src, Limits(max_files=2))
    ref = await put_folder(store, src)
    with pytest.raises(TooLarge, match="limit is 1000"):
        await get_folder(store, ref, tmp_path / "w1", Limits(max_file=1000))
    with pytest.raises(TooLarge, match="totals"):
        await get_folder(store, ref, tmp_path / "w2", Limits(max_total=10_000))


def test_storage_types_and_credentials(tmp_path):
    config = StorageConfig(local_root=tmp_path / "store")
    for kind in ("GCP", "Azure", "Crust"):
        with pytest.raises(UnsupportedStorage, match=f"storage type {kind} is not supported"):
            open_store(kind, config)
    with pytest.raises(UnsupportedStorage, match="needs a bucket"):
        open_store("S3", config)
    assert credentials_for_chain(None) == "" and credentials_for_chain("") == ""
    with pytest.raises(StorageError, match="refusing to put storage credentials on chain"):
        credentials_for_chain("AKIA-secret")
    assert credentials_for_chain("AKIA-secret", publish=True) == "AKIA-secret"


async def test_gateway_serves_another_machine_and_fetchers_verify(tmp_path):
    src = tutorial_assets(tmp_path / "assets")
    creator = tmp_path / "creator-store"
    put = subprocess.run([CLI, "storage", "put", str(src), "--root", str(creator), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert put.returncode == 0, put.stderr
    ref = json.loads(put.stdout)["ref"]
    port = free_port()
    with server_process([CLI, "storage", "serve", "--root", str(creator), "--port", str(port)], port) as gateway:
        out = await get_folder(GatewayStore(gateway), ref, tmp_path / "annotator" / "t1")
        assert same_tree(src, out)
        with pytest.raises(NotFound):
            await GatewayStore(gateway).get(cid_of(b"never published"), 100)
        got = subprocess.run([CLI, "storage", "get", ref, str(tmp_path / "cli-copy"), "--gateway", gateway,
                              "--root", str(tmp_path / "empty-store")], capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        assert same_tree(src, tmp_path / "cli-copy")


async def test_lying_and_dropping_gateways(tmp_path):
    """A gateway serving wrong bytes is refused (the next source is used); a dropped body is an error."""
    src = tutorial_assets(tmp_path / "assets")
    good = LocalStore(tmp_path / "good")
    ref = await put_folder(good, src)

    async def lie(request):
        return web.Response(body=b"not what you asked for", content_type="application/vnd.ipld.raw")

    async def drop(request):
        resp = web.StreamResponse(headers={"Content-Length": str(CHUNK)})
        await resp.prepare(request)
        await resp.write(b"x" * 1000)
        request.transport.close()
        return resp

    async with app_server(web.get("/ipfs/{cid}", lie)) as liar, app_server(web.get("/ipfs/{cid}", drop)) as dropper:
        urls = {"lie": liar, "drop": dropper}
        with pytest.raises(IntegrityError):
            await get_folder(GatewayStore(urls["lie"]), ref, tmp_path / "w1")
        with pytest.raises(StorageError, match="failed"):
            await get_folder(GatewayStore(urls["drop"]), ref, tmp_path / "w2")
        assert not (tmp_path / "w1").exists() and not (tmp_path / "w2").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".w")] == []
        mixed = FallbackStore(good, [GatewayStore(urls["lie"]), GatewayStore(urls["drop"]), good])
        assert same_tree(src, await get_folder(mixed, ref, tmp_path / "w3"))


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """A real S3 endpoint: moto's standalone server in its own process."""
    port = free_port()
    with server_process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port) as url:
        yield url


async def test_s3_round_trip(tmp_path, s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    from aiobotocore.session import get_session

    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket="tasks")
    config = StorageConfig(local_root=tmp_path / "store", s3_bucket="tasks", s3_endpoint=s3_endpoint)
    store = open_store("S3", config)
    src = tutorial_assets(tmp_path / "assets")
    ref = await put_folder(store, src)
    assert same_tree(src, await get_folder(store, ref, tmp_path / "out"))
    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
        await s3.put_object(Bucket="tasks", Key=config.s3_prefix + cid_of(b"sample"), Body=b"swapped")
    with pytest.raises(IntegrityError):
        await get_folder(store, ref, tmp_path / "out2")
    with pytest.raises(NotFound):
        await S3Store("tasks", endpoint_url=s3_endpoint).get(cid_of(b"missing"), 100)
    with pytest.raises(StorageError):
        await asyncio.wait_for(S3Store("no-such-bucket", endpoint_url=s3_endpoint).put(b"x"), 30)


async def test_dropped_upload_is_a_clear_error(tmp_path):
    """An IPFS API that drops the connection mid-upload: the publish fails with a StorageError, no reference."""
    from decentralml_core.storage import IpfsRpcStore

    async def drop(request):
        await request.content.read(1000)
        request.transport.close()
        return web.Response()

    async with app_server(web.post("/api/v0/add", drop)) as url:
        with pytest.raises(StorageError, match="IPFS add at .* failed"):
            await put_folder(IpfsRpcStore(url), tutorial_assets(tmp_path / "assets"))


async def test_progress_reports_every_byte(tmp_path):
    src = tutorial_assets(tmp_path / "assets")
    store = LocalStore(tmp_path / "store")
    seen = []
    ref = await put_folder(store, src, progress=lambda done, total: seen.append((done, total)))
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert seen[-1] == (total, total) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    seen.clear()
    await get_folder(store, ref, tmp_path / "out", progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (total, total)
