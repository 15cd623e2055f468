"""Storage: folders round trip, and hostile input (tampered bytes, traversal names, links, oversize,
dropped connections) against real servers: a gateway subprocess, a moto S3 server process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from devnet_process import free_port
from servers import app_server, server_process, serving
from structlog.testing import capture_logs

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
    file_cid,
    gateway_app,
    get_blob,
    get_folder,
    get_manifest,
    open_store,
    put_blob,
    put_folder,
)
from decentralml_core.storage.cid import CHUNK, cid_of
from decentralml_core.storage.manifest import SCHEMA
from decentralml_core.storage.safety import create_new, open_regular

CLI = str(Path(sys.executable).parent / "decentralml")
RAW = "application/vnd.ipld.raw"


def tutorial_assets(root: Path) -> Path:
    """The data-annotation tutorial's asset layout, with one file spanning several chunks (a UnixFS DAG)."""
    (root / "annotation_files").mkdir(parents=True)
    (root / "annotation_samples").mkdir()
    (root / "annotation_files" / "file_1.jpg").write_bytes(os.urandom(CHUNK * 2 + 123))
    (root / "annotation_files" / "file_2.jpg").write_bytes(b"\xff\xd8small jpeg")
    (root / "annotation_samples" / "sample_1.jpg").write_bytes(b"sample")
    (root / "annotation_samples" / "empty.txt").write_bytes(b"")
    (root / "start_task.sh").write_text("#!/bin/sh\nmkdir -p outputs\n")
    return root


def same_tree(a: Path, b: Path) -> bool:
    files = lambda r: {p.relative_to(r).as_posix(): p.read_bytes() for p in r.rglob("*") if p.is_file()}  # noqa: E731
    return files(a) == files(b)


def no_leftovers(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".partial-" in p.name]


async def publish_manifest(store: LocalStore, files: list[dict]) -> str:
    return await put_blob(store, json.dumps({"schema": SCHEMA, "files": files}).encode())


async def test_folder_round_trip(tmp_path):
    src = tutorial_assets(tmp_path / "assets")
    store = LocalStore(tmp_path / "store")
    ref = await put_folder(store, src)
    assert ref == await put_folder(store, src)  # content addressed: same folder, same reference
    out = await get_folder(store, ref, tmp_path / "work" / "task-1")
    assert same_tree(src, out)
    manifest = await get_manifest(store, ref)
    big = next(f for f in manifest.files if f.path == "annotation_files/file_1.jpg")
    assert big.cid == file_cid((src / big.path).read_bytes()) and big.cid.startswith("bafybei")  # IPFS's CID
    assert await get_blob(store, big.cid, 10 * CHUNK) == (src / big.path).read_bytes()
    with pytest.raises(StorageError, match="already exists"):
        await get_folder(store, ref, out)


async def test_tampered_blocks_are_refused_and_nothing_is_left(tmp_path):
    src = tutorial_assets(tmp_path / "assets")
    store = LocalStore(tmp_path / "store")
    ref = await put_folder(store, src)
    big = file_cid((src / "annotation_files" / "file_1.jpg").read_bytes())
    for victim in (cid_of((src / "annotation_samples" / "sample_1.jpg").read_bytes()), big):  # a leaf, a node
        path = store.path(victim)
        original = path.read_bytes()
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(IntegrityError, match="does not match its hash"):
            await get_folder(store, ref, tmp_path / "work" / "t")
        assert list((tmp_path / "work").iterdir()) == []  # no partial folder
        path.write_bytes(original)
    path = store.path(cid_of((src / "start_task.sh").read_bytes()))
    path.unlink()
    path.symlink_to(src / "start_task.sh")  # a link planted in the store is not followed
    with pytest.raises(NotFound):
        await get_folder(store, ref, tmp_path / "work" / "t")


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../b", "a\x00b", "a\\..\\b", "..\\x", "C:evil",
                                  "", "a//b", "./a", "a/.", "line\nbreak"])
