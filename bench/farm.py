"""An annotation farm: 1 creator agent publishing N tiny AutoAccept tasks, A annotator agents, instant seal
(``--block-time``: a block every so many seconds instead).

Reports total time (first TaskCreated → last payment), tasks/s, p50/p95 latency TaskCreated → result
submitted and result submitted → paid (wall clock at the observer), the agents' RSS once idle, and
the sandbox's overhead against a bare subprocess running the same script: a sandbox started and run at once
and one started ahead (timed from the word to go), before the agents start and while the farm runs its tasks
(``sandbox_overhead_during_ms``, ``sandbox_ahead_overhead_during_ms``), and as the farm's
tasks met it (``task_sandbox_overhead_ms``: the median of the workers' own timings of their runs, from the word
to go to the report, read from their journals, less the bare script's median while the farm ran; the workers
start each sandbox ahead, while they take their last steps before the run). For the task phase: the CPU
seconds of the devnet, the creator (its start-up included), the annotators and their sandboxed scripts,
and how busy the whole machine was (``machine_busy``: 1.0 = every core busy, ours or anyone's) — a
market that cannot go faster with more workers is either waiting on something or out of CPU.

    python bench/farm.py [--tasks 200] [--annotators 8] [--script-s 0] [--max-concurrent 4] [--block-time 0] [--json]

The annotators run as one engine (``decentralml farm engine``: one process, one chain connection);
``--layout processes`` runs each as its own ``agent run`` instead. ``--before REV --sweep 1,8`` runs
this benchmark of git revision REV (its own code, from ``git archive``) and of this tree for each
annotator count, one after the other in one run, and prints them side by side.

``--across-hosts`` runs the market on test hosts in network namespaces instead (root and iproute2):
the devnet on one host, the creator and its asset gateway on another, the annotators split over two
more, each annotator host running ``decentralml farm run`` and a gateway for its results (the
creator validates CustomAccept json_outputs, so results travel back). For each agent count of
``--sweep`` it reports tasks/s, latencies and the CPU seconds each part spent on the tasks (devnet,
creator, gateways, annotator agents, sandboxed scripts) — where the time goes as agents are added.

    python bench/farm.py --across-hosts [--sweep 1,2,4,8,16] [--tasks 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from substrateinterface import Keypair

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm_parts import SCRIPT, agent, assets, cpu_s, engine, fund, machine_ticks, observe, pct, rss_mb  # noqa: E402

from decentralml_core import logs  # noqa: E402
from decentralml_core.sandbox import prepare_task_run, run_task_script  # noqa: E402
from decentralml_core.testing.devnet_process import DevnetProcess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


async def sandbox_overhead(tmp: Path, runs: int = 30, until: threading.Event | None = None,
                           gap_s: float = 0.0) -> tuple[float, float, float]:
    """Median ms of the tiny script run bare, sandboxed (a sandbox started and run at once) and in a sandbox
    started ahead (from the word to go, once it is set up: what a worker's task waits for when its sandbox was
    started while it took its last steps), ``runs`` triples (with ``until``: triples until it is set, at least 5
    — the overhead while the farm runs its tasks, as issue 18's goal has it), ``gap_s`` apart.

    While the farm runs, runs back to back were a load of their own: ~40 ms of spawning in every ~45 ms, a
    sizeable share of 2 cores taken from the market being measured. One triple every 0.25 s samples the same
    machine state (a 5 s task phase still gives ~20) at a few % of one core."""
    folder = tmp / ("overhead-during" if until else "overhead")
    folder.mkdir()
    (folder / "start_task.sh").write_text(SCRIPT)
    bare, boxed, ahead = [], [], []
    while (len(bare) < runs) if until is None else (len(bare) < 5 or not until.is_set()):
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("sh", "start_task.sh", cwd=folder)
        await proc.wait()
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        await run_task_script(folder)
        boxed.append(time.perf_counter() - t)
        prepared = await prepare_task_run(folder)
        await prepared.ready()
        t = time.perf_counter()
        await prepared.run()
        ahead.append(time.perf_counter() - t)
        if gap_s:
            await asyncio.sleep(gap_s)
    return statistics.median(bare) * 1000, statistics.median(boxed) * 1000, statistics.median(ahead) * 1000


def sandbox_walls_ms(state_root: Path) -> tuple[list[float], list[float]]:
    """Each task's sandboxed run as its worker timed it (the ``ran`` row's ``sandbox_s``: from the word to go to the
    report) and, of that, how long it waited for its sandbox to be set up (``sandbox_start_wait_s``), from every
    journal under ``state_root``: the sandbox as the farm's tasks met it. Empty for code that records neither."""
    import sqlite3

    walls: list[float] = []
    waits: list[float] = []
    for path in state_root.rglob("journal.sqlite"):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            for (data,) in db.execute("SELECT data FROM work"):
                row = json.loads(data)
                if "sandbox_s" in row:
                    walls.append(row["sandbox_s"] * 1000)
                    waits.append(row.get("sandbox_start_wait_s", 0.0) * 1000)
    return walls, waits


