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
import importlib.util
import json
import os
import re
import sys
import traceback
import types
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from decentralml_core.chain.errors import ChainError, ConnectionLost, DispatchFailed, TransactionRejected
from decentralml_core.chain.model import STORAGE_TYPES
from decentralml_core.keys import DEV_ACCOUNTS, KeyLoadError, load_keypair
from decentralml_core.units import AmountError, parse_amount

if TYPE_CHECKING:
    from rich.text import Text

    from decentralml_core.chain import ChainClient

# Heavy pieces (the chain client, storage, rich) are imported where used: a command pays only for its own.

DEFAULT_URL = "ws://127.0.0.1:9944"


def lazy(name: str) -> types.ModuleType:
    """Module ``name``, executed on its first attribute use (importlib's LazyLoader): a command module names
    what its actions use without every action paying for every import (``task list`` needs no storage)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def node_url(text: str) -> str:
    """``--url``: a WebSocket URL; ``localhost:9944`` alone would fail later with a puzzling message."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} has no scheme: give ws://{text} (or wss:// behind TLS)")
    if scheme not in ("ws", "wss") or not rest:
        raise argparse.ArgumentTypeError(f"{text!r} is not a node WebSocket URL: give ws://HOST:PORT or wss://HOST")
    return text


def dev_account(text: str) -> str:
    """``--dev-key``: one of the devnet's endowed accounts; any other name signs for an empty account."""
    name = text.strip().lstrip("/").capitalize()
    if name not in DEV_ACCOUNTS:
        raise argparse.ArgumentTypeError(f"unknown dev account {text!r}: use one of {', '.join(DEV_ACCOUNTS)}")
    return name


def amount(text: str) -> int:
    """An amount option: UNIT by default (``1.5``), or planck (``1500000000000planck``)."""
    try:
        return parse_amount(text)
    except AmountError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_node_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", type=node_url, default=os.environ.get("DECENTRALML_URL", DEFAULT_URL),
                        help="node WebSocket URL (default: $DECENTRALML_URL or %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")


def add_key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key-env", default="DECENTRALML_KEY", metavar="VAR",
                        help="environment variable holding the signing key URI or mnemonic (default: %(default)s)")
    parser.add_argument("--keyfile", help="polkadot.js JSON keystore; password from $DECENTRALML_KEY_PASSWORD")
    parser.add_argument("--dev-key", metavar="NAME", type=dev_account,
                        help="a dev account (Alice … Ferdie): for devnets only")


def add_storage_type_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--storage-type``: the same choices wherever something is published (``task create``, ``result send``,
    ``storage put``)."""
    parser.add_argument("--storage-type", choices=STORAGE_TYPES, default="IPFS", help=help + " (default: %(default)s)")


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--store-root", type=Path, default=env("DECENTRALML_STORE"),
                        help="local content-addressed store (default: $DECENTRALML_STORE or "
                             "$XDG_DATA_HOME/decentralml/store)")
    parser.add_argument("--gateway", action="append", default=[u for u in env("DECENTRALML_GATEWAYS", "").split(",") if u],
                        metavar="URL", help="a trustless gateway to fetch from (repeatable; $DECENTRALML_GATEWAYS)")
    parser.add_argument("--ipfs-api", default=env("DECENTRALML_IPFS_API"), metavar="URL",
                        help="an IPFS node's RPC API: publish there ($DECENTRALML_IPFS_API)")
    parser.add_argument("--s3-bucket", default=env("DECENTRALML_S3_BUCKET"), help="S3: the bucket ($DECENTRALML_S3_BUCKET)")
    parser.add_argument("--s3-endpoint", default=env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL"), metavar="URL",
                        help="S3-compatible endpoint (MinIO, …); keys from AWS_ACCESS_KEY_ID etc.")
    parser.add_argument("--credentials-env", metavar="VAR",
                        help="put the storage credentials in this variable ON CHAIN (public!): needs --publish-credentials")
    parser.add_argument("--publish-credentials", action="store_true",
                        help="allow --credentials-env: anyone can read them on chain")


def chain_credentials(args: argparse.Namespace) -> str:
    """The ``*_storage_credentials`` value to send: ``""`` unless publishing was explicitly asked for."""
    from decentralml_core.storage import credentials_for_chain

    secret = os.environ.get(args.credentials_env, "") if args.credentials_env else ""
    if args.credentials_env and not secret:
        raise ValueError(f"${args.credentials_env} is empty")
    return credentials_for_chain(secret, publish=args.publish_credentials)


def store_for(args: argparse.Namespace, storage_type: str):
    from decentralml_core.storage import StorageConfig, default_root, open_store

    return open_store(storage_type, StorageConfig(root=Path(args.store_root or default_root()),
                                                  gateways=args.gateway,
                                                  ipfs_api=args.ipfs_api, s3_bucket=args.s3_bucket,
                                                  s3_endpoint=args.s3_endpoint))


@contextlib.contextmanager
def progress_bar(description: str):
    """A transfer progress bar on stderr when it is a terminal; yields the storage progress callback."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def keypair(args: argparse.Namespace):
    """The signing key named by the options; secrets come from the environment, never argv."""
    if getattr(args, "dev_key", None):
        return load_keypair(f"//{dev_account(args.dev_key)}")
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


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(value: Any) -> str:
    """``value`` as text that cannot drive a terminal: control characters shown escaped (``\\x1b``).

    Chain data is written by strangers: a question holding ``\\x1b[2J`` or an OSC 8 link must be shown,
    not obeyed. Bidirectional overrides are escaped too (they reorder what is read).
    """
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))


