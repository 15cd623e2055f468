"""What seeding the rendezvous ledger costs an engine at start: every submission on chain read once.

A devnet in this process gets ``--tasks`` tasks of ``--workers`` slots, every slot taken by one of
``--workers`` accounts, and the result sent for all but the last ``--open`` tasks (a chain's history:
most assignments ended, a few open). Then, ``--rounds`` times, a fresh client (its runtime load
included, as at an engine's start) and a fresh engine with those accounts as peers seed the ledger at
the head (``Engine.seed_ledger``): the seconds and CPU it took, and the assignments it holds.

    python bench/seed_ledger.py [--tasks 1000] [--workers 10] [--open 10] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from substrateinterface import Keypair  # noqa: E402

from agents.config import validate_config  # noqa: E402
from agents.engine import Engine  # noqa: E402
from agents.journal import Journal  # noqa: E402
from agents.metrics import Metrics  # noqa: E402
from agents.worker import WorkerAgent  # noqa: E402
from decentralml_core import logs  # noqa: E402
from decentralml_core.chain import Checkpoint  # noqa: E402
from decentralml_core.chain.market import Market  # noqa: E402
from decentralml_core.chain.model import (  # noqa: E402
    AnnotationType,
    ResultSpec,
    StorageType,
    TaskSpec,
    TaskType,
    ValidationStrategy,
)
from decentralml_core.devnet.inprocess import InProcessDevnet  # noqa: E402


async def build(devnet: InProcessDevnet, tasks: int, workers: list[Keypair], still_open: int) -> int:
    """The chain's history; how many submissions it holds."""
    async with await devnet.client() as client:
        market, dave, alice = Market(client), Keypair.create_from_uri("//Dave"), Keypair.create_from_uri("//Alice")
        await asyncio.gather(*[client.submit(dave, "Balances", "transfer_keep_alive",
                                             {"dest": w.ss58_address, "value": 10**15}) for w in workers])
        spec = TaskSpec(task_type=TaskType.DATA_ANNOTATORS, question="bench", pays_amount=10**10,
                        expiration_block=10**9, max_assignments=len(workers),
                        validation_strategy=ValidationStrategy.MANUAL_ACCEPT, annotation_type=AnnotationType.IMAGE,
                        annotation_files=["file_1.jpg"], annotation_files_storage_type=StorageType.IPFS)
        for t in range(tasks):
            task_id, _ = await market.create_task(alice, spec)
            sids = await asyncio.gather(*[market.assign_task(w, task_id) for w in workers])
            if t < tasks - still_open:
                await asyncio.gather(*[market.send_task_result(w, ResultSpec(sid, result="ok"))
                                       for w, (sid, _) in zip(workers, sids, strict=True)])
        return tasks * len(workers)


async def seed_once(devnet: InProcessDevnet, peers: dict[str, int], state: Path) -> dict:
    started, cpu = time.perf_counter(), time.process_time()
    async with await devnet.client() as client:
        connected = time.perf_counter() - started
        config = validate_config({"role": "annotator", "node": devnet.url, "key": {"dev": "Eve", "derive": "//seed"},
                                  "state_dir": str(state)})
        journal = Journal(state / "journal.sqlite")
        try:
            engine = Engine(client, [WorkerAgent(config, client, journal, Metrics("annotator", "annotator"))],
                            Metrics("engine", "engine"), grace_s=1.0, peers=peers)
            seeding = time.perf_counter()
            held = await engine.seed_ledger(Checkpoint(await client.block_number() + 1))
        finally:
            journal.close()
    return {"seconds": round(time.perf_counter() - seeding, 2), "connect_s": round(connected, 2),
            "cpu_s": round(time.process_time() - cpu, 2), "held": held}


async def run(args: argparse.Namespace) -> dict:
    workers = [Keypair.create_from_uri(f"//Dave//seed-bench/{i}") for i in range(args.workers)]
    async with InProcessDevnet() as devnet:
        started = time.perf_counter()
        submissions = await build(devnet, args.tasks, workers, args.open)
        built_s = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as tmp:
            rounds = [await seed_once(devnet, {w.ss58_address: 2 for w in workers}, Path(tmp) / f"round-{r}")
                      for r in range(args.rounds)]
    return {"submissions": submissions, "open": args.open * args.workers, "built_s": round(built_s, 1),
            "rounds": rounds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--open", type=int, default=10, help="tasks whose results are not sent")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logs.configure("warning")
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['submissions']} submissions on chain ({result['open']} open), built in {result['built_s']} s")
        for r in result["rounds"]:
            print(f"  seeded {r['held']} in {r['seconds']} s (connect {r['connect_s']} s, CPU {r['cpu_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