def side_by_side(rev: str, counts: list[int], tasks: int) -> int:
    """REV's bench/farm.py and this tree's, for each annotator count, one after the other in this run."""
    import subprocess

    rows = []
    with tempfile.TemporaryDirectory(prefix="decentralml-farm-before-") as old:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        for count in counts:
            for label, root in ((rev, Path(old)), ("this tree", ROOT)):
                out = subprocess.run([sys.executable, str(root / "bench" / "farm.py"), "--tasks", str(tasks),
                                      "--annotators", str(count), "--json"], capture_output=True, text=True,
                                     cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=600)
                figures = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}
                rows.append({"code": label, "annotators": count, **figures})
    keys = ["tasks_per_s", "created_to_submitted_p50_ms", "submitted_to_paid_p50_ms", "annotators_rss_mb_total",
            "annotator_rss_mb_max", "annotator_cpu_ms_per_task", "sandbox_overhead_ms", "sandbox_overhead_during_ms", "sandbox_ahead_overhead_during_ms", "task_sandbox_overhead_ms",
            "machine_busy", "cpu_s",
            "paid"]

    def shown(value) -> str:  # cpu_s: devnet/creator/annotators/sandboxes
        return "/".join(str(v) for v in value.values()) if isinstance(value, dict) else str(value)

    print(f"{'code':<12} {'annot':>5} " + " ".join(f"{k:>28}" for k in keys))
    for r in rows:
        print(f"{r['code']:<12} {r['annotators']:>5} " + " ".join(f"{shown(r.get(k, '-')):>28}" for k in keys))
    for label in (rev, "this tree"):
        rates = {r["annotators"]: r.get("tasks_per_s") or 0 for r in rows if r["code"] == label}
        lo, hi = min(counts), max(counts)
        if rates.get(lo):
            print(f"{label}: tasks/s with {hi} annotators / with {lo}: {rates.get(hi, 0) / rates[lo]:.2f}x")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=None, help="default: 200 (100 with --across-hosts)")
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--across-hosts", action="store_true", help="test hosts in network namespaces")
    parser.add_argument("--sweep", default="1,2,4,8,16", help="annotator counts for --across-hosts or --before")
    parser.add_argument("--layout", choices=("engine", "processes"), default="engine",
                        help="annotators as one engine process (default) or one process each")
    parser.add_argument("--before", metavar="REV", help="also run REV's bench/farm.py; print both side by side")
    parser.add_argument("--max-concurrent", type=int, default=4, help="task slots of each annotator")
    parser.add_argument("--block-time", type=float, default=0.0,
                        help="the devnet's block time in seconds (0: instant seal, a block as soon as a transaction "
                             "waits; a real network's blocks come every 6 s)")
    parser.add_argument("--meter-gap-s", type=float, default=0.25,
                        help="seconds between the sandbox meter's runs while the farm runs (0: back to back)")
    parser.add_argument("--script-s", type=float, default=0.0,
                        help="each task's script sleeps this long first: tasks that take time but no CPU")
    args = parser.parse_args()
    logs.configure("warning")
    if args.before:
        return side_by_side(args.before, [int(n) for n in args.sweep.split(",")], args.tasks or 100)
    if args.across_hosts:
        from farm_hosts import sweep  # needs root: imported only when asked

        return sweep([int(n) for n in args.sweep.split(",")], args.tasks or 100, args.json)
    args.tasks = args.tasks or 200
    with tempfile.TemporaryDirectory(prefix="decentralml-farm-") as scratch, \
            DevnetProcess("--log-level", "warning", "--block-time", str(args.block_time)) as node:
        tmp = Path(scratch)
        uris = [f"//Alice//farm/{i}" for i in range(args.annotators)]
        start_block = asyncio.run(fund(node.url, [Keypair.create_from_uri(u) for u in uris]))
        folder = assets(tmp / "assets", args.script_s)
        store = str(tmp / "store")
        bare_ms, boxed_ms, ahead_ms = asyncio.run(sandbox_overhead(tmp))  # on a quiet machine, before the agents
        policy = {"min_blocks_left": 0, "max_concurrent": args.max_concurrent}
        if args.layout == "processes":
            workers = [agent({"role": "annotator", "node": node.url, "key": {"env": "FARM_KEY"},
                              "state_dir": str(tmp / f"annotator-{i}"), "storage": {"root": store}, "policy": policy},
                             tmp / f"annotator-{i}.yaml", {"FARM_KEY": uri}) for i, uri in enumerate(uris)]
        else:
            workers = [engine({"state_root": str(tmp / "farm"), "defaults": {"node": node.url, "storage": {"root": store}},
                               "agents": {"annotator": {"count": args.annotators, "overrides": {
                                   "role": "annotator", "key": {"dev": "Alice", "derive": "//farm/{index}"},
                                   "policy": policy}}}}, tmp / "farm.yaml")]
        time.sleep(3)  # let them connect
        started = time.perf_counter()
        creator = agent({"role": "creator", "node": node.url, "key": {"dev": "Alice"}, "state_dir": str(tmp / "creator"),
                         "storage": {"root": store}, "tasks": [
                             {"name": f"t{i}", "assets": str(folder), "question": "tiny", "pays": 10**12,
                              "max_assignments": 1, "expires_in": 10_000, "strategy": "AutoAccept"}
                             for i in range(args.tasks)]}, tmp / "creator.yaml", {})
        cpu_before = [cpu_s(p.pid) for p in (node.proc, *workers)]
        machine_before = machine_ticks()
        done, during = threading.Event(), {}
        meter = threading.Thread(target=lambda: during.update(ms=asyncio.run(sandbox_overhead(tmp, until=done, gap_s=args.meter_gap_s))))
        meter.start()  # the sandbox's overhead while the farm runs (it adds a little load of its own)
        try:
            seen = asyncio.run(observe(node.url, args.tasks, start_block, started + 600))
        finally:
            done.set()
            meter.join()
        machine_after = machine_ticks()
        cpu_after = [cpu_s(p.pid) for p in (node.proc, *workers)]
        total = max(seen["paid"].values(), default=started) - min(seen["created"].values(), default=started)
        worker_cpu = sum(a[0] - b[0] for a, b in zip(cpu_after[1:], cpu_before[1:], strict=True))
        sandbox_cpu = sum(a[1] - b[1] for a, b in zip(cpu_after[1:], cpu_before[1:], strict=True))
        devnet_cpu = cpu_after[0][0] - cpu_before[0][0]
        creator_cpu = cpu_s(creator.pid)[0]  # its start-up included (it starts with the task phase)
        time.sleep(2)  # idle
        rss = [rss_mb(p.pid) for p in [creator, *workers]]
        for proc in (creator, *workers):
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc in (creator, *workers)]
        walls, waits = sandbox_walls_ms(tmp)
    to_submit = [seen["submitted"][t] - seen["created"][t] for t in seen["submitted"] if t in seen["created"]]
    to_paid = [seen["paid"][t] - seen["submitted"][t] for t in seen["paid"] if t in seen["submitted"]]
    figures = {"tasks": args.tasks, "annotators": args.annotators, "script_s": args.script_s,
               "max_concurrent": args.max_concurrent, "block_time_s": args.block_time, "paid": len(seen["paid"]),
               "total_s": round(total, 2), "created_span_s": round(max(seen["created"].values(), default=0)
                                                                  - min(seen["created"].values(), default=0), 2), "tasks_per_s": round(len(seen["paid"]) / total, 1) if total else 0,
               "created_to_submitted_p50_ms": pct(to_submit, 50), "created_to_submitted_p95_ms": pct(to_submit, 95),
               "submitted_to_paid_p50_ms": pct(to_paid, 50), "submitted_to_paid_p95_ms": pct(to_paid, 95),
               "creator_rss_mb": round(rss[0], 1), "annotator_rss_mb_max": round(max(rss[1:]), 1),
               "annotators_rss_mb_total": round(sum(rss[1:]), 1), "layout": args.layout,
               "annotator_cpu_ms_per_task": round(worker_cpu * 1000 / max(1, len(seen["paid"])), 1),
               "cpu_s": {"devnet": round(devnet_cpu, 2), "creator": round(creator_cpu, 2),
                         "annotators": round(worker_cpu, 2), "sandboxes": round(sandbox_cpu, 2)},
               "machine_busy": round((machine_after[0] - machine_before[0])
                                     / max(1, machine_after[1] - machine_before[1]), 2),
               "bare_subprocess_ms": round(bare_ms, 1), "sandboxed_ms": round(boxed_ms, 1),
               "sandbox_overhead_ms": round(boxed_ms - bare_ms, 1),
               "sandbox_ahead_overhead_ms": round(ahead_ms - bare_ms, 1),
               "sandbox_ahead_overhead_during_ms": round(during["ms"][2] - during["ms"][0], 1),
               "sandbox_overhead_during_ms": round(during["ms"][1] - during["ms"][0], 1),
               "sandboxed_during_ms": round(during["ms"][1], 1), "bare_during_ms": round(during["ms"][0], 1),
               # the sandbox as the tasks met it (started while the worker took its last steps before the run)
               "task_sandboxed_p50_ms": round(statistics.median(walls), 1) if walls else None,
               "task_sandbox_overhead_ms": round(statistics.median(walls) - during["ms"][0], 1) if walls else None,
               "task_sandbox_start_wait_p50_ms": round(statistics.median(waits), 1) if waits else None,
               "agent_exit_codes": sorted(set(codes)),
               "cpus": os.cpu_count(), "python": platform.python_version()}
    if args.json:
        print(json.dumps(figures))
    else:
        print("annotation farm (instant seal, AutoAccept, tiny tasks)")
        for key, value in figures.items():
            print(f"  {key:<30} {value}")
    return 0 if figures["paid"] == args.tasks and figures["agent_exit_codes"] == [0] else 1


if __name__ == "__main__":
    sys.exit(main())
