"""``decentralml agent run|check CONFIG`` and ``decentralml status STATE_DIR…``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from agents.config import ConfigError, load_config
from agents.journal import Journal

from ._shared import command_name, emit, printable, run_daemon


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    agent = commands.add_parser("agent", parents=[common], help="run a role's agent from a YAML file")
    sub = agent.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    run = sub.add_parser("run", parents=[common], help="run until SIGTERM/SIGINT")
    run.add_argument("config", type=Path, help="the agent's YAML file (see docs/configuration.md)")
    run.add_argument("--fresh", action="store_true",
                     help="start a new journal (the old one, work and results are kept aside in old-TIME/): for a "
                          "state dir of another chain, e.g. after a devnet started with --tmp restarted")
    run.add_argument("--debug", action="store_true", help="show the traceback of an error")
    run.set_defaults(run=run_agent_command)
    check = sub.add_parser("check", parents=[common], help="check everything `agent run` needs, without starting")
    check.add_argument("config", type=Path, help="the agent's YAML file")
    check.add_argument("--online", action="store_true",
                       help="also ask the node: reachable, the journal's chain, the account able to pay fees")
    check.set_defaults(run=check_command)

    status = commands.add_parser("status", parents=[common], help="local agents' work, from their journals")
    status.add_argument("state_dirs", type=Path, nargs="+", metavar="STATE_DIR", help="an agent's state_dir")
    status.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    status.set_defaults(run=status_command)


def _load(args):
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"{command_name(args)}: {printable(exc)}", file=sys.stderr)
        return None


def check_command(args) -> int:
    from agents.preflight import offline_problems, online_problems

    config = _load(args)
    if config is None:
        return 2
    problems, address = offline_problems(config)
    if args.online:
        problems += asyncio.run(online_problems(config, address))
    for problem in problems:
        print(f"{command_name(args)}: {args.config}: {printable(problem)}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.config}: ok ({config.role}, node {config.node}, state {config.state_dir}"
          + (", node reachable, fees covered" if args.online else "") + ")")
    return 0


CHAIN_BOUND = ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm", "work", "results", "campaigns")


def start_fresh(state_dir: Path) -> Path:
    """Move everything bound to the old chain into ``old-TIME/``, never deleting it: the journal may hold
    the only record of work on that chain. Work and result folders are named by task and submission id,
    which a new chain hands out again from 0: left in place, a worker would take the old chain's
    ``work/task-0/submission-0`` for the new task 0's verified assets and run the wrong task."""
    aside = state_dir / f"old-{time.strftime('%Y%m%dT%H%M%S')}"
    for name in CHAIN_BOUND:
        if (state_dir / name).exists():
            aside.mkdir(exist_ok=True)
            (state_dir / name).rename(aside / name)
    for plot in state_dir.glob("campaign-*.png"):
        aside.mkdir(exist_ok=True)
        plot.rename(aside / plot.name)
    return aside


def run_agent_command(args) -> int:
    from agents.preflight import offline_problems
    from agents.runtime import run_agent

    config = _load(args)
    if config is None:
        return 2
    problems, _ = offline_problems(config)
    if problems:  # the same line `agent check` prints, not a traceback from deep inside the agent
        print(f"{command_name(args)}: {args.config}: {printable(problems[0])}", file=sys.stderr)
        return 2
    if args.fresh:
        start_fresh(config.state_dir)
    return run_daemon(args, run_agent(config), f"the journal in {config.state_dir}")


SHOWN_VERDICTS = {"accepted": "paid", "claimed": "paid", "rejected": "rejected"}


def shown_step(entry) -> str:
    """A worker's result once the creator decided: ``paid`` or ``rejected`` (the journal's step stays
    ``submitted``: the work is done either way; the verdict is a fact recorded beside it)."""
    verdict = entry.data.get("verdict")
    return SHOWN_VERDICTS.get(verdict, entry.step) if entry.step == "submitted" else entry.step


def status_command(args) -> int:
    rows = []
    for state in args.state_dirs:
        path = state / "journal.sqlite"
        if not path.exists():
            print(f"decentralml status: no journal in {state}", file=sys.stderr)
            return 1
        journal = Journal(path)
        for entry in journal.entries():
            rows.append({"agent": state.name, "kind": entry.kind, "id": entry.id, "step": shown_step(entry),
                         **{k: v for k, v in entry.data.items() if k in ("task_id", "submission_id", "amount",
                                                                          "reason", "error", "result_path",
                                                                          "verdict", "verdict_reason")}})
        journal.close()
    emit(args, rows, ["agent", "kind", "id", "step", "task_id", "submission_id", "amount", "reason",
                      "verdict_reason", "error"], title="agents")
    return 0
