"""``bench/farm.py --across-hosts``: the annotation farm on test hosts (network namespaces), swept over
the number of annotator agents, with the CPU each part of the market spends.

Hosts: ``chain`` (devnet), ``creator`` (creator agent + asset gateway), ``ann1``/``ann2`` (a
``decentralml farm run`` each, half the annotators, and a gateway for their results). This process
joins the chain host's network namespace to fund the agents and observe the chain.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml
from farm_parts import assets, cpu_s, fund, machine_ticks, observe, pct
from substrateinterface import Keypair

from decentralml_core.testing.testnet import TestNetwork, unavailable

CLI = [sys.executable, "-m", "agents.cli", "--log-level", "warning"]
CLONE_NEWNET = 0x40000000
EXPOSE = ["--allow", "10.77.0.0/24", "--rate-limit", "5000"]  # the bench measures the market, not the limiter


def join_netns(path: str) -> None:
    """Move this (still single-threaded) process into the network namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def lost_claims(state_roots: list[Path]) -> tuple[int, int]:
    """Tasks an agent went for and another won (journal step ``lost``): (seen full before claiming,
    claimed on chain and refused) — the cost of N agents racing for every task."""
    from agents.journal import Journal

    seen_full = refused = 0
    for path in (p for root in state_roots for p in root.glob("*/journal.sqlite")):
        journal = Journal(path)
        for entry in journal.entries("task", steps=("lost",)):
            if entry.data.get("reason") == "all assignments taken":
                seen_full += 1
            else:
                refused += 1
        journal.close()
    return seen_full, refused


def agent_pids(state_root: Path) -> list[int]:
    state = json.loads((state_root / "farm.json").read_text())
    return [a["pid"] for a in state["agents"] if a["pid"]]


def wait_ready(state_root: Path, n: int, timeout: float = 180) -> None:
    """Until ``n`` agents of a farm are following the chain (their journals hold a checkpoint)."""
    from agents.journal import Journal

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = 0
        for path in state_root.glob("*/journal.sqlite"):
            journal = Journal(path)
            ready += journal.meta("checkpoint") is not None
            journal.close()
        if ready == n:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{n} agents in {state_root} did not start")