async def test_hostile_names_in_a_manifest_are_refused(tmp_path, name):
    store = LocalStore(tmp_path / "store")
    ref = await publish_manifest(store, [{"path": name, "size": 7, "cid": await put_blob(store, b"payload")}])
    with pytest.raises(UnsafeName, match="unsafe|bad file name"):
        await get_folder(store, ref, tmp_path / "work" / "t")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "work").exists()  # refused before writing


async def test_inconsistent_manifests_are_refused(tmp_path):
    store = LocalStore(tmp_path / "store")
    cid = await put_blob(store, b"payload")
    for files in ([{"path": "a", "size": 7, "cid": cid}, {"path": "a", "size": 7, "cid": cid}],
                  [{"path": "a/b", "size": 7, "cid": cid}, {"path": "a", "size": 7, "cid": cid}],
                  [{"path": "a", "size": 7, "cid": "not-a-cid"}],
                  [{"path": "a", "size": True, "cid": cid}],
                  [{"path": "a", "size": 2 * 1024 * 1024, "cid": cid}],  # more than one raw block can hold
                  [{"path": "a", "size": 7}]):
        ref = await publish_manifest(store, files)
        with pytest.raises(IntegrityError, match="not a folder manifest"):
            await get_folder(store, ref, tmp_path / "work" / "t")
    for size in (6, 8):  # the blob holds 7 bytes
        liar = await publish_manifest(store, [{"path": "a", "size": size, "cid": cid}])
        with pytest.raises(IntegrityError, match=f"expected {size}"):
            await get_folder(store, liar, tmp_path / "work" / "t")
    with pytest.raises(IntegrityError, match="not a folder manifest"):
        await get_folder(store, await put_blob(store, b"just a file"), tmp_path / "work" / "t")
    assert no_leftovers(tmp_path / "work")


async def test_links_and_devices_are_not_published(tmp_path):
    src = tutorial_assets(tmp_path / "assets")
    (src / "annotation_files" / "link.jpg").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeName, match="symlink"):
        await put_folder(LocalStore(tmp_path / "store"), src)
    (src / "annotation_files" / "link.jpg").unlink()
    (src / "linked_dir").symlink_to(src / "annotation_files", target_is_directory=True)
    with pytest.raises(UnsafeName, match="symlink"):
        await put_folder(LocalStore(tmp_path / "store"), src)
    (src / "linked_dir").unlink()
    os.mkfifo(src / "pipe")
    with pytest.raises(UnsafeName, match="not a regular file"):
        await put_folder(LocalStore(tmp_path / "store"), src)


