"""``decentralml farm run|check|status FARM.yaml``: many agents on one machine, supervised."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from agents.config import ConfigError


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    farm = commands.add_parser("farm", parents=[common], help="run and watch many agents from one YAML file")
    sub = farm.add_subparsers(dest="farm_command", required=True, metavar="ACTION")
    run = sub.add_parser("run", parents=[common], help="start every agent, restart crashed ones, stop all on SIGTERM")
    run.add_argument("farm", type=Path)
    run.set_defaults(run=run_command)
    check = sub.add_parser("check", parents=[common], help="validate the farm file and every agent's config")
    check.add_argument("farm", type=Path)
    check.set_defaults(run=check_command)
    status = sub.add_parser("status", parents=[common], help="one table: every agent's state, work and earnings")
    status.add_argument("farm", type=Path)
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.add_argument("--watch", action="store_true", help="a live view, refreshed every --interval seconds")
    status.add_argument("--interval", type=float, default=2.0)
    status.add_argument("--no-chain", action="store_true", help="skip reading earnings from the chain")
    status.set_defaults(run=status_command)


def _load(args):
    from agents.farm.config import load_farm

    try:
        return load_farm(args.farm)
    except ConfigError as exc:
        print(f"decentralml farm: {exc}", file=sys.stderr)
        return None


def check_command(args) -> int:
    farm = _load(args)
    if farm is None:
        return 2
    roles = {}
    for spec in farm.agents:
        roles[spec.config.role] = roles.get(spec.config.role, 0) + 1
    print(f"{args.farm}: ok ({len(farm.agents)} agents: "
          + ", ".join(f"{n} {role}" for role, n in roles.items()) + f"; state under {farm.state_root})")
    return 0


def run_command(args) -> int:
    from agents.farm.supervisor import Supervisor

    farm = _load(args)
    if farm is None:
        return 2
    return asyncio.run(Supervisor(farm).run())


def status_command(args) -> int:
    from agents.farm.status import collect, table

    farm = _load(args)
    if farm is None:
        return 2
    if args.json:
        print(json.dumps(asyncio.run(collect(farm, with_chain=not args.no_chain))))
        return 0
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if not args.watch:
        console.print(table(asyncio.run(collect(farm, with_chain=not args.no_chain))))
        return 0
    try:
        with Live(console=console, auto_refresh=False) as live:
            while True:
                live.update(table(asyncio.run(collect(farm, with_chain=not args.no_chain))), refresh=True)
                time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