def run_one(n_agents: int, n_tasks: int, tmp: Path, root_ns: str) -> dict:
    with TestNetwork() as net:
        chain, creator = net.host("chain"), net.host("creator")
        ann_hosts = [net.host("ann1"), net.host("ann2")][:min(2, n_agents)]
        node = f"ws://{chain.address}:9944"
        devnet = chain.popen([*CLI, "devnet", "--host", chain.address, "--tmp", *EXPOSE], log=tmp / "devnet.log")
        creator.wait_listening(chain.address, 9944, proc=devnet)
        gateways: dict[str, int] = {}
        for host in (creator, *ann_hosts):
            proc = host.popen([*CLI, "storage", "serve", "--host", host.address, "--root", str(tmp / host.name / "store"),
                               *EXPOSE], log=tmp / f"{host.name}-gateway.log")
            host.wait_listening(host.address, 8080, proc=proc)
            gateways[host.name] = proc.pid

        join_netns(f"/run/netns/{chain.ns}")  # fund and observe from the chain host
        try:
            split = [n_agents // len(ann_hosts) + (i < n_agents % len(ann_hosts)) for i in range(len(ann_hosts))]
            keys = [Keypair.create_from_uri(f"//Alice//bench/{h.name}/{i}") for h, k in zip(ann_hosts, split, strict=True)
                    for i in range(k)]
            start_block = asyncio.run(fund(node, keys))
            farms = []
            for host, count in zip(ann_hosts, split, strict=True):
                farm = tmp / host.name / "farm.yaml"
                farm.write_text(yaml.safe_dump({
                    "state_root": "state", "defaults": {
                        "role": "annotator", "node": node,
                        "storage": {"root": "store", "gateways": [f"http://{creator.address}:8080"]},
                        "policy": {"min_blocks_left": 0, "max_concurrent": 4}},
                    "agents": {"annotator": {"count": count, "overrides": {
                        "key": {"dev": "Alice", "derive": f"//bench/{host.name}/{{index}}"}}}}}))
                farms.append((host, host.popen([*CLI, "farm", "run", str(farm)], log=tmp / f"{host.name}-farm.log")))
            for host, count in zip(ann_hosts, split, strict=True):
                wait_ready(tmp / host.name / "state", count)
            agents = [pid for host in ann_hosts for pid in agent_pids(tmp / host.name / "state")]
            before = {"devnet": cpu_s(devnet.pid), "gateways": [cpu_s(p) for p in gateways.values()],
                      "agents": [cpu_s(p) for p in agents]}
            folder = assets(tmp / "assets")
            config = tmp / "creator.yaml"
            config.write_text(yaml.safe_dump({
                "role": "creator", "node": node, "key": {"dev": "Alice"}, "state_dir": str(tmp / "creator"),
                "storage": {"root": str(tmp / "creator" / "store"),
                            "gateways": [f"http://{h.address}:8080" for h in ann_hosts]},
                "tasks": [{"name": f"t{i}", "assets": str(folder), "question": "tiny", "pays": 10**12,
                           "max_assignments": 1, "expires_in": 10_000, "strategy": "CustomAccept",
                           "validator": "json_outputs"} for i in range(n_tasks)]}))
            started, machine_before = time.perf_counter(), machine_ticks()
            boss = creator.popen([*CLI, "agent", "run", str(config)], log=tmp / "creator.log")
            seen = asyncio.run(observe(node, n_tasks, start_block, started + 900))
            after = {"devnet": cpu_s(devnet.pid), "gateways": [cpu_s(p) for p in gateways.values()],
                     "agents": [cpu_s(p) for p in agents], "creator": cpu_s(boss.pid)}
            machine_after = machine_ticks()
        finally:
            join_netns(root_ns)
        for _, proc in farms:
            proc.send_signal(signal.SIGTERM)
        boss.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=120) for _, proc in farms] + [boss.wait(timeout=60)]
        lost = lost_claims([tmp / h.name / "state" for h in ann_hosts])
    first, last = min(seen["created"].values(), default=started), max(seen["paid"].values(), default=started)
    total = last - first
    to_submit = [seen["submitted"][t] - seen["created"][t] for t in seen["submitted"] if t in seen["created"]]
    to_paid = [seen["paid"][t] - seen["submitted"][t] for t in seen["paid"] if t in seen["submitted"]]
    cpu = {"devnet": after["devnet"][0] - before["devnet"][0],
           "creator": after["creator"][0],
           "gateways": sum(a[0] - b[0] for a, b in zip(after["gateways"], before["gateways"], strict=True)),
           "annotators": sum(a[0] - b[0] for a, b in zip(after["agents"], before["agents"], strict=True)),
           "sandboxes": sum(a[1] - b[1] for a, b in zip(after["agents"], before["agents"], strict=True))}
    return {"annotators": n_agents, "hosts": len(ann_hosts), "tasks": n_tasks, "paid": len(seen["paid"]),
            "total_s": round(total, 2), "tasks_per_s": round(len(seen["paid"]) / total, 2) if total else 0,
            "created_to_submitted_p50_ms": pct(to_submit, 50), "created_to_submitted_p95_ms": pct(to_submit, 95),
            "submitted_to_paid_p50_ms": pct(to_paid, 50), "submitted_to_paid_p95_ms": pct(to_paid, 95),
            **{f"cpu_{k}_s": round(v, 1) for k, v in cpu.items()},
            "cpu_busy": round(sum(cpu.values()) / (total * (os.cpu_count() or 1)), 2) if total else 0,
            "machine_busy": round((machine_after[0] - machine_before[0]) / max(1, machine_after[1] - machine_before[1]), 2),
            "lost_seen_full": lost[0], "lost_claims_refused": lost[1],
            "exit_codes": sorted(set(codes))}


def sweep(counts: list[int], n_tasks: int, as_json: bool) -> int:
    reason = unavailable()
    if reason:
        print(f"bench/farm.py --across-hosts: {reason}", file=sys.stderr)
        return 2
    keep = os.open(f"/proc/{os.getpid()}/ns/net", os.O_RDONLY)  # the machine's namespace, to come back to after each run
    rows = []
    try:
        for n in counts:
            with tempfile.TemporaryDirectory(prefix=f"decentralml-farm-{n}-") as scratch:
                row = run_one(n, n_tasks, Path(scratch), f"/proc/self/fd/{keep}")
            rows.append(row)
            if not as_json:
                print(json.dumps(row), flush=True)
    finally:
        os.close(keep)
    if as_json:
        print(json.dumps(rows))
    else:
        print("\nannotators  tasks/s  created→submitted p50/p95 s  submitted→paid p50/p95 s  "
              "CPU s: devnet creator gateways annotators sandboxes  ours/machine busy  lost: seen full/refused")
        for r in rows:
            print(f"{r['annotators']:>10}  {r['tasks_per_s']:>7}  "
                  f"{r['created_to_submitted_p50_ms'] / 1000:>12.1f} / {r['created_to_submitted_p95_ms'] / 1000:<10.1f}"
                  f"{r['submitted_to_paid_p50_ms'] / 1000:>10.1f} / {r['submitted_to_paid_p95_ms'] / 1000:<12.1f}"
                  f"{r['cpu_devnet_s']:>10} {r['cpu_creator_s']:>7} {r['cpu_gateways_s']:>8} "
                  f"{r['cpu_annotators_s']:>10} {r['cpu_sandboxes_s']:>9}  {r['cpu_busy']:>4} / {r['machine_busy']:<4}"
                  f"  {r['lost_seen_full']:>5} / {r['lost_claims_refused']}")
    return 0 if all(r["paid"] == r["tasks"] and r["exit_codes"] == [0] for r in rows) else 1

