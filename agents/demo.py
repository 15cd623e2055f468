"""``make demo``: a devnet, one creator agent and three annotator agents from ``configs/*.yaml``.

The creator publishes the example data-annotation task (``assets/data_annotator``); the annotators
take it, run its start_task.sh in the sandbox and submit; the creator validates and pays each. The
demo ends when every assignment is decided, prints what happened, and stops every process cleanly.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table
from substrateinterface import Keypair

from agents.journal import Journal
from decentralml_core import logs
from decentralml_core.chain import ChainClient
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import SubmissionStatus
from decentralml_core.testing.devnet_process import DevnetProcess
from decentralml_core.units import format_units

ROOT = Path(__file__).resolve().parents[1]
ANNOTATORS = ("Bob", "Charlie", "Dave")
TIMEOUT_S = 300  # three detectors sharing two cores, on a busy machine


def write_configs(node: str, tmp: Path) -> dict[str, Path]:
    """The example configs, pointed at this devnet and a scratch dir, one annotator per dev account."""
    creator = yaml.safe_load((ROOT / "configs" / "creator.yaml").read_text())
    annotator = yaml.safe_load((ROOT / "configs" / "annotator.yaml").read_text())
    store = str(tmp / "store")
    paths = {}
    creator.update(node=node, state_dir=str(tmp / "creator"), storage={"root": store}, metrics_port=None)
    for task in creator["tasks"]:
        task["assets"] = str(ROOT / "configs" / task["assets"])
    paths["creator"] = tmp / "creator.yaml"
    paths["creator"].write_text(yaml.safe_dump(creator))
    for name in ANNOTATORS:
        config = {**annotator, "node": node, "key": {"dev": name}, "state_dir": str(tmp / f"annotator-{name.lower()}"),
                  "storage": {"root": store}, "metrics_port": None}
        paths[name] = tmp / f"annotator-{name.lower()}.yaml"
        paths[name].write_text(yaml.safe_dump(config))
    return paths


def unit(planck: int, sign: bool = False) -> str:
    return f"{planck / 10**12:{'+' if sign else ''},.6f}"


def start_agent(config: Path, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "agents.cli", "--log-level", "info", "agent", "run", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})


async def balances(client: ChainClient, names) -> dict[str, int]:
    return {n: await client.free_balance(Keypair.create_from_uri(f"//{n}").ss58_address) for n in names}


async def wait_until_decided(client: ChainClient, deadline: float) -> tuple:
    market = Market(client)
    while time.monotonic() < deadline:
        tasks = [t for t in await market.tasks() if t.creator == Keypair.create_from_uri("//Alice").ss58_address]
        if tasks:
            task = tasks[0]
            subs = await market.submissions(task.task_id)
            decided = [s for s in subs if s.status in (SubmissionStatus.ACCEPTED, SubmissionStatus.REJECTED)]
            if len(decided) == task.max_assignments:
                return task, subs
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the task was not done within {TIMEOUT_S} s")


NAMES = ("Alice", *ANNOTATORS)


async def snapshot(url: str) -> dict[str, int]:
    async with await ChainClient.connect(url) as client:
        return await balances(client, NAMES)


def verdicts(creator_state: Path) -> dict[int, str]:
    """The creator's reason for each decision, from its journal."""
    journal = Journal(creator_state / "journal.sqlite")
    try:
        return {int(e.id): (e.data.get("verdict") or {}).get("reason", "") for e in journal.entries("submission")}
    finally:
        journal.close()


async def observe(url: str, started: float, before: dict[str, int], creator_state: Path) -> None:
    async with await ChainClient.connect(url) as client:
        task, subs = await wait_until_decided(client, started + TIMEOUT_S)
        after = await balances(client, NAMES)
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(f"task {task.task_id} \"{task.question}\": {task.max_assignments} assignments, "
                  f"pays {format_units(task.pays_amount)} each, strategy {task.validation_strategy}")
    table = Table(title="submissions")
    for column in ("submission", "worker", "status", "paid (UNIT)", "outputs (CID)", "creator's verdict"):
        table.add_column(column)
    by_address = {Keypair.create_from_uri(f"//{n}").ss58_address: n for n in NAMES}
    reasons = verdicts(creator_state)
    for s in subs:
        table.add_row(str(s.submission_id), by_address.get(s.worker, s.worker), str(s.status),
                      unit(s.paid_amount) if s.paid_amount else "", (s.result_path or "")[:16] + "…",
                      reasons.get(s.submission_id, ""))
    console.print(table)
    table = Table(title="balances in UNIT (fees included)")
    for column in ("account", "before", "after", "change"):
        table.add_column(column)
    for n in NAMES:
        table.add_row(n, unit(before[n]), unit(after[n]), unit(after[n] - before[n], sign=True))
    console.print(table)
    console.print(f"done in {time.monotonic() - started:.1f} s")


def main() -> int:
    logs.configure("warning")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="decentralml-demo-") as scratch, \
            DevnetProcess("--log-level", "warning") as node:
        tmp = Path(scratch)
        print(f"devnet at {node.url}; agents: 1 creator, {len(ANNOTATORS)} annotators")
        paths = write_configs(node.url, tmp)
        before = asyncio.run(snapshot(node.url))
        agents = {name: start_agent(path, tmp / f"{name}.log") for name, path in paths.items()}
        return supervise(agents, tmp, lambda: asyncio.run(observe(node.url, started, before, tmp / "creator")))


def supervise(agents: dict[str, subprocess.Popen], tmp: Path, watch, stop_s: float = 60) -> int:
    """Run ``watch()`` while the agents work (it raises TimeoutError, or returns False, when the market does
    not settle); on failure show each agent's last log lines and keep the logs (the scratch dir goes); then
    stop every agent with SIGTERM and say how each exited. 0 when all went well (``demo ok``)."""
    try:
        ok = watch() is not False
    except TimeoutError as exc:
        print(f"demo failed: {exc}")
        for name in agents:
            print(f"--- {name} log (last lines)\n" + "\n".join(
                (tmp / f"{name}.log").read_text().splitlines()[-15:]))
        kept = Path(tempfile.mkdtemp(prefix="decentralml-demo-logs-"))
        for name in agents:
            shutil.copy(tmp / f"{name}.log", kept)
        print(f"the agents' logs are kept in {kept}")
        ok = False
    finally:
        for proc in agents.values():
            proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(timeout=stop_s) for name, proc in agents.items()}
    print("agents stopped: " + ", ".join(f"{n} exit {c}" for n, c in codes.items()))
    if not ok or any(codes.values()):
        return 1
    print("demo ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
