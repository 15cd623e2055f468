"""``decentralml campaign status CONFIG`` (a creator's federated campaigns, from its journal) and
``decentralml campaign data DIR`` (the example's private data sets)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agents.campaign import plot_path
from agents.config import ConfigError, load_config
from agents.journal import Journal

from ._shared import emit

ROUND = re.compile(r"^(?P<campaign>.+)/round-(?P<round>\d+)$")


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    campaign = commands.add_parser("campaign", parents=[common], help="federated training campaigns")
    sub = campaign.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")
    status = sub.add_parser("status", parents=[common], help="rounds, each update's verdict and the global "
                                                             "model's metric, from the creator's journal")
    status.add_argument("config", type=Path, help="the creator agent's YAML")
    status.add_argument("--state-dir", type=Path, help="the creator's state dir when not the YAML's (a farm "
                                                       "agent's: <state_root>/NAME)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=status_command)
    data = sub.add_parser("data", parents=[common], help="write the example's private data sets (digits, "
                                                         "split non-IID) to DIR")
    data.add_argument("folder", type=Path, metavar="DIR")
    data.add_argument("--contributors", type=int, default=4)
    data.add_argument("--alpha", type=float, default=1.0, help="Dirichlet concentration: lower is less IID")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--flip", type=int, action="append", default=[], metavar="N",
                      help="contributor N gets label-flipped data (a malicious contributor, for demos)")
    data.add_argument("--json", action="store_true")
    data.set_defaults(run=data_command)


def campaign_report(journal: Journal, name: str) -> dict:
    """One campaign's rounds and updates as the journal holds them."""
    entry = journal.get("campaign", name)
    history = {h["round"]: h for h in (entry.data.get("history", []) if entry else [])}
    rounds: dict[int, dict] = {}
    for published in journal.entries("published"):
        match = ROUND.match(published.id)
        if match and match["campaign"] == name and "task_id" in published.data:
            number = int(match["round"])
            rounds[number] = {"round": number, "task_id": published.data["task_id"],
                              "test_acc": history.get(number, {}).get("test_acc"), "accepted": 0, "rejected": 0,
                              "state": "aggregated" if number in history else "open"}
    by_task = {r["task_id"]: r for r in rounds.values()}
    updates = []
    for sub in journal.entries("submission"):
        row = by_task.get(sub.data.get("task_id"))
        if row is None:
            continue
        verdict = sub.data.get("verdict") or {}
        if sub.step == "paid":
            row["accepted"] += 1
        elif sub.step == "rejected":
            row["rejected"] += 1
        updates.append({"round": row["round"], "submission": int(sub.id), "worker": sub.data.get("worker"),
                        "step": sub.step, "reason": sub.data.get("reason") or verdict.get("reason", ""),
                        "scores": verdict.get("scores", {})})
    initial = history.get(0, {}).get("test_acc")
    return {"campaign": name, "state": entry.step if entry else "not started", "initial_test_acc": initial,
            "rounds": [rounds[n] for n in sorted(rounds)],
            "updates": sorted(updates, key=lambda u: (u["round"], u["submission"]))}


def status_command(args) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"decentralml campaign: {exc}", file=sys.stderr)
        return 2
    if not config.campaigns:
        print(f"decentralml campaign: {args.config} declares no campaigns (campaigns: in a creator's YAML)",
              file=sys.stderr)
        return 2
    state_dir = args.state_dir or config.state_dir
    path = state_dir / "journal.sqlite"
    if not path.exists():
        print(f"decentralml campaign: no journal at {path}: the creator agent has not run yet", file=sys.stderr)
        return 1
    journal = Journal(path)
    try:
        reports = [campaign_report(journal, c.name) for c in config.campaigns]
    finally:
        journal.close()
    for report in reports:
        report["plot"] = str(plot_path(state_dir, report["campaign"]))
    if args.json:
        emit(args, reports)
        return 0
    console = Console(width=None if sys.stdout.isatty() else 160)
    for report in reports:
        table = Table(title=f"campaign {report['campaign']}: {report['state']} (initial model test accuracy "
                            f"{report['initial_test_acc']})")
        for column in ("round", "task", "state", "accepted", "rejected", "global test accuracy"):
            table.add_column(column)
        for r in report["rounds"]:
            table.add_row(str(r["round"]), str(r["task_id"]), r["state"], str(r["accepted"]), str(r["rejected"]),
                          "" if r["test_acc"] is None else f"{r['test_acc']:.3f}")
        console.print(table)
        table = Table(title="updates")
        for column in ("round", "submission", "worker", "step", "reason"):
            table.add_column(column)
        for u in report["updates"]:
            table.add_row(str(u["round"]), str(u["submission"]), (u["worker"] or "")[:10] + "…", u["step"],
                          u["reason"])
        console.print(table)
        console.print(f"plot: {report['plot']}")
    return 0


def data_command(args) -> int:
    from decentralml_core.federated import digits

    paths = digits.write_example(args.folder, args.contributors, args.alpha, args.seed, tuple(args.flip))
    emit(args, {name: str(path) for name, path in paths.items()}, title=f"private data sets in {args.folder}")
    return 0
