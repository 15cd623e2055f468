"""``decentralml devnet``: run a local DecentralML chain (options and run: :mod:`decentralml_core.devnet.cli`)."""

from __future__ import annotations

import argparse

from decentralml_core.devnet.cli import HELP, add_arguments, run


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    devnet = commands.add_parser("devnet", parents=[common], help="run a local DecentralML chain", description=HELP)
    add_arguments(devnet)
    devnet.set_defaults(run=run)
