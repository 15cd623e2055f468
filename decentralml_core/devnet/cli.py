"""``decentralml devnet`` and ``python -m decentralml_core.devnet``: run a local DecentralML chain.

The options and the run live here, in the library, so the library's own entry point needs nothing of
the ``decentralml`` command above it (it imported ``agents.cli`` before: a layer pointing up); the
command's ``devnet`` subcommand registers these same options.
"""

from __future__ import annotations

import argparse
import sys

from .. import logs
from ..netguard import NODE_TOKEN_ENV, ExposureError, add_exposure_options, guard_from_args

HELP = """Run a local DecentralML chain: Substrate JSON-RPC over WebSocket (and HTTP POST) on one port.
Dev accounts //Alice … //Ferdie are endowed; //Alice holds the sudo key."""


def _block_time(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (instant seal) or a positive number of seconds")
    return value


def _stall(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def add_arguments(devnet: argparse.ArgumentParser) -> None:
    devnet.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s); "
                        "beyond loopback only with --token-env or --allow")
    devnet.add_argument("--port", type=int, default=9944, help="WebSocket/HTTP port (default: %(default)s)")
    devnet.add_argument("--block-time", type=_block_time, default=0.0, metavar="0|SECONDS",
                        help="0 seals a block as soon as transactions wait (default); else a block every SECONDS")
    storage = devnet.add_mutually_exclusive_group()
    storage.add_argument("--db", metavar="PATH", help="SQLite file that keeps the chain across restarts")
    storage.add_argument("--tmp", action="store_true", help="a throwaway chain (the default without --db)")
    devnet.add_argument("--pallet", choices=["full", "upstream"], default="full",
                        help="full: upstream calls plus accept/reject/close; upstream: only calls 0-2")
    devnet.add_argument("--rpc-disable-batch-requests", action="store_true",
                        help="refuse JSON-RPC batches, as a Substrate node started with this flag does")
    devnet.add_argument("--client-stall", type=_stall, metavar="SECONDS",  # None: server.SEND_STALL_S
                        help="drop a client that leaves a reply or notification untaken this long "
                             "(default: 10; what it may leave queued is 16 MB either way)")
    add_exposure_options(devnet, NODE_TOKEN_ENV)


def run(args: argparse.Namespace) -> int:
    from .server import run as serve

    try:
        guard = guard_from_args(args)
    except ExposureError as exc:
        print(f"decentralml devnet: {exc}", file=sys.stderr)
        return 2
    try:
        serve(host=args.host, port=args.port, block_time=args.block_time, db_path=args.db, pallet=args.pallet,
              guard=guard, batches=not args.rpc_disable_batch_requests,
              **({} if args.client_stall is None else {"stall_s": args.client_stall}))
    except ValueError as exc:  # e.g. a database made with the other --pallet mode
        print(f"decentralml devnet: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"decentralml devnet: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m decentralml_core.devnet", description=HELP)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-json", action="store_true", help="JSON log lines even on a terminal")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logs.configure(args.log_level, json=args.log_json or not sys.stderr.isatty())
    return run(args)
