"""Submission pipeline: assign+send pairs with our pipelined client against upstream's pattern.

One devnet with 1-second blocks. Upstream's client waits for inclusion after every call
(``submit_extrinsic(..., wait_for_inclusion=True)``), so a pair costs about two blocks; ours keeps
every account's extrinsics in flight at once. The upstream pattern is measured on ``--upstream-pairs``
pairs and extrapolated to ``--pairs`` (printed as such), since 500 pairs would take ~17 minutes.

    python bench/submit_pipeline.py [--pairs 500] [--accounts 8] [--upstream-pairs 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

from substrateinterface import Keypair, SubstrateInterface

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decentralml_core import logs  # noqa: E402
from decentralml_core.chain import ChainClient  # noqa: E402
from decentralml_core.chain.market import Market  # noqa: E402
from decentralml_core.chain.model import (  # noqa: E402
    AnnotationType,
    ResultSpec,
    StorageType,
    SubmissionStatus,
    TaskSpec,
    TaskType,
    ValidationStrategy,
)
from decentralml_core.testing.devnet_process import DevnetProcess  # noqa: E402

PAYS = 1_000


def spec(expiration_block: int, max_assignments: int) -> TaskSpec:
    return TaskSpec(task_type=TaskType.DATA_ANNOTATORS, question="Label the samples", pays_amount=PAYS,
                    expiration_block=expiration_block, max_assignments=max_assignments,
                    validation_strategy=ValidationStrategy.MANUAL_ACCEPT, annotation_type=AnnotationType.IMAGE,
                    annotation_files=["file_1.jpg"], annotation_files_storage_type=StorageType.IPFS)


async def setup(client: ChainClient, workers: list[Keypair], tasks_needed: int) -> list[int]:
    """Fund the workers and create enough tasks that each worker takes each task at most once."""
    alice, market = Keypair.create_from_uri("//Alice"), Market(client)
    await asyncio.gather(*[client.submit(alice, "Balances", "transfer_keep_alive",
                                         {"dest": w.ss58_address, "value": 10**15}) for w in workers])
    end = await client.block_number() + 100_000
    created = await asyncio.gather(*[market.create_task(alice, spec(end, len(workers)))
                                     for _ in range(tasks_needed)])
    return [task_id for task_id, _ in created]


async def pipelined(client: ChainClient, jobs: list[tuple[Keypair, int]]) -> float:
    market = Market(client)

    async def pair(worker: Keypair, task_id: int) -> None:
        sid, _ = await market.assign_task(worker, task_id)
        await market.send_task_result(worker, ResultSpec(sid, result='{"boxes": 1}'))

    start = time.perf_counter()
    await asyncio.gather(*[pair(w, t) for w, t in jobs])
    return time.perf_counter() - start


def upstream_pattern(url: str, jobs: list[tuple[Keypair, int]]) -> float:
    """Upstream's client: compose, sign, submit and wait for inclusion, one call after another."""
    si = SubstrateInterface(url=url)

    def call(who: Keypair, name: str, params: dict):
        xt = si.create_signed_extrinsic(si.compose_call("DecentralMLModule", name, params), keypair=who)
        receipt = si.submit_extrinsic(xt, wait_for_inclusion=True)
        if not receipt.is_success:
            raise SystemExit(f"{name} failed: {receipt.error_message}")
        return receipt

    start = time.perf_counter()
    for worker, task_id in jobs:
        receipt = call(worker, "assign_task", {"task_id": task_id})
        sid = next(e.value["attributes"]["submission_index"] for e in receipt.triggered_events
                   if e.value["event_id"] == "TaskAssigned")
        call(worker, "send_task_result", {"submission_id": sid, "result": '{"boxes": 1}', "result_path": None,
                                          "result_storage_type": None, "result_storage_credentials": None})
    elapsed = time.perf_counter() - start
    si.close()
    return elapsed


async def run(url: str, pairs: int, accounts: int, upstream_pairs: int) -> dict:
    logs.configure("warning")
    workers = [Keypair.create_from_uri(f"//Alice//pipeline/{i}") for i in range(accounts)]
    tasks_needed = -(-(pairs + upstream_pairs) // accounts)
    async with await ChainClient.connect(url, inclusion_timeout=600) as client:
        task_ids = await setup(client, workers, tasks_needed)
        slots = [(w, t) for t in task_ids for w in workers]  # each (worker, task) once
        ours, theirs = slots[:pairs], slots[pairs:pairs + upstream_pairs]
        pipelined_s = await pipelined(client, ours)
        upstream_s = await asyncio.to_thread(upstream_pattern, url, theirs)
        pending = [s for s in await Market(client).submissions() if s.status == SubmissionStatus.PENDING_VALIDATION]
    per_pair = upstream_s / upstream_pairs
    return {"pairs": pairs, "accounts": accounts, "block_time_s": 1,
            "pipelined_s": round(pipelined_s, 2), "pipelined_pairs_per_s": round(pairs / pipelined_s, 1),
            "upstream_measured_pairs": upstream_pairs, "upstream_measured_s": round(upstream_s, 2),
            "upstream_s_per_pair": round(per_pair, 3), "upstream_extrapolated_s": round(per_pair * pairs, 1),
            "ratio": round(per_pair * pairs / pipelined_s, 1), "results_pending_validation": len(pending),
            "cpus": os.cpu_count(), "python": platform.python_version()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--upstream-pairs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with DevnetProcess("--block-time", "1", "--log-level", "warning") as node:
        figures = asyncio.run(run(node.url, args.pairs, args.accounts, args.upstream_pairs))
    if args.json:
        print(json.dumps(figures))
    else:
        print("submission pipeline (assign + send pairs, 1-second blocks)")
        for key, value in figures.items():
            print(f"  {key:<28} {value}")
    return 0 if figures["results_pending_validation"] == args.pairs + args.upstream_pairs else 1


if __name__ == "__main__":
    sys.exit(main())
