"""``decentralml farm run|check|status FARM.yaml``: many agents on one machine, supervised."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from agents.config import ConfigError
from decentralml_core.units import format_units

from ._shared import add_key_options, amount, command_name, emit, fail, keypair, printable, run_daemon


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    farm = commands.add_parser("farm", parents=[common], help="run and watch many agents from one YAML file")
    sub = farm.add_subparsers(dest="farm_command", required=True, metavar="ACTION")
    run = sub.add_parser("run", parents=[common], help="start every agent, restart crashed ones, stop all on SIGTERM")
    run.add_argument("farm", type=Path, help="the farm's YAML file (e.g. configs/farm.yaml)")
    run.set_defaults(run=run_command)
    engine = sub.add_parser("engine", parents=[common],
                            help="run the farm's worker accounts of one node in this process (farm run starts it)")
    engine.add_argument("farm", type=Path, help="the farm's YAML file")
    engine.add_argument("--node", default=None, help="the workers of this node (default: the first worker's)")
    engine.set_defaults(run=engine_command)
    check = sub.add_parser("check", parents=[common], help="check the farm file and everything each agent needs to run")
    check.add_argument("farm", type=Path, help="the farm's YAML file")
    check.add_argument("--online", action="store_true",
                       help="also ask the node: reachable, each journal's chain, each account able to pay fees")
    check.set_defaults(run=check_command)
    fund = sub.add_parser("fund", parents=[common],
                          help="top up every agent's account to AMOUNT from your key (e.g. --dev-key alice on a devnet)")
    fund.add_argument("farm", type=Path, help="the farm's YAML file")
    fund.add_argument("--amount", type=amount, default=amount("10"), metavar="AMOUNT",
                      help="each account's balance after funding, in UNIT or planck (default: 10 UNIT)")
    add_key_options(fund)
    fund.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    fund.add_argument("--debug", action="store_true", help="show the traceback of an error")
    fund.set_defaults(run=fund_command)
    status = sub.add_parser("status", parents=[common], help="one table: every agent's state, work and earnings")
    status.add_argument("farm", type=Path, help="the farm's YAML file")
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.add_argument("--watch", action="store_true", help="a live view, refreshed every --interval seconds")
    status.add_argument("--interval", type=float, default=2.0, metavar="SECONDS", help="--watch refresh (default: %(default)s)")
    status.add_argument("--no-chain", action="store_true", help="skip reading earnings from the chain")
    status.set_defaults(run=status_command)


def _load(args):
    from agents.farm.config import load_farm

    try:
        return load_farm(args.farm)
    except ConfigError as exc:
        print(f"{command_name(args)}: {printable(exc)}", file=sys.stderr)
        return None


def problems_of(farm, online: bool) -> list[str]:
    """Every agent's preflight problems, each line naming the agent."""
    from agents.preflight import offline_problems, online_problems

    found: list[str] = []
    for spec in farm.agents:
        problems, address = offline_problems(spec.config)
        if online:
            problems += asyncio.run(online_problems(spec.config, address))
        for problem in problems:
            line = problem if problem.startswith("node:") else f"{spec.name}: {problem}"  # a node's, said once
            if line not in found:
                found.append(line)
    return found


def report(args, problems: list[str]) -> int:
    for problem in problems:
        print(f"{command_name(args)}: {args.farm}: {printable(problem)}", file=sys.stderr)
    return 1 if problems else 0


def check_command(args) -> int:
    farm = _load(args)
    if farm is None:
        return 2
    if report(args, problems_of(farm, args.online)):
        return 1
    roles = {}
    for spec in farm.agents:
        roles[spec.config.role] = roles.get(spec.config.role, 0) + 1
    print(f"{args.farm}: ok ({len(farm.agents)} agents: "
          + ", ".join(f"{n} {role}" for role, n in roles.items()) + f"; state under {farm.state_root}"
          + ("; node reachable, fees covered" if args.online else "") + ")")
    return 0


def run_command(args) -> int:
    from agents.farm.supervisor import Supervisor

    farm = _load(args)
    if farm is None:
        return 2
    if report(args, problems_of(farm, online=False)):  # an agent that cannot start would restart forever
        return 2
    return asyncio.run(Supervisor(farm).run())


def engine_command(args) -> int:
    """One process, one chain connection, every worker account of the farm on ``--node``."""
    from agents.runtime import run_engine

    farm = _load(args)
    if farm is None:
        return 2
    workers = [s for s in farm.agents if s.config.role != "creator"]
    node = args.node or (workers[0].config.node if workers else None)
    chosen = [s for s in workers if s.config.node == node]
    if not chosen:
        print(f"{command_name(args)}: {args.farm}: no worker agents" + (f" on {node}" if node else "")
              + ": add a group with role annotator, engineer or contributor", file=sys.stderr)
        return 2
    return run_daemon(args, run_engine([(s.name, s.config) for s in chosen], chosen[0].config.metrics_port,
                                       grace_s=farm.rendezvous.grace_s, peers=farm.rendezvous.capacities(),
                                       peer_roles=farm.rendezvous.roles(),
                                       asset_root=farm.state_root / ".assets"), f"a journal under {farm.state_root}")


def fund_command(args) -> int:
    """Every agent whose account holds less than --amount gets the difference, from the signing key."""
    from decentralml_core.chain import ChainClient

    from .account import fund

    farm = _load(args)
    if farm is None:
        return 2

    async def main() -> list[dict]:
        source, rows = keypair(args), []
        nodes = {spec.config.node for spec in farm.agents}
        for node in sorted(nodes):
            async with await ChainClient.connect(node) as client:
                for spec in (s for s in farm.agents if s.config.node == node):
                    address = spec.config.key.load().ss58_address
                    free = (await client.storage("System", "Account", [address]))["data"]["free"]
                    sent = max(args.amount - free, 0)
                    if sent:
                        await fund(client, source, address, sent)
                    rows.append({"agent": spec.name, "address": address, "sent": sent,
                                 "sent_units": format_units(sent), "balance": free + sent,
                                 "balance_units": format_units(free + sent)})
        return rows

    try:
        rows = asyncio.run(main())
    except Exception as exc:  # noqa: BLE001 — one line; --debug shows the traceback
        return fail(args, exc)
    emit(args, rows, ["agent", "address", "sent_units", "balance_units"], title=f"funded from {keypair(args).ss58_address}")
    return 0


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
