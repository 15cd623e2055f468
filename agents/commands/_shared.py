"""What the chain-facing subcommands share: node URL, signing key, output as tables or JSON, errors.

Every command is an ``async def`` taking the parsed arguments and a connected client; :func:`runner`
turns it into the ``run(args) -> exit status`` the CLI calls, with one-line errors (``--debug``
shows the traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from decentralml_core.chain import ChainClient, ChainError
from decentralml_core.keys import KeyLoadError, load_keypair
from decentralml_core.storage import StorageConfig, StorageError, credentials_for_chain, default_root, open_store

DEFAULT_URL = "ws://127.0.0.1:9944"


def add_node_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("DECENTRALML_URL", DEFAULT_URL),
                        help="node WebSocket URL (default: $DECENTRALML_URL or %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")


def add_key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key-env", default="DECENTRALML_KEY", metavar="VAR",
                        help="environment variable holding the signing key URI or mnemonic (default: %(default)s)")
    parser.add_argument("--keyfile", help="polkadot.js JSON keystore; password from $DECENTRALML_KEY_PASSWORD")
    parser.add_argument("--dev-key", metavar="NAME", help="a dev account (Alice … Ferdie): for devnets only")


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--store-root", type=Path, default=Path(env("DECENTRALML_STORE", default_root())),
                        help="local content-addressed store (default: $DECENTRALML_STORE or %(default)s)")
    parser.add_argument("--gateway", action="append", default=[u for u in env("DECENTRALML_GATEWAYS", "").split(",") if u],
                        metavar="URL", help="a trustless gateway to fetch from (repeatable; $DECENTRALML_GATEWAYS)")
    parser.add_argument("--ipfs-api", default=env("DECENTRALML_IPFS_API"), help="an IPFS node's RPC API URL")
    parser.add_argument("--s3-bucket", default=env("DECENTRALML_S3_BUCKET"))
    parser.add_argument("--s3-endpoint", default=env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL"))
    parser.add_argument("--credentials-env", metavar="VAR",
                        help="put the storage credentials in this variable ON CHAIN (public!): needs --publish-credentials")
    parser.add_argument("--publish-credentials", action="store_true",
                        help="allow --credentials-env: anyone can read them on chain")


def chain_credentials(args: argparse.Namespace) -> str:
    """The ``*_storage_credentials`` value to send: ``""`` unless publishing was explicitly asked for."""
    secret = os.environ.get(args.credentials_env, "") if args.credentials_env else ""
    if args.credentials_env and not secret:
        raise ValueError(f"${args.credentials_env} is empty")
    return credentials_for_chain(secret, publish=args.publish_credentials)


def store_for(args: argparse.Namespace, storage_type: str):
    return open_store(storage_type, StorageConfig(local_root=args.store_root, gateways=args.gateway,
                                                  ipfs_api=args.ipfs_api, s3_bucket=args.s3_bucket,
                                                  s3_endpoint=args.s3_endpoint))


@contextlib.contextmanager
def progress_bar(description: str):
    """A transfer progress bar on stderr when it is a terminal; yields the storage progress callback."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def keypair(args: argparse.Namespace):
    """The signing key named by the options; secrets come from the environment, never argv."""
    if getattr(args, "dev_key", None):
        return load_keypair(f"//{args.dev_key.capitalize()}")
    if getattr(args, "keyfile", None):
        return load_keypair(keyfile=args.keyfile)
    secret = os.environ.get(args.key_env)
    if not secret:
        raise KeyLoadError(f"no signing key: set ${args.key_env}, or use --keyfile or --dev-key")
    return load_keypair(secret)


def plain(value: Any) -> Any:
    """JSON-ready form of dataclasses, enums and lists of them."""
    if dataclasses.is_dataclass(value):
        return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def emit(args: argparse.Namespace, data: Any, columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """Print ``data`` as JSON (``--json``) or as a table of ``columns`` / key-value rows."""
    data = plain(data)
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    console = Console()
    if isinstance(data, list):
        table = Table(title=title)
        for column in columns or []:
            table.add_column(column)
        for row in data:
            table.add_row(*["" if row.get(c) is None else str(row.get(c)) for c in columns or []])
        console.print(table)
    elif isinstance(data, dict):
        table = Table(title=title, show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for key, value in data.items():
            table.add_row(key, "" if value is None else str(value))
        console.print(table)
    else:
        console.print(data)


Command = Callable[[argparse.Namespace, ChainClient], Awaitable[int | None]]


def runner(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def main() -> int:
            async with await ChainClient.connect(args.url) as client:
                return await command(args, client) or 0

        try:
            return asyncio.run(main())
        except (ChainError, KeyLoadError, StorageError, ValueError, OSError) as exc:
            if args.debug:
                traceback.print_exc()
            print(f"decentralml {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1

    return run
