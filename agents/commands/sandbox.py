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
    run.add_argument("task_dir", type=Path)
    run.add_argument("--script", default="start_task.sh")
    run.add_argument("--timeout", type=float, default=SandboxLimits.timeout_s, metavar="SECONDS")
    run.add_argument("--allow-unsandboxed", action="store_true", help="run even without isolation (unsafe)")
    run.add_argument("--json", action="store_true")
    run.set_defaults(run=run_sandbox)


def run_sandbox(args) -> int:
    limits = dataclasses.replace(SandboxLimits(), timeout_s=args.timeout)
    try:
        report = asyncio.run(run_task_script(args.task_dir, args.script, limits, args.allow_unsandboxed))
    except SandboxUnavailable as exc:
        print(json.dumps({"status": "rejected", "errors": [str(exc)]}) if args.json else f"decentralml sandbox: {exc}")
        return 1
    emit(args, report.as_dict(), title=f"sandbox run of {args.task_dir}")
    return 0 if report.status == "ok" else 1
