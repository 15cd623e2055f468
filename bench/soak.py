"""Soak: a farm kept busy for a long time, sampling what would creep — RSS, open descriptors, chain lag —
and accounting for every warning and error the agents logged.

One creator (Alice) publishing N AutoAccept tasks, A − 1 annotators (``max_concurrent: 2``) whose
task script sleeps ``--work-s`` seconds, so the farm stays busy for ``N × work_s / (2 × (A − 1))``;
with ``--engine W``, W annotators as the workers of one engine process (``decentralml farm engine``,
as ``farm run`` runs them) instead of one process each.
Every ``--sample-s`` seconds: each agent's RSS and open descriptors (``/proc``), and the chain lag
(the node's head minus the oldest ``chain_block`` an agent reports on ``/metrics``). The first
quarter of the run is warm-up; drift is the last sample over the first sample after warm-up.

    python bench/soak.py [--agents 10] [--tasks 1000] [--work-s 10] [--json]     # ≈ 10 min
    python bench/soak.py --engine 10 [--tasks 1000] [--work-s 10] [--json]       # one engine, 10 workers
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from substrateinterface import Keypair

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from farm_parts import agent, assets, engine, fund, observe, rss_mb  # noqa: E402

from decentralml_core import logs  # noqa: E402
from decentralml_core.chain import ChainClient  # noqa: E402
from decentralml_core.testing.devnet_process import DevnetProcess, free_port  # noqa: E402


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def chain_block(port: int) -> int | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    found = re.search(r"^decentralml_chain_block\{[^}]*\} (\d+)", text, re.M)
    return int(found.group(1)) if found else None


async def head(url: str) -> int:
    async with await ChainClient.connect(url) as client:
        return await client.block_number()


def logged_problems(folder: Path) -> collections.Counter:
    """Every warning and error line the agents wrote, by (level, event)."""
    found: collections.Counter = collections.Counter()
    for log in folder.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                if "Traceback" in line or "Error" in line:
                    found[("raw", line[:80])] += 1
                continue
            if isinstance(record, dict) and record.get("level") in ("warning", "error", "critical"):
                found[(record["level"], record.get("event", "?"))] += 1
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10, help="creator included")
    parser.add_argument("--engine", type=int, default=None, metavar="WORKERS",
                        help="WORKERS annotators in one engine process (then --agents is ignored)")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--work-s", type=float, default=10.0)
    parser.add_argument("--sample-s", type=float, default=15.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logs.configure("warning")
    with tempfile.TemporaryDirectory(prefix="decentralml-soak-") as scratch, \
            DevnetProcess("--log-level", "warning") as node:
        tmp = Path(scratch)
        uris = [f"//Alice//soak/{i}" for i in range(args.engine or args.agents - 1)]
        start_block = asyncio.run(fund(node.url, [Keypair.create_from_uri(u) for u in uris]))
        folder = assets(tmp / "assets")
        (folder / "start_task.sh").write_text(f"sleep {args.work_s:g}\n" + (folder / "start_task.sh").read_text())
        store = str(tmp / "store")
        ports = [free_port() for _ in range(2 if args.engine else args.agents)]
        work = {"policy": {"min_blocks_left": 0, "max_concurrent": 2}, "sandbox": {"timeout_s": args.work_s + 60}}
        if args.engine:  # the engine serves /metrics (every worker's) on its first worker's port
            procs = [engine({"state_root": str(tmp / "farm"), "metrics_base_port": ports[1],
                             "defaults": {"node": node.url, "storage": {"root": store}},
                             "agents": {"annotator": {"count": args.engine, "overrides": {
                                 "role": "annotator", "key": {"dev": "Alice", "derive": "//soak/{index}"}, **work}}}},
                            tmp / "farm.yaml")]
        else:
            procs = [agent({"role": "annotator", "node": node.url, "key": {"env": "SOAK_KEY"}, "metrics_port": ports[i + 1],
                            "state_dir": str(tmp / f"annotator-{i}"), "storage": {"root": store}, **work},
                           tmp / f"annotator-{i}.yaml", {"SOAK_KEY": uri}) for i, uri in enumerate(uris)]
        time.sleep(3)
        started = time.monotonic()
        procs.insert(0, agent({"role": "creator", "node": node.url, "key": {"dev": "Alice"}, "metrics_port": ports[0],
                               "state_dir": str(tmp / "creator"), "storage": {"root": store}, "tasks": [
                                   {"name": f"t{i}", "assets": str(folder), "question": "soak", "pays": 10**12,
                                    "max_assignments": 1, "expires_in": 100_000, "strategy": "AutoAccept"}
                                   for i in range(args.tasks)]}, tmp / "creator.yaml", {}))
        samples = []
        watcher = asyncio.new_event_loop()
        seen_task = watcher.create_task(observe(node.url, args.tasks, start_block, time.perf_counter() + 7200))
        while not seen_task.done():
            watcher.run_until_complete(asyncio.wait({seen_task}, timeout=args.sample_s))
            alive = [p for p in procs if p.poll() is None]
            now = watcher.run_until_complete(head(node.url))
            blocks = [b for b in (chain_block(port) for port in ports) if b is not None]
            samples.append({"t": round(time.monotonic() - started), "alive": len(alive),
                            "rss_mb": [round(rss_mb(p.pid), 1) for p in alive],
                            "fds": [open_fds(p.pid) for p in alive], "head": now,
                            "lag_blocks": now - min(blocks) if blocks else None,
                            "paid": None})
            if len(alive) < len(procs):
                break
        seen = seen_task.result() if seen_task.done() else {"paid": {}}
        watcher.close()
        total = time.monotonic() - started
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=120) for proc in procs]
        problems = logged_problems(tmp)
    warm = [s for s in samples if s["t"] >= total / 4 and len(s["rss_mb"]) == len(procs)] or samples
    first, last = warm[0], warm[-1]
    lags = [s["lag_blocks"] for s in samples if s["lag_blocks"] is not None]
    figures = {
        "processes": len(procs), "annotators": len(uris), "engine": bool(args.engine), "tasks": args.tasks, "paid": len(seen["paid"]), "minutes": round(total / 60, 1),
        "samples": len(samples),
        "rss_mb_first_max": max(first["rss_mb"]), "rss_mb_last_max": max(last["rss_mb"]),
        "rss_drift_mb_max": round(max(b - a for a, b in zip(first["rss_mb"], last["rss_mb"], strict=False)), 1),
        "fds_first_max": max(first["fds"]), "fds_last_max": max(last["fds"]),
        "fds_drift_max": max(b - a for a, b in zip(first["fds"], last["fds"], strict=False)),
        "lag_blocks_max": max(lags, default=None),
        "lag_blocks_after_warmup_max": max((s["lag_blocks"] for s in warm if s["lag_blocks"] is not None), default=None),
        "lag_blocks_series": lags,  # one per sample: bounded means it comes back down, not that it is small
        "blocks_per_s": round((samples[-1]["head"] - samples[0]["head"]) / max(samples[-1]["t"] - samples[0]["t"], 1), 1),
        "agent_exit_codes": sorted(set(codes)),
        "logged_problems": {f"{level}:{event}": n for (level, event), n in problems.most_common()},
    }
    if args.json:
        print(json.dumps({**figures, "series": samples}))
    else:
        print(f"soak: {len(uris)} annotators in {'one engine' if args.engine else 'their own processes'}, "
              f"{args.tasks} tasks, {args.work_s:g} s of work each")
        for key, value in figures.items():
            print(f"  {key:<28} {value}")
    return 0 if figures["paid"] == args.tasks and figures["agent_exit_codes"] == [0] else 1


if __name__ == "__main__":
    sys.exit(main())
