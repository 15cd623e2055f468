"""``decentralml storage …``: publish folders, fetch them verified, and serve a store to other machines."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from agents.commands._shared import progress_bar
from decentralml_core.storage import (
    LocalStore,
    StorageConfig,
    StorageError,
    default_root,
    gateway_app,
    get_folder,
    open_store,
    put_folder,
)


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    storage = commands.add_parser("storage", parents=[common], help="publish, fetch and serve task assets")
    sub = storage.add_subparsers(dest="storage_command", required=True, metavar="ACTION")
    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root", type=Path, default=default_root(), help="local store (default: %(default)s)")

    serve = sub.add_parser("serve", parents=[common, root], help="serve the local store as a trustless gateway")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(run=run_serve)

    put = sub.add_parser("put", parents=[common, root], help="publish a folder; prints its reference")
    put.add_argument("folder", type=Path)
    put.add_argument("--json", action="store_true")
    put.set_defaults(run=run_put)

    get = sub.add_parser("get", parents=[common, root], help="fetch a folder by reference, verifying every byte")
    get.add_argument("ref")
    get.add_argument("dest", type=Path)
    get.add_argument("--gateway", action="append", default=[], metavar="URL", help="a gateway to fetch from")
    get.add_argument("--json", action="store_true")
    get.set_defaults(run=run_get)


def _fail(args, exc: Exception) -> int:
    print(f"decentralml storage {args.storage_command}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1


def run_serve(args) -> int:
    from aiohttp import web

    store = LocalStore(args.root)
    print(f"serving {store.root} at http://{args.host}:{args.port}/ipfs/<cid>", file=sys.stderr, flush=True)
    try:
        web.run_app(gateway_app(store), host=args.host, port=args.port, print=None)
    except OSError as exc:
        return _fail(args, exc)
    return 0


def run_put(args) -> int:
    try:
        with progress_bar(f"publishing {args.folder}") as progress:
            ref = asyncio.run(put_folder(LocalStore(args.root), args.folder, progress=progress))
    except (StorageError, OSError) as exc:
        return _fail(args, exc)
    print(json.dumps({"ref": ref}) if args.json else ref)
    return 0


def run_get(args) -> int:
    store = open_store("IPFS", StorageConfig(local_root=args.root, gateways=args.gateway))
    try:
        with progress_bar(f"fetching {args.ref[:16]}…") as progress:
            dest = asyncio.run(get_folder(store, args.ref, args.dest, progress=progress))
    except (StorageError, OSError) as exc:
        return _fail(args, exc)
    print(json.dumps({"ref": args.ref, "dest": str(dest)}) if args.json else dest)
    return 0