def test_writes_never_follow_or_replace(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (root / "sub").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(UnsafeName, match="not a plain directory"), create_new(root, "sub/x"):
        pass
    (root / "exists").write_bytes(b"keep")
    (root / "link").symlink_to(tmp_path / "outside" / "y")
    for name in ("exists", "link"):
        with pytest.raises(UnsafeName, match="exists already"), create_new(root, name):
            pass
    assert (root / "exists").read_bytes() == b"keep" and list((tmp_path / "outside").iterdir()) == []
    (tmp_path / "file").write_bytes(b"1234")
    (tmp_path / "swapped").symlink_to(tmp_path / "file")  # a file replaced by a link after the folder walk
    with pytest.raises(UnsafeName, match="symlink"), open_regular(tmp_path / "swapped", 4):
        pass
    with pytest.raises(UnsafeName, match="changed"), open_regular(tmp_path / "file", 3):
        pass


async def test_limits_name_the_limit(tmp_path):
    src = tutorial_assets(tmp_path / "assets")
    store = LocalStore(tmp_path / "store")
    with pytest.raises(TooLarge, match="more than 2 files.*max_files"):
        await put_folder(store, src, Limits(max_files=2))
    with pytest.raises(TooLarge, match="max_file limit"):
        await put_folder(store, src, Limits(max_file=1000))
    ref = await put_folder(store, src)
    with pytest.raises(TooLarge, match=r"file_1.jpg is \d+ bytes, over the max_file limit \(1000\)"):
        await get_folder(store, ref, tmp_path / "w1", Limits(max_file=1000))
    with pytest.raises(TooLarge, match=r"over the max_total limit \(10000\)"):
        await get_folder(store, ref, tmp_path / "w2", Limits(max_total=10_000))
    with pytest.raises(TooLarge, match="max_files"):
        await get_folder(store, ref, tmp_path / "w3", Limits(max_files=2))
    assert not (tmp_path / "w1").exists() and no_leftovers(tmp_path)


def test_storage_types_and_credentials(tmp_path):
    config = StorageConfig(root=tmp_path / "store")
    for kind in ("GCP", "Azure", "Crust"):
        with pytest.raises(UnsupportedStorage, match=f"storage type {kind} is not supported by this agent"):
            open_store(kind, config)
    with pytest.raises(UnsupportedStorage, match="needs a bucket"):
        open_store("S3", config)
    assert credentials_for_chain(None) == "" and credentials_for_chain("") == ""
    with pytest.raises(StorageError, match="refusing to put storage credentials on chain"):
        credentials_for_chain("AKIA-secret")
    with capture_logs() as logs:
        assert credentials_for_chain("AKIA-secret", publish=True) == "AKIA-secret"
    assert [e["log_level"] for e in logs] == ["warning"] and "AKIA" not in str(logs)


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
                              "--root", str(tmp_path / "empty-store"), "--json"],
                             capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["dest"] == str(tmp_path / "cli-copy")
        assert same_tree(src, tmp_path / "cli-copy")


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """A ``decentralml`` command run in this process (the CLI takes over a second to start)."""
    from agents.cli import build_parser

    args = build_parser().parse_args(list(argv))
    with capture_logs():  # structlog unconfigured would print to stdout
        status = args.run(args)
    out = capsys.readouterr()
    return status, out.out, out.err


