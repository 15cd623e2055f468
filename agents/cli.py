"""The ``decentralml`` command. Subcommands live in :mod:`agents.commands`, one module each."""

from __future__ import annotations

import argparse
import sys

from agents.commands import account, agent, campaign, demo, devnet, farm, result, review, sandbox, storage, task
from decentralml_core import logs

COMMANDS = [devnet, task, result, account, storage, sandbox, agent, farm, review, campaign, demo]
LEVELS = ["debug", "info", "warning", "error"]


def _common() -> argparse.ArgumentParser:
    """Options every subcommand takes too, so they may come before or after its name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS, choices=LEVELS)
    common.add_argument("--log-json", action="store_true", default=argparse.SUPPRESS,
                        help="one JSON object per log line")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="decentralml", description="DecentralML agents and local devnet.")
    parser.add_argument("--log-level", default="info", choices=LEVELS)
    parser.add_argument("--log-json", action="store_true", help="JSON log lines even on a terminal "
                        "(the default when stderr is not one)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()
    for module in COMMANDS:
        module.register(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, json=args.log_json or not sys.stderr.isatty())
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
