"""``decentralml agent run|check CONFIG`` and ``decentralml status STATE_DIR…``."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from pathlib import Path

from agents.config import ConfigError, load_config
from agents.journal import Journal

from ._shared import emit


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    agent = commands.add_parser("agent", parents=[common], help="run a role's agent from a YAML file")
    sub = agent.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    run = sub.add_parser("run", parents=[common], help="run until SIGTERM/SIGINT")
    run.add_argument("config", type=Path)
    run.set_defaults(run=run_agent_command)
    check = sub.add_parser("check", parents=[common], help="validate the YAML without starting")
    check.add_argument("config", type=Path)
    check.set_defaults(run=check_command)

    status = commands.add_parser("status", parents=[common], help="local agents' work, from their journals")
    status.add_argument("state_dirs", type=Path, nargs="+", metavar="STATE_DIR")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=status_command)


def _load(args):
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"decentralml agent: {exc}", file=sys.stderr)
        return None


def check_command(args) -> int:
    config = _load(args)
    if config is None:
        return 2
    print(f"{args.config}: ok ({config.role}, node {config.node}, state {config.state_dir})")
    return 0


def run_agent_command(args) -> int:
    from agents.runtime import run_agent
    from decentralml_core.chain import ChainError
    from decentralml_core.sandbox import SandboxUnavailable

    config = _load(args)
    if config is None:
        return 2
    try:
        asyncio.run(run_agent(config))
    except (ChainError, SandboxUnavailable, ConfigError, OSError, ValueError) as exc:
        print(f"decentralml agent: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:  # a full disk under the state dir: nothing can be journaled, so nothing is done
        print(f"decentralml agent: the journal in {config.state_dir}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def status_command(args) -> int:
    rows = []
    for state in args.state_dirs:
        path = state / "journal.sqlite"
        if not path.exists():
            print(f"decentralml status: no journal in {state}", file=sys.stderr)
            return 1
        journal = Journal(path)
        for entry in journal.entries():
            rows.append({"agent": state.name, "kind": entry.kind, "id": entry.id, "step": entry.step,
                         **{k: v for k, v in entry.data.items() if k in ("task_id", "submission_id", "amount",
                                                                          "reason", "error", "result_path")}})
        journal.close()
    emit(args, rows, ["agent", "kind", "id", "step", "task_id", "submission_id", "amount", "reason", "error"],
         title="agents")
    return 0