def test_cli_lists_computes_cids_and_applies_limits(tmp_path, capsys):
    src = tutorial_assets(tmp_path / "assets")
    root = str(tmp_path / "store")
    status, out, err = cli(capsys, "storage", "put", str(src), "--root", root, "--json")
    assert status == 0, err
    ref = json.loads(out)["ref"]
    status, out, err = cli(capsys, "storage", "ls", ref, "--root", root, "--json")
    listed = {f["path"]: f for f in json.loads(out)["files"]}
    assert status == 0 and set(listed) == {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    big = src / "annotation_files" / "file_1.jpg"
    status, out, err = cli(capsys, "storage", "cid", str(big), "--json")
    assert json.loads(out) == {str(big): listed["annotation_files/file_1.jpg"]["cid"]}
    status, out, err = cli(capsys, "storage", "get", ref, str(tmp_path / "small"), "--root", root, "--max-file-mb", "0")
    assert status == 1 and "TooLarge" in err and "max_file limit" in err and not (tmp_path / "small").exists()
    status, out, err = cli(capsys, "storage", "get", "../../etc", str(tmp_path / "x"), "--root", root)
    assert status == 1 and "not a CID" in err


async def test_gateway_speaks_the_trustless_protocol(tmp_path):
    store = LocalStore(tmp_path / "store")
    data = os.urandom(CHUNK + 10)
    root = await put_blob(store, data)  # a dag-pb root over two raw leaves
    async with serving(gateway_app(store)) as url, aiohttp.ClientSession() as http:
        base = f"{url}/ipfs"

        async def get(path, method="GET", **headers):
            async with http.request(method, f"{base}/{path}", headers=headers) as resp:
                return resp.status, resp.headers, await resp.read()

        status, headers, body = await get(f"{root}?format=raw")
        assert status == 200 and headers["Content-Type"] == RAW and cid_of(body, "dag-pb") == root
        assert headers["Etag"] == f'"{root}.raw"' and headers["Content-Disposition"].startswith("attachment")
        assert (await get(root, Accept=RAW))[0] == 200
        assert (await get(root, "HEAD", Accept=RAW))[:3:2] == (200, b"")
        assert (await get(root, **{"Accept": RAW, "If-None-Match": f'"{root}.raw"'}))[0] == 304
        assert (await get(root))[0] == 400  # no deserialized responses: ask for a block
        assert (await get(f"{root}?format=car"))[0] == 406
        assert (await get(f"{root}/some/path?format=raw"))[0] == 400
        assert (await get("bafkqaaa?format=raw"))[:3:2] == (200, b"")  # the probe
        assert (await get("not-a-cid?format=raw"))[0] == 400
        assert (await get(f"{cid_of(b'absent')}?format=raw"))[0] == 404
        assert await get_blob(GatewayStore(url), root, 2 * CHUNK) == data
        with pytest.raises(TooLarge):
            await get_blob(GatewayStore(url), root, CHUNK)


async def test_lying_and_dropping_gateways(tmp_path):
    """A gateway serving wrong bytes is refused (the next source is used); a dropped body is an error."""
    src = tutorial_assets(tmp_path / "assets")
    good = LocalStore(tmp_path / "good")
    ref = await put_folder(good, src)

    async def lie(request):
        return web.Response(body=b"not what you asked for", content_type=RAW)

    async def drop(request):
        block = good.read(request.match_info["cid"], 2 * CHUNK)
        if len(block) < 1000:  # the manifest and small files arrive; the big file's blocks are cut short
            return web.Response(body=block, content_type=RAW)
        resp = web.StreamResponse(headers={"Content-Length": str(len(block))})
        await resp.prepare(request)
        await resp.write(block[:1000])
        request.transport.close()
        return resp

    async def endless(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        while True:
            await resp.write(b"x" * 65536)

    async with app_server(web.get("/ipfs/{cid}", lie)) as liar, app_server(web.get("/ipfs/{cid}", drop)) as dropper, \
            app_server(web.get("/ipfs/{cid}", endless)) as flood:
        with pytest.raises(IntegrityError):
            await get_folder(GatewayStore(liar), ref, tmp_path / "w1")
        with pytest.raises(StorageError, match="failed"):
            await get_folder(GatewayStore(dropper), ref, tmp_path / "w2")
        with pytest.raises(TooLarge):
            await get_folder(GatewayStore(flood), ref, tmp_path / "w3")
        assert not any((tmp_path / w).exists() for w in ("w1", "w2", "w3")) and no_leftovers(tmp_path)
        mixed = FallbackStore(good, [GatewayStore(liar), GatewayStore(dropper), good])
        assert same_tree(src, await get_folder(mixed, ref, tmp_path / "w4"))


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
    config = StorageConfig(root=tmp_path / "store", s3_bucket="tasks", s3_endpoint=s3_endpoint)
    store = open_store("S3", config)
    src = tutorial_assets(tmp_path / "assets")
    ref = await put_folder(store, src)
    assert same_tree(src, await get_folder(store, ref, tmp_path / "out"))
    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
        await s3.put_object(Bucket="tasks", Key=config.s3_prefix + cid_of(b"sample"), Body=b"swapped")
    with pytest.raises(IntegrityError):
        await get_folder(store, ref, tmp_path / "out2")
    assert not (tmp_path / "out2").exists() and no_leftovers(tmp_path)
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


async def test_an_ipfs_node_answering_another_cid_is_refused(tmp_path):
    """A node whose chunker differs (or that lies) answers CIDs the manifest could not be checked against."""
    from decentralml_core.storage import IpfsRpcStore

    async def other_cid(request):
        await request.read()
        return web.json_response({"Hash": cid_of(b"something else"), "Name": "file"})

    async with app_server(web.post("/api/v0/add", other_cid)) as url:
        with pytest.raises(StorageError, match="imported the file as .*expected"):
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
