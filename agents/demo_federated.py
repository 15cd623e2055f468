"""``decentralml demo federated``: a devnet, a creator running the example campaign of
``configs/creator-federated.yaml`` (3 rounds, 4 contributors per round) and four contributor agents
from ``configs/contributor.yaml``, each with its own private share of the digits; one of them
(Eve) holds label-flipped data. It prints the global model's test accuracy per round and who was paid
for what, and stops every process cleanly.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table
from substrateinterface import Keypair

from agents.demo import start_agent, supervise, unit
from agents.journal import Journal
from decentralml_core import logs
from decentralml_core.chain import ChainClient
from decentralml_core.chain.market import Market
from decentralml_core.federated import digits
from decentralml_core.testing.devnet_process import DevnetProcess

ROOT = Path(__file__).resolve().parents[1]
CONTRIBUTORS = ("Bob", "Charlie", "Dave", "Eve")
MALICIOUS = ("Eve",)
TIMEOUT_S = 240


def configs(node: str, tmp: Path, contributors=CONTRIBUTORS, malicious=MALICIOUS, rounds: int = 3,
            engineering: bool = False) -> dict[str, dict]:
    """The example configs pointed at this devnet and scratch dir, with the example's private data
    written there (contributor i holds share i; the malicious ones' labels flipped)."""
    data = digits.write_example(tmp / "data", len(contributors),
                                flipped=tuple(i for i, n in enumerate(contributors) if n in malicious))
    creator = yaml.safe_load((ROOT / "configs" / "creator-federated.yaml").read_text())
    store = {"root": str(tmp / "store")}
    campaign = creator["campaigns"][0]
    campaign.update(model=str(ROOT / "assets" / "federated_digits" / "model"),
                    script=str(ROOT / "assets" / "federated_digits" / "script"), rounds=rounds,
                    max_assignments=len(contributors), test=str(data["test"]), target_accuracy=None)
    campaign["validator"]["validation"] = str(data["validation"])
    if engineering:
        campaign["engineering"]["assets"] = str(ROOT / "assets" / "model_engineer")
    else:
        campaign.pop("engineering")
    out = {"creator": {**creator, "node": node, "state_dir": str(tmp / "creator"), "storage": store}}
    contributor = yaml.safe_load((ROOT / "configs" / "contributor.yaml").read_text())
    for i, name in enumerate(contributors):
        out[name.lower()] = {**contributor, "node": node, "key": {"dev": name}, "storage": store,
                             "state_dir": str(tmp / name.lower()), "data": str(data[f"contributor-{i}"]),
                             "policy": {**contributor["policy"], "min_blocks_left": 0}}
    return out


def campaign_entry(creator_state: Path, name: str = "digits"):
    journal = Journal(creator_state / "journal.sqlite")
    try:
        return journal.get("campaign", name), {int(e.id): e.data for e in journal.entries("submission")}
    finally:
        journal.close()


async def wait_done(creator_state: Path, deadline: float):
    while time.monotonic() < deadline:
        if (creator_state / "journal.sqlite").exists():
            entry, _ = campaign_entry(creator_state)
            if entry is not None and entry.step in ("done", "stalled"):
                return entry
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the campaign did not finish within {TIMEOUT_S} s")


async def report(url: str, tmp: Path, started: float) -> bool:
    entry = await wait_done(tmp / "creator", started + TIMEOUT_S)
    _, decisions = campaign_entry(tmp / "creator")
    names = {Keypair.create_from_uri(f"//{n}").ss58_address: n for n in CONTRIBUTORS}
    console = Console(width=None if sys.stdout.isatty() else 140)
    rounds = Table(title=f"campaign digits: {entry.step}")
    for column in ("round", "task", "global test accuracy", "accepted", "rejected"):
        rounds.add_column(column)
    for h in entry.data["history"]:
        rounds.add_row(str(h["round"]), str(h.get("task_id", "")), f"{h['test_acc']:.3f}",
                       str(len(h.get("accepted", []))), str(len(h.get("rejected", []))))
    console.print(rounds)
    async with await ChainClient.connect(url) as client:
        market = Market(client)
        task_ids = {h["task_id"]: h["round"] for h in entry.data["history"] if "task_id" in h}
        subs = [s for s in await market.submissions() if s.task_id in task_ids]
    paid = Table(title="updates: who was paid")
    for column in ("round", "contributor", "status", "paid (UNIT)", "reason"):
        paid.add_column(column)
    for s in subs:
        verdict = decisions.get(s.submission_id, {}).get("verdict") or {}
        paid.add_row(str(task_ids[s.task_id]), names.get(s.worker, s.worker), str(s.status),
                     unit(s.paid_amount) if s.paid_amount else "", (verdict.get("reason") or "")[:90])
    console.print(paid)
    plot = tmp / "creator" / "campaign-digits.png"
    if plot.exists():  # the scratch dir goes when the demo ends: the plot is kept apart
        plot = Path(shutil.copy(plot, tempfile.mkdtemp(prefix="decentralml-federated-plot-")))
    console.print(f"done in {time.monotonic() - started:.1f} s; accuracy plot: {plot}")
    return entry.step == "done"


def main(keep: Path | None = None) -> int:
    logs.configure("warning")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="decentralml-federated-") as scratch, \
            DevnetProcess("--log-level", "warning") as node:
        tmp = keep or Path(scratch)
        print(f"devnet at {node.url}; agents: 1 creator, {len(CONTRIBUTORS)} contributors ({', '.join(MALICIOUS)} "
              f"with label-flipped data); logs in {tmp}")
        agents = {}
        for name, config in configs(node.url, tmp).items():
            path = tmp / f"{name}.yaml"
            path.write_text(yaml.safe_dump(config))
            agents[name] = start_agent(path, tmp / f"{name}.log")
        return supervise(agents, tmp, lambda: asyncio.run(report(node.url, tmp, started)))


if __name__ == "__main__":
    sys.exit(main())
