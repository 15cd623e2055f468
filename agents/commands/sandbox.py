"""``decentralml sandbox run TASK_DIR``: run one task dir exactly as an agent would, and report."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from pathlib import Path

from decentralml_core.sandbox import SandboxLimits, SandboxUnavailable, run_task_script

from ._shared import emit


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sandbox = commands.add_parser("sandbox", parents=[common], help="run task scripts isolated")
    sub = sandbox.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")
    run = sub.add_parser("run", parents=[common], help="run TASK_DIR/start_task.sh in the sandbox and report")
    run.add_argument("task_dir", type=Path, help="a folder holding the script, e.g. assets/data_annotator or a "
                                                 "work dir")
    run.add_argument("--script", default="start_task.sh", help="the script to run (default: %(default)s)")
    run.add_argument("--timeout", type=float, default=SandboxLimits.timeout_s, metavar="SECONDS",
                     help="wall-clock limit (default: %(default)s)")
    run.add_argument("--share-python", action="store_true",
                     help="the script may use the agent's python3 and packages, as workers with "
                          "sandbox.share_python run it")
    run.add_argument("--allow-unsandboxed", action="store_true", help="run even without isolation (unsafe)")
    run.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    run.set_defaults(run=run_sandbox)


def run_sandbox(args) -> int:
    limits = dataclasses.replace(SandboxLimits(), timeout_s=args.timeout, share_python=args.share_python)
    try:
        report = asyncio.run(run_task_script(args.task_dir, args.script, limits, args.allow_unsandboxed))
    except SandboxUnavailable as exc:
        print(json.dumps({"status": "rejected", "errors": [str(exc)]}) if args.json else f"decentralml sandbox run: {exc}")
        return 1
    emit(args, report.as_dict(), title=f"sandbox run of {args.task_dir}")
    return 0 if report.status == "ok" else 1