def cell(value: Any) -> Text:
    """A table cell: :func:`printable`, and a ``Text`` so rich never reads ``[link=…]`` in it as markup."""
    from rich.text import Text

    if isinstance(value, dict):  # task show's verdicts: "3: Accepted (paid 1 UNIT); 4: Rejected: blurry"
        value = "; ".join(f"{k}: {v}" for k, v in value.items())
    elif isinstance(value, list):
        value = ", ".join(map(str, value))
    return Text("" if value is None else printable(value))


def emit(args: argparse.Namespace, data: Any, columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """Print ``data`` as JSON (``--json``) or as a table of ``columns`` / key-value rows."""
    data = plain(data)
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if isinstance(data, list):
        table = Table(title=None if title is None else cell(title))
        for column in columns or []:
            table.add_column(column)
        for row in data:
            table.add_row(*[cell(row.get(c)) for c in columns or []])
        console.print(table)
    elif isinstance(data, dict):
        table = Table(title=None if title is None else cell(title), show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for key, value in data.items():
            table.add_row(cell(key), cell(value))
        console.print(table)
    else:
        console.print(cell(data))


Command = Callable[[argparse.Namespace, "ChainClient"], Awaitable[int | None]]


def command_name(args: argparse.Namespace) -> str:
    """``decentralml task create``: the full subcommand, for error lines."""
    words = ["decentralml", args.command]
    action = getattr(args, f"{args.command}_command", None)
    return " ".join(words + ([action] if action else []))


class Ids(dict):
    """The ids an error line may name, from the parsed options; a missing one reads as ``?``."""

    def __missing__(self, key: str) -> str:
        return "?"


PALLET_HINTS: dict[str, str] = {
    "TaskNotFound": "no task {task_id} on this chain (see `decentralml task list`)",
    "SubmissionNotFound": "no submission {submission_id} on this chain (see `decentralml result list`)",
    "MaxAssignmentsReached": "every assignment of task {task_id} is taken",
    "AlreadyAssigned": "you already hold an assignment of task {task_id} "
                       "(see `decentralml result list --task {task_id}`)",
    "TaskExpired": "task {task_id} has expired",
    "TaskClosed": "task {task_id} is closed",
    "TaskNotExpired": "task {task_id} cannot be closed yet: wait for its expiration block or decide every result",
    "AlreadyDecided": "submission {submission_id} was already decided",
    "ResultNotSubmitted": "submission {submission_id} has no result to decide yet",
    "TaskEndTooEarly": "the task would expire before it is created: give --expires-in of at least 1 block",
    "TaskInvalidPaysAmount": "--pays is below the chain's minimum",
    "InvalidMaxAssignments": "--max-assignments must be between 1 and 9999",
    "InvalidQuestion": "--question must not be empty",
    "MissingAnnotationFiles": "a data annotation task needs files: --assets with an annotation_files/ folder, "
                              "or --files",
    "MissingAnnotationType": "a data annotation task needs --annotation-type (e.g. Image)",
    "WorkerSubmissionLimit": "you hold as many assignments as the chain allows: send or let some expire first",
    "DuplicateClientToken": "you already created a task with this --client-token (see `decentralml task list`)",
    "SubmissionDeadlinePassed": "submission {submission_id} came after the task's deadline; its slot reopened",
    "ReviewWindowOpen": "the creator's review window for submission {submission_id} is still open: claim after it",
    "NoReviewWindow": "task of submission {submission_id} has no review window: nothing to claim",
    "ReviewWindowClosed": "the review window of submission {submission_id} has passed: the worker may claim the pay",
    "InsufficientBalance": "the signing account cannot cover this (see `decentralml account balance`)",
    "TooFewAccepted": "you do not have the accepted results task {task_id} asks for",
    "RejectionRateTooHigh": "your rejection rate is above what task {task_id} accepts",
}
"""Pallet errors in the words of the command at hand; the others are explained in docs/operations.md."""
COMMAND_HINTS: dict[tuple[str, str], str] = {
    ("result send", "InvalidStatus"): "submission {submission_id} already has a result (see `decentralml result list`)",
    ("result send", "NotAuthorized"): "submission {submission_id} is another worker's: sign with the key that "
                                      "took the assignment",
    ("result claim", "NotAuthorized"): "submission {submission_id} is another worker's",
    ("result claim", "InvalidStatus"): "submission {submission_id} has no result waiting to be paid",
}


def explain(exc: BaseException, args: argparse.Namespace) -> str:
    """One line for a failure: what happened and, where known, what to do."""
    ids = Ids({k: v for k, v in vars(args).items() if k in ("task_id", "submission_id")})
    if getattr(args, "submission_ids", None) and "submission_id" not in ids:
        ids["submission_id"] = ", ".join(map(str, args.submission_ids))
    if isinstance(exc, ConnectionLost):
        url = getattr(args, "url", None)
        tried = f" (tried {url}; set --url or $DECENTRALML_URL)" if url else ""
        return f"cannot reach the node: is `decentralml devnet` running?{tried}"
    if isinstance(exc, DispatchFailed):
        action = command_name(args).removeprefix("decentralml ")
        hint = COMMAND_HINTS.get((action, exc.error)) or PALLET_HINTS.get(exc.error)
        if hint:
            return hint.format_map(ids)
        if exc.error == "NotAuthorized":
            return "only the task's creator may do this: sign with the key that created the task"
        if exc.error == "InvalidStatus":
            return f"submission {ids['submission_id']} is not in a state that allows this (see `decentralml result list`)"
        return f"the chain refused it: {exc} (docs/operations.md explains each error)"
    if isinstance(exc, TransactionRejected) and exc.cannot_pay_fees:
        try:
            who = keypair(args).ss58_address
        except (KeyLoadError, AttributeError):
            who = "the signing account"
        return (f"{who} cannot pay the transaction fee: fund it first "
                f"(on a devnet: `decentralml account transfer {who} 10 --dev-key alice`)")
    from decentralml_core.storage.errors import StorageError

    if isinstance(exc, (ChainError, KeyLoadError, StorageError, AmountError, ValueError)):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {exc} (--debug shows where)"


def run_daemon(args, daemon: Coroutine[Any, Any, None], journals: str) -> int:
    """Run an agent or an engine until it stops: 0, or one line and 1. A journal that cannot be written
    (``journals``: where they are, e.g. a full disk) means nothing can be done safely, so it is said as such."""
    import sqlite3

    try:
        asyncio.run(daemon)
    except sqlite3.Error as exc:
        print(f"{command_name(args)}: {journals}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 — one line; --debug shows the traceback
        return fail(args, exc)
    return 0


def fail(args: argparse.Namespace, exc: BaseException) -> int:
    """Print the one-line error of a failed command (the traceback too with ``--debug``); exit status 1."""
    if getattr(args, "debug", False):
        traceback.print_exception(exc)
    print(f"{command_name(args)}: {printable(explain(exc, args))}", file=sys.stderr)
    return 1


def runner(command: Command, reads_only: bool = False) -> Callable[[argparse.Namespace], int]:
    """The action of a command that talks to the node. ``reads_only``: its path logs only through
    ``decentralml_core.logs.get_logger``, so logging is configured lazily (structlog's import is a sixth of
    ``task list``; tests/test_chain_schema.py checks that such a command imports none of it)."""

    def run(args: argparse.Namespace) -> int:
        async def main() -> int:
            from decentralml_core.chain import ChainClient

            async with await ChainClient.connect(args.url) as client:
                return await command(args, client) or 0

        try:
            return asyncio.run(main())
        except KeyboardInterrupt:
            return 130
        except Exception as exc:  # noqa: BLE001 — a user gets one line; --debug shows the traceback
            return fail(args, exc)

    run.reads_only = reads_only
    return run
