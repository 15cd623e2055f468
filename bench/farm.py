"""An annotation farm: 1 creator agent publishing N tiny AutoAccept tasks, A annotator agents, instant seal.

Reports total time (first TaskCreated → last payment), tasks/s, p50/p95 latency TaskCreated → result
submitted and result submitted → paid (wall clock at the observer), the agents' RSS once idle, and
the sandbox's overhead against a bare subprocess running the same script.

    python bench/farm.py [--tasks 200] [--annotators 8] [--json]

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
import time
from pathlib import Path

from substrateinterface import Keypair

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm_parts import SCRIPT, agent, assets, fund, observe, pct, rss_mb  # noqa: E402

from decentralml_core import logs  # noqa: E402
from decentralml_core.sandbox import run_task_script  # noqa: E402
from decentralml_core.testing.devnet_process import DevnetProcess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


async def sandbox_overhead(tmp: Path, runs: int = 30) -> tuple[float, float]:
    folder = tmp / "overhead"
    folder.mkdir()
    (folder / "start_task.sh").write_text(SCRIPT)
    bare, boxed = [], []
    for _ in range(runs):
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("sh", "start_task.sh", cwd=folder)
        await proc.wait()
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        await run_task_script(folder)
        boxed.append(time.perf_counter() - t)
    return statistics.median(bare) * 1000, statistics.median(boxed) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=None, help="default: 200 (100 with --across-hosts)")
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--across-hosts", action="store_true", help="test hosts in network namespaces")
    parser.add_argument("--sweep", default="1,2,4,8,16", help="annotator counts for --across-hosts")
    args = parser.parse_args()
    logs.configure("warning")
    if args.across_hosts:
        from farm_hosts import sweep  # needs root: imported only when asked

        return sweep([int(n) for n in args.sweep.split(",")], args.tasks or 100, args.json)
    args.tasks = args.tasks or 200
    with tempfile.TemporaryDirectory(prefix="decentralml-farm-") as scratch, \
            DevnetProcess("--log-level", "warning") as node:
        tmp = Path(scratch)
        uris = [f"//Alice//farm/{i}" for i in range(args.annotators)]
        start_block = asyncio.run(fund(node.url, [Keypair.create_from_uri(u) for u in uris]))
        folder = assets(tmp / "assets")
        store = str(tmp / "store")
        bare_ms, boxed_ms = asyncio.run(sandbox_overhead(tmp))  # on a quiet machine, before the agents
        workers = [agent({"role": "annotator", "node": node.url, "key": {"env": "FARM_KEY"},
                          "state_dir": str(tmp / f"annotator-{i}"), "storage": {"root": store},
                          "policy": {"min_blocks_left": 0, "max_concurrent": 4}},
                         tmp / f"annotator-{i}.yaml", {"FARM_KEY": uri}) for i, uri in enumerate(uris)]
        time.sleep(3)  # let them connect
        started = time.perf_counter()
        creator = agent({"role": "creator", "node": node.url, "key": {"dev": "Alice"}, "state_dir": str(tmp / "creator"),
                         "storage": {"root": store}, "tasks": [
                             {"name": f"t{i}", "assets": str(folder), "question": "tiny", "pays": 10**12,
                              "max_assignments": 1, "expires_in": 10_000, "strategy": "AutoAccept"}
                             for i in range(args.tasks)]}, tmp / "creator.yaml", {})
        seen = asyncio.run(observe(node.url, args.tasks, start_block, started + 600))
        total = max(seen["paid"].values(), default=started) - min(seen["created"].values(), default=started)
        time.sleep(2)  # idle
        rss = [rss_mb(p.pid) for p in [creator, *workers]]
        for proc in (creator, *workers):
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc in (creator, *workers)]
    to_submit = [seen["submitted"][t] - seen["created"][t] for t in seen["submitted"] if t in seen["created"]]
    to_paid = [seen["paid"][t] - seen["submitted"][t] for t in seen["paid"] if t in seen["submitted"]]
    figures = {"tasks": args.tasks, "annotators": args.annotators, "paid": len(seen["paid"]),
               "total_s": round(total, 2), "tasks_per_s": round(len(seen["paid"]) / total, 1) if total else 0,
               "created_to_submitted_p50_ms": pct(to_submit, 50), "created_to_submitted_p95_ms": pct(to_submit, 95),
               "submitted_to_paid_p50_ms": pct(to_paid, 50), "submitted_to_paid_p95_ms": pct(to_paid, 95),
               "creator_rss_mb": round(rss[0], 1), "annotator_rss_mb_max": round(max(rss[1:]), 1),
               "bare_subprocess_ms": round(bare_ms, 1), "sandboxed_ms": round(boxed_ms, 1),
               "sandbox_overhead_ms": round(boxed_ms - bare_ms, 1), "agent_exit_codes": sorted(set(codes)),
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
