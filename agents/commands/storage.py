"""``decentralml storage …``: publish folders, fetch them verified, and serve a store to other machines."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from agents.commands._shared import printable, progress_bar
from decentralml_core.netguard import GATEWAY_TOKEN_ENV, ExposureError, add_exposure_options, guard_from_args
from decentralml_core.storage import (
    STORAGE_TYPES,
    Limits,
    LocalStore,
    StorageConfig,
    StorageError,
    default_root,
    file_cid_of_path,
    gateway_app,
    get_folder,
    get_manifest,
    open_store,
    put_folder,
)

MB = 1024 * 1024


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    env = os.environ.get
    storage = commands.add_parser("storage", parents=[common], help="publish, fetch and serve task assets")
    sub = storage.add_subparsers(dest="storage_command", required=True, metavar="ACTION")
    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root", "--store-root", dest="root", type=Path,
                      default=Path(env("DECENTRALML_STORE") or default_root()),
                      help="local content-addressed store (default: $DECENTRALML_STORE or %(default)s)")
    remote = argparse.ArgumentParser(add_help=False, parents=[root])
    remote.add_argument("--storage-type", choices=STORAGE_TYPES, default="IPFS",
                        help="IPFS: the local store (or --ipfs-api) plus --gateway sources; S3: --s3-bucket")
    remote.add_argument("--gateway", action="append", metavar="URL",
                        default=[u for u in env("DECENTRALML_GATEWAYS", "").split(",") if u],
                        help="a trustless gateway to fetch from (repeatable; $DECENTRALML_GATEWAYS)")
    remote.add_argument("--ipfs-api", default=env("DECENTRALML_IPFS_API"), metavar="URL",
                        help="an IPFS node's RPC API: publish there ($DECENTRALML_IPFS_API)")
    remote.add_argument("--s3-bucket", default=env("DECENTRALML_S3_BUCKET"), help="S3: the bucket ($DECENTRALML_S3_BUCKET)")
    remote.add_argument("--s3-endpoint", default=env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL"),
                        metavar="URL", help="S3-compatible endpoint (MinIO, …); keys from AWS_ACCESS_KEY_ID etc.")
    remote.add_argument("--json", action="store_true", help="print JSON for scripts")

    serve = sub.add_parser("serve", parents=[common, root], help="serve the local store as an IPFS trustless gateway")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s); "
                       "beyond loopback only with --token-env or --allow")
    serve.add_argument("--port", type=int, default=8080, help="(default: %(default)s)")
    add_exposure_options(serve, GATEWAY_TOKEN_ENV)
    serve.set_defaults(run=run_serve)

    put = sub.add_parser("put", parents=[common, remote], help="publish a folder; prints its reference")
    put.add_argument("folder", type=Path, help="the folder to publish")
    put.set_defaults(run=run_put)

    get = sub.add_parser("get", parents=[common, remote], help="fetch a folder by reference, verifying every byte")
    get.add_argument("ref", help="the folder's reference (CID)")
    get.add_argument("dest", type=Path, help="must not exist yet; appears only when complete")
    get.add_argument("--max-file-mb", type=int, default=Limits.max_file // MB, help="(default: %(default)s)")
    get.add_argument("--max-total-mb", type=int, default=Limits.max_total // MB, help="(default: %(default)s)")
    get.set_defaults(run=run_get)

    ls = sub.add_parser("ls", parents=[common, remote], help="list a folder's files: path, size, IPFS CID")
    ls.add_argument("ref", help="the folder's reference (CID)")
    ls.set_defaults(run=run_ls)

    cid = sub.add_parser("cid", parents=[common], help="the CID `ipfs add --cid-version 1 --raw-leaves` gives a file")
    cid.add_argument("files", nargs="+", type=Path, help="files to compute the CIDs of")
    cid.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    cid.set_defaults(run=run_cid)


def _fail(args, exc: Exception) -> int:
    print(f"decentralml storage {args.storage_command}: {type(exc).__name__}: {printable(exc)}", file=sys.stderr)
    return 1


def _store(args):
    return open_store(args.storage_type, StorageConfig(root=args.root, gateways=args.gateway,
                                                       ipfs_api=args.ipfs_api, s3_bucket=args.s3_bucket,
                                                       s3_endpoint=args.s3_endpoint))


def run_serve(args) -> int:
    from aiohttp import web

    try:
        guard = guard_from_args(args)
    except ExposureError as exc:
        print(f"decentralml storage serve: {exc}", file=sys.stderr)
        return 2
    store = LocalStore(args.root)
    print(f"serving {store.root} at http://{args.host}:{args.port}/ipfs/<cid>?format=raw", file=sys.stderr, flush=True)
    try:
        web.run_app(gateway_app(store, guard), host=args.host, port=args.port, print=None)
    except OSError as exc:
        return _fail(args, exc)
    return 0


def run_put(args) -> int:
    try:
        with progress_bar(f"publishing {args.folder}") as progress:
            ref = asyncio.run(put_folder(_store(args), args.folder, progress=progress))
    except (StorageError, OSError) as exc:
        return _fail(args, exc)
    print(json.dumps({"ref": ref}) if args.json else ref)
    return 0


def run_get(args) -> int:
    limits = Limits(max_file=args.max_file_mb * MB, max_total=args.max_total_mb * MB)
    try:
        with progress_bar(f"fetching {args.ref[:16]}…") as progress:
            dest = asyncio.run(get_folder(_store(args), args.ref, args.dest, limits, progress=progress))
    except (StorageError, OSError) as exc:
        return _fail(args, exc)
    print(json.dumps({"ref": args.ref, "dest": str(dest)}) if args.json else dest)
    return 0


def run_ls(args) -> int:
    try:
        manifest = asyncio.run(get_manifest(_store(args), args.ref))
    except (StorageError, OSError) as exc:
        return _fail(args, exc)
    files = [{"path": f.path, "size": f.size, "cid": f.cid} for f in manifest.files]
    if args.json:
        print(json.dumps({"ref": args.ref, "files": files}))
    else:
        for f in files:
            print(f"{printable(f['cid'])}  {f['size']:>12}  {printable(f['path'])}")  # names from a remote manifest
    return 0


def run_cid(args) -> int:
    try:
        cids = {str(path): file_cid_of_path(path) for path in args.files}
    except (StorageError, OSError) as exc:
        return _fail(args, exc)
    if args.json:
        print(json.dumps(cids))
    else:
        for path, cid in cids.items():
            print(f"{cid}  {path}")
    return 0
