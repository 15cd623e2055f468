"""``decentralml review list|show|accept|reject --config creator.yaml``: the ManualAccept queue.

Reads the creator agent's journal for results waiting for a person, and decides them on chain with
the creator's key; the running agent sees the decision on its next sweep and journals it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from agents.config import ConfigError, load_config
from agents.journal import Journal
from agents.runtime import journal_path
from decentralml_core import tasks
from decentralml_core.chain import ChainClient, ChainError
from decentralml_core.chain.market import Market

from ._shared import emit, explain, plain, printable


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    review = commands.add_parser("review", parents=[common], help="results waiting for a person (ManualAccept)")
    sub = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    for name, text in (("list", "results waiting for review"), ("show", "one result"),
                       ("accept", "accept results (each worker paid once)"), ("reject", "reject results")):
        parser = sub.add_parser(name, parents=[common], help=text)
        parser.add_argument("--config", type=Path, required=True, help="the creator agent's YAML")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
        if name != "list":
            parser.add_argument("submission_ids", type=int, nargs="+" if name != "show" else 1, metavar="SUBMISSION",
                                help="result ids (see `review list`)")
        if name == "reject":
            parser.add_argument("--reason", required=True, help="why, for the worker (on chain)")
        parser.set_defaults(run=run_review)


def run_review(args) -> int:
    try:
        config = load_config(args.config)
        return asyncio.run(_review(args, config))
    except (ConfigError, ChainError, ValueError) as exc:
        print(f"decentralml review {args.review_command}: {printable(explain(exc, args))}", file=sys.stderr)
        return 1


async def _queue(market: Market, waiting: list[int], journal: Journal) -> list[dict]:
    """The waiting results with the blocks left in their review window (after it the worker may claim
    the pay: decide before). ``blocks_left`` is None when the task sets no window."""
    now = await market.client.block_number()
    rows = []
    for sid in waiting:
        submission = await market.submission(sid)
        deadline = submission.review_deadline_block if submission else None
        rows.append({"submission_id": sid, **journal.get("submission", sid).data, "review_deadline_block": deadline,
                     "blocks_left": submission.review_blocks_left(now) if submission else None})
    return rows


async def _review(args, config) -> int:
    journal = Journal(journal_path(config))
    try:
        waiting = [int(e.id) for e in journal.entries("submission", steps=("review",))]
        async with await ChainClient.connect(config.node) as client:
            if args.review_command == "list":
                emit(args, await _queue(Market(client), waiting, journal),
                     ["submission_id", "task_id", "worker", "blocks_left", "review_deadline_block"],
                     title="waiting for review")
                return 0
            if args.review_command == "show":
                submission = await Market(client).submission(args.submission_ids[0])
                if submission is None:
                    raise ValueError(f"no submission {args.submission_ids[0]}")
                emit(args, plain(submission), title=f"submission {submission.submission_id}")
                return 0
            unknown = [s for s in args.submission_ids if s not in waiting]
            if unknown:
                raise ValueError(f"not waiting for review: {unknown}")
            key = config.key.load()
            if args.review_command == "accept":
                done = await tasks.accept_task_results(client, key, None, args.submission_ids)
            else:
                done = await tasks.reject_task_results(client, key, None, args.submission_ids, args.reason)
            emit(args, {args.review_command + "ed": done})
            return 0
    finally:
        journal.close()
