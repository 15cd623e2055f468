"""``decentralml demo annotation|federated``: the market on a fresh devnet, unattended."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    demo = commands.add_parser("demo", parents=[common], help="run a demo market on a fresh devnet")
    demo.add_argument("which", choices=["annotation", "federated"],
                      help="annotation: make demo's detection task; federated: a 3-round training campaign "
                           "with 4 contributors, one malicious")
    demo.set_defaults(run=run_demo)


def run_demo(args) -> int:
    if args.which == "federated":
        from agents.demo_federated import main
    else:
        from agents.demo import main
    return main()
