"""Races across hosts, with and without the rendezvous grace: H engines (``decentralml farm engine``,
one per "host") of W annotators each on one devnet, 1 creator publishing N tiny one-slot tasks.

Every engine sees every task; within an engine one worker goes for it, but the engines race each
other. Reports per setting: tasks/s, claims refused on chain (a fee each: the journal's ``lost``
rows whose reason is a chain error), claims given up before sending (``all assignments taken``),
created→claimed p50/p95 (the winner's, from its engine seeing ``TaskCreated`` to its claim's receipt), and
the blocks from a task's creation to its first assignment (the chain's own clock). A fallback claim that
finds the slot taken when its grace ends is dropped by the engine unjournaled: "given up" counts only
those dropped later, by the worker.

    python bench/farm_grace.py [--hosts 4] [--workers 4] [--tasks 100] [--graces 0,2.0] [--block-time 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from substrateinterface import Keypair

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm_parts import agent, assets, engine, fund, observe, pct  # noqa: E402

from agents.journal import Journal  # noqa: E402
from decentralml_core import logs  # noqa: E402
from decentralml_core.testing.devnet_process import DevnetProcess, free_port  # noqa: E402


def outcomes(root: Path) -> dict:
    refused = given_up = claimed = 0
    waits = []
    for path in root.glob("host-*/annotator-*/journal.sqlite"):
        journal = Journal(path)
        for entry in journal.entries("task"):
            if entry.step == "lost":
                given_up += entry.data.get("reason") == "all assignments taken"
                refused += entry.data.get("reason") != "all assignments taken"
            if entry.data.get("claimed_at") and entry.data.get("seen_at"):
                claimed += 1
                waits.append(entry.data["claimed_at"] - entry.data["seen_at"])
        journal.close()
    return {"refused_on_chain": refused, "given_up_before_sending": given_up, "claimed": claimed,
            "created_to_claimed_p50_ms": pct(waits, 50), "created_to_claimed_p95_ms": pct(waits, 95),
            "created_to_claimed_mean_ms": round(statistics.fmean(waits) * 1000, 1) if waits else 0.0}


def run(grace: float, hosts: int, workers: int, tasks: int, block_time: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="decentralml-grace-") as scratch, \
            DevnetProcess("--log-level", "warning", "--block-time", str(block_time)) as node:
        tmp = Path(scratch)
        uris = [[f"//Alice//grace/{h}/{i}" for i in range(workers)] for h in range(hosts)]
        keys = [[Keypair.create_from_uri(u) for u in row] for row in uris]
        start_block = asyncio.run(fund(node.url, [k for row in keys for k in row]))
        folder = assets(tmp / "assets")
        store = str(tmp / "store")
        everyone = [k.ss58_address for row in keys for k in row]
        engines = [engine({"state_root": str(tmp / f"host-{h}"), "rendezvous": {"grace_s": grace, "peers": everyone},
                           "metrics_base_port": free_port(),  # each host's engine serves its own
                           "defaults": {"node": node.url, "storage": {"root": store}},
                           "agents": {"annotator": {"count": workers, "overrides": {
                               "role": "annotator", "key": {"dev": "Alice", "derive": f"//grace/{h}/{{index}}"},
                               "policy": {"min_blocks_left": 0, "max_concurrent": 4}}}}}, tmp / f"host-{h}.yaml")
                   for h in range(hosts)]
        time.sleep(4)  # let them connect
        assert all(proc.poll() is None for proc in engines), "an engine exited: see host-N.log"
        started = time.perf_counter()
        creator = agent({"role": "creator", "node": node.url, "key": {"dev": "Alice"}, "state_dir": str(tmp / "creator"),
                         "storage": {"root": store}, "tasks": [
                             {"name": f"t{i}", "assets": str(folder), "question": "tiny", "pays": 10**12,
                              "max_assignments": 1, "expires_in": 10_000, "strategy": "AutoAccept"}
                             for i in range(tasks)]}, tmp / "creator.yaml", {})
        seen = asyncio.run(observe(node.url, tasks, start_block, started + 300))
        total = max(seen["paid"].values(), default=started) - min(seen["created"].values(), default=started)
        for proc in (creator, *engines):
            proc.send_signal(signal.SIGTERM)
        for proc in (creator, *engines):
            proc.wait(timeout=60)
        blocks = [seen["assigned_block"][t] - seen["created_block"][t] for t in seen["assigned_block"]
                  if t in seen["created_block"]]
        return {"grace_s": grace, "block_time_s": block_time, "hosts": hosts, "workers_per_host": workers, "paid": len(seen["paid"]),
                "tasks_per_s": round(len(seen["paid"]) / total, 1) if total else 0, **outcomes(tmp),
                "created_to_assigned_blocks_p50": statistics.median(blocks) if blocks else 0,
                "created_to_assigned_blocks_mean": round(statistics.fmean(blocks), 2) if blocks else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--graces", default="0,2.0", help="grace_s values, compared in this run")
    parser.add_argument("--block-time", type=float, default=0.5,
                        help="devnet block time: claims wait in the pool this long, as on a real chain "
                             "(0: instant seal, where a claim lands before the other hosts look)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logs.configure("warning")
    rows = [run(float(g), args.hosts, args.workers, args.tasks, args.block_time) for g in args.graces.split(",")]
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
