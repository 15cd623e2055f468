"""The sandbox's own cost: a tiny script run by ``run_task_script`` against a bare ``sh`` subprocess, from a
parent the size of a worker agent (``--parent-mb`` of touched memory: how a process starts a child depends on
its size), and what bubblewrap alone costs (the same bwrap argv, spawned plainly) — the rest is ours; and the
same script in a sandbox started ahead (``prepare_task_run``), timed from the word to go once it is set up, as
a worker's task meets it when its sandbox was started at the fetch (``ahead_overhead_ms``).

    python bench/sandbox_start.py [--runs 30] [--parent-mb 90] [--before REV] [--json]

``--before REV`` runs REV's ``run_task_script`` (its code from ``git archive``) in a child process the same
way, alternating with this tree's, and prints both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "mkdir -p outputs\necho '{\"boxes\": []}' > outputs/file_1.json\n"


async def measure(runs: int) -> dict[str, float]:
    from decentralml_core.sandbox import run_task_script
    from decentralml_core.sandbox.limits import SandboxLimits
    from decentralml_core.sandbox.runner import bwrap_argv

    try:
        from decentralml_core.sandbox import prepare_task_run
    except ImportError:  # --before REV: code from before a sandbox could be started ahead
        prepare_task_run = None

    with tempfile.TemporaryDirectory(prefix="decentralml-sandbox-start-") as scratch:
        folder = Path(scratch) / "task"
        folder.mkdir()
        (folder / "start_task.sh").write_text(SCRIPT)
        times: dict[str, list[float]] = {"bare_sh": [], "bwrap_alone": [], "sandboxed": []}
        for _ in range(runs):
            started = time.perf_counter()
            proc = await asyncio.create_subprocess_exec("sh", "start_task.sh", cwd=folder)
            await proc.wait()
            times["bare_sh"].append(time.perf_counter() - started)
            started = time.perf_counter()
            report = await run_task_script(folder)
            times["sandboxed"].append(time.perf_counter() - started)
            assert report.status == "ok", report
            started = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(*bwrap_argv(folder, "start_task.sh", SandboxLimits()),
                                                        cwd=folder, env={}, stdin=subprocess.DEVNULL)
            await proc.wait()
            times["bwrap_alone"].append(time.perf_counter() - started)
            if prepare_task_run is not None:  # started ahead, timed from the word to go once it is set up
                prepared = await prepare_task_run(folder)
                await prepared.ready()
                started = time.perf_counter()
                report = await prepared.run()
                times.setdefault("started_ahead", []).append(time.perf_counter() - started)
                assert report.status == "ok", report
    medians = {f"{k}_ms": round(statistics.median(v) * 1000, 1) for k, v in times.items()}
    medians["overhead_ms"] = round(medians["sandboxed_ms"] - medians["bare_sh_ms"], 1)
    medians["ours_ms"] = round(medians["sandboxed_ms"] - medians["bwrap_alone_ms"], 1)
    if "started_ahead_ms" in medians:
        medians["ahead_overhead_ms"] = round(medians["started_ahead_ms"] - medians["bare_sh_ms"], 1)
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--parent-mb", type=int, default=90)
    parser.add_argument("--before", metavar="REV")
    parser.add_argument("--rounds", type=int, default=3, help="with --before: alternations of the two trees")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.before:
        rows: dict[str, list[dict]] = {args.before: [], "this tree": []}
        with tempfile.TemporaryDirectory(prefix="decentralml-sandbox-before-") as old:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
            for _ in range(args.rounds):
                for label, root in ((args.before, Path(old)), ("this tree", ROOT)):
                    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--runs", str(args.runs),
                                          "--parent-mb", str(args.parent_mb), "--json"], capture_output=True,
                                         text=True, env={**os.environ, "PYTHONPATH": str(root)}, timeout=600)
                    rows[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for label, found in rows.items():
            merged = {k: statistics.median(r[k] for r in found) for k in found[-1]}
            print(f"{label:<12} " + "  ".join(f"{k} {v:.1f}" for k, v in merged.items()))
        return 0
    from decentralml_core import logs

    logs.configure("warning")
    ballast = bytearray(os.urandom(1)) * (args.parent_mb * 2**20)  # touched: resident, as an agent's heap
    figures = asyncio.run(measure(args.runs))
    figures["parent_rss_mb"] = round(len(ballast) / 2**20)
    print(json.dumps(figures) if args.json else "\n".join(f"  {k:<16} {v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
