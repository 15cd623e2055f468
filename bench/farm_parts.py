"""The farm benchmarks' shared pieces — tiny task assets, an agent process, funding, the chain observer,
percentiles — used by bench/farm.py (loopback), bench/farm_hosts.py (test hosts), bench/faults.py and
bench/soak.py. Apart from farm.py so that farm_hosts.py no longer imports farm.py back (a cycle)."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from substrateinterface import Keypair

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decentralml_core.chain import ChainClient, Checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "mkdir -p outputs\necho '{\"boxes\": []}' > outputs/file_1.json\n"


def assets(folder: Path, sleep_s: float = 0.0) -> Path:
    """A tiny task's assets; its script first waits ``sleep_s`` (work that takes time, not CPU) if asked."""
    (folder / "annotation_files").mkdir(parents=True)
    (folder / "annotation_files" / "file_1.jpg").write_bytes(os.urandom(1000))
    (folder / "start_task.sh").write_text((f"sleep {sleep_s}\n" if sleep_s else "") + SCRIPT)
    return folder


def agent(config: dict, path: Path, env: dict) -> subprocess.Popen:
    path.write_text(yaml.safe_dump(config))
    with open(path.with_suffix(".log"), "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "agents.cli", "--log-level", "warning", "agent", "run",
                                 str(path)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def engine(farm: dict, path: Path) -> subprocess.Popen:
    """A farm's worker accounts as one engine process (``decentralml farm engine``)."""
    path.write_text(yaml.safe_dump(farm))
    with open(path.with_suffix(".log"), "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "agents.cli", "--log-level", "warning", "farm", "engine",
                                 str(path)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})


def cpu_s(pid: int) -> tuple[float, float]:
    """(own CPU seconds, CPU seconds of reaped children) of a process; zeros once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / ticks, (cutime + cstime) / ticks


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (every process, ours or not)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def observe(url: str, n_tasks: int, start_block: int, deadline: float) -> dict[str, dict]:
    """Wall-clock arrival of each task's creation, submission and payment events; the blocks of its
    creation and first assignment."""
    seen: dict[str, dict] = {"created": {}, "submitted": {}, "paid": {}, "created_block": {}, "assigned_block": {}}
    async with await ChainClient.connect(url) as client:
        async for event in client.events(Checkpoint(start_block)):
            now = time.perf_counter()
            if event.pallet != "DecentralMLModule":
                continue
            if event.name == "TaskCreated":
                seen["created"][event.attributes["taskid"]] = now
                seen["created_block"][event.attributes["taskid"]] = event.block_number
            elif event.name == "TaskAssigned":
                seen["assigned_block"].setdefault(event.attributes["task_id"], event.block_number)
            elif event.name == "TaskResultSubmitted":
                seen["submitted"][event.attributes["task_id"]] = now
            elif event.name == "TaskResultAccepted":
                seen["paid"][event.attributes["task_id"]] = now
            if len(seen["paid"]) == n_tasks or now > deadline:
                return seen
    return seen


async def fund(url: str, keys: list[Keypair]) -> int:
    alice = Keypair.create_from_uri("//Alice")
    async with await ChainClient.connect(url) as client:
        await asyncio.gather(*[client.submit(alice, "Balances", "transfer_keep_alive",
                                             {"dest": k.ss58_address, "value": 10**16}) for k in keys])
        return await client.block_number() + 1


def pct(values: list[float], q: int) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 1) if len(values) > 1 else 0.0
