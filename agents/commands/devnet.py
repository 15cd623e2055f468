"""``decentralml devnet``: run a local DecentralML chain."""

from __future__ import annotations

import argparse
import sys

from decentralml_core.netguard import NODE_TOKEN_ENV, ExposureError, add_exposure_options, guard_from_args

HELP = """Run a local DecentralML chain: Substrate JSON-RPC over WebSocket (and HTTP POST) on one port.
Dev accounts //Alice … //Ferdie are endowed; //Alice holds the sudo key."""


def _block_time(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (instant seal) or a positive number of seconds")
    return value


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    devnet = commands.add_parser("devnet", parents=[common], help="run a local DecentralML chain", description=HELP)
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
    add_exposure_options(devnet, NODE_TOKEN_ENV)
    devnet.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from decentralml_core.devnet.server import run as serve

    try:
        guard = guard_from_args(args)
    except ExposureError as exc:
        print(f"decentralml devnet: {exc}", file=sys.stderr)
        return 2
    try:
        serve(host=args.host, port=args.port, block_time=args.block_time, db_path=args.db, pallet=args.pallet,
              guard=guard)
    except ValueError as exc:  # e.g. a database made with the other --pallet mode
        print(f"decentralml devnet: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"decentralml devnet: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
