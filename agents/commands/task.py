"""``decentralml task …``: create, list, show and take tasks."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from decentralml_core.chain.model import AnnotationType, TaskSpec, TaskTerms, TaskType, ValidationStrategy

from ._shared import (
    add_key_options,
    add_node_options,
    add_storage_options,
    add_storage_type_option,
    amount,
    chain_credentials,
    emit,
    keypair,
    lazy,
    plain,
    progress_bar,
    runner,
    store_for,
)

tasks, work = lazy("decentralml_core.tasks"), lazy("decentralml_core.work")
market = lazy("decentralml_core.chain.market")

TASK_COLUMNS = ["task_id", "status", "task_type", "pays_amount", "max_assignments", "expiration_block",
                "validation_strategy", "question"]


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    task = commands.add_parser("task", parents=[common], help="create, list, show and take tasks")
    sub = task.add_subparsers(dest="task_command", required=True, metavar="ACTION")

    create = sub.add_parser("create", parents=[common], help="post a task; its pay x max assignments is escrowed")
    add_node_options(create)
    add_key_options(create)
    create.add_argument("--type", dest="task_type", default=TaskType.DATA_ANNOTATORS,
                        choices=[t.value for t in TaskType], help="who takes it (default: %(default)s)")
    create.add_argument("--question", required=True, help="what the workers are asked (≤ 2048 bytes)")
    create.add_argument("--pays", type=amount, required=True, metavar="AMOUNT",
                        help="paid to each accepted worker, in UNIT (1.5) or planck (1500000000000planck)")
    create.add_argument("--max-assignments", type=int, default=1, help="how many workers may take it (default: %(default)s)")
    create.add_argument("--strategy", default=ValidationStrategy.MANUAL_ACCEPT,
                        choices=[s.value for s in ValidationStrategy],
                        help="how results are decided: by `result validate` (default: %(default)s)")
    create.add_argument("--expires-in", type=int, default=600, metavar="BLOCKS", help="blocks until it expires (default: %(default)s)")
    create.add_argument("--annotation-type", choices=[a.value for a in AnnotationType], help="data annotation: the media")
    create.add_argument("--files", nargs="*", help="annotation files (storage references or names)")
    create.add_argument("--samples", nargs="*", help="annotation media samples")
    create.add_argument("--labels", help="annotation class labels, comma separated")
    create.add_argument("--coordinates", help="annotation class coordinates")
    create.add_argument("--annotation-json", help="extra JSON for annotators (e.g. the script to run)")
    add_storage_type_option(create, "where --assets are published")
    create.add_argument("--path", help="model engineer path / model contributor script path: the CID of a "
                                       "published folder (or use --assets)")
    create.add_argument("--assets", type=Path, help="publish this folder (start_task.sh and its files; for "
                                                    "annotation annotation_files/, annotation_samples/) and "
                                                    "reference it from the task's field for its type")
    rules = create.add_argument_group("market rules (a node with the full DecentralML pallet)")
    rules.add_argument("--submit-within", type=int, metavar="BLOCKS",
                       help="a worker's assignment is abandoned (its slot reopens) if no result comes this many "
                            "blocks after assign_task")
    rules.add_argument("--review-window", type=int, metavar="BLOCKS",
                       help="blocks the creator has to decide a result; after it the worker may claim the pay")
    rules.add_argument("--min-accepted", type=int, default=0, help="only workers with this many accepted results")
    rules.add_argument("--max-rejection-rate", type=float, metavar="FRACTION",
                       help="only workers whose rejected / decided results are at most this (0–1)")
    rules.add_argument("--min-distinct-creators", type=int, default=0, metavar="N",
                       help="only workers whose accepted results come from N creators besides you (0–16)")
    rules.add_argument("--max-abandonment-rate", type=float, metavar="FRACTION",
                       help="only workers who abandoned at most this share of their assignments (0–1)")
    rules.add_argument("--client-token", help="≤ 64 bytes; a second create with the same token is refused "
                                              "(safe to retry after a crash or timeout)")
    add_storage_options(create)
    create.set_defaults(run=runner(create_task))

    listing = sub.add_parser("list", parents=[common], help="tasks on chain")
    add_node_options(listing)
    listing.add_argument("--status", choices=["Created", "InProgress", "Completed", "Withdrawn"], help="only tasks in this state")
    listing.add_argument("--type", dest="task_type", choices=[t.value for t in TaskType], help="only tasks of this type")
    listing.add_argument("--open", action="store_true", help="only tasks still taking assignments")
    listing.set_defaults(run=runner(list_tasks, reads_only=True))

    show = sub.add_parser("show", parents=[common], help="one task with its results")
    add_node_options(show)
    show.add_argument("task_id", type=int, help="the task's id (see `task list`)")
    show.set_defaults(run=runner(show_task))

    assign = sub.add_parser("assign", parents=[common], help="take one assignment of a task")
    add_node_options(assign)
    add_key_options(assign)
    assign.add_argument("task_id", type=int, help="the task's id (see `task list --open`)")
    assign.add_argument("--work-dir", type=Path, default=Path("work"), help="assets go to WORK_DIR/task-N/submission-M")
    add_storage_options(assign)
    assign.set_defaults(run=runner(assign_task))

    close = sub.add_parser("close", parents=[common], help="close an expired or decided task; unused escrow returns")
    add_node_options(close)
    add_key_options(close)
    close.add_argument("task_id", type=int, help="your task's id")
    close.set_defaults(run=runner(close_task))

    run = sub.add_parser("run", parents=[common], help="run a fetched task's script in its work dir, sandboxed")
    run.add_argument("task_id", type=int, help="a task you were assigned and fetched")
    run.add_argument("--submission", type=int, help="which assignment (default: the only one)")
    run.add_argument("--work-dir", type=Path, default=Path("work"), help="where `task assign` fetched it (default: %(default)s)")
    run.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS", help="wall-clock limit (default: %(default)s)")
    run.add_argument("--share-python", action="store_true", help="the script may use the agent's python3 + numpy")
    run.add_argument("--allow-unsandboxed", action="store_true", help="run even where isolation is unavailable")
    run.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    run.set_defaults(run=run_task)


def check_assets(folder: Path) -> None:
    """Refuse an assets folder workers could not run, before anything is published or escrowed."""
    if not folder.is_dir():
        raise ValueError(f"--assets {folder}: no such folder (give the task's folder, e.g. assets/data_annotator)")
    if not (folder / work.SCRIPT).is_file():
        raise ValueError(f"--assets {folder} has no {work.SCRIPT}: workers would have nothing to run")


async def create_task(args, client) -> None:
    who = keypair(args)
    if args.assets is not None:
        check_assets(args.assets)
    end = await client.block_number() + args.expires_in
    terms = TaskTerms(submit_within=args.submit_within, review_window=args.review_window,
                      min_accepted=args.min_accepted, max_rejection_rate=args.max_rejection_rate,
                      min_distinct_creators=args.min_distinct_creators, max_abandonment_rate=args.max_abandonment_rate)
    common = dict(question=args.question, pays_amount=args.pays, max_assignments=args.max_assignments,
                  validation_strategy=args.strategy, terms=terms, client_token=args.client_token)
    if args.task_type == TaskType.DATA_ANNOTATORS:
        if args.assets is not None and not any((args.assets / "annotation_files").glob("*")) and not args.files:
            raise ValueError(f"--assets {args.assets} has no annotation_files/: a data annotation task needs the "
                             "files to annotate there (or --files)")
        try:
            extra = {} if args.annotation_json is None else json.loads(args.annotation_json)  # before paying a fee
        except ValueError as exc:
            raise ValueError(f"--annotation-json is not JSON ({exc}): give an object, e.g. '{{\"script\": "
                             "\"start_task.sh\"}'") from None
        if args.assets is not None:
            if not isinstance(extra, dict):
                raise ValueError("--annotation-json must be a JSON object when --assets is given "
                                 "(the asset references are added to it)")
            with progress_bar(f"publishing {args.assets}") as progress:
                published = await work.publish_assets(store_for(args, args.storage_type), args.assets,
                                                      progress=progress)
            args.files, args.samples = published.annotation_files, published.annotation_media_samples
            args.annotation_json = json.dumps({**extra, **json.loads(published.annotation_json)}, sort_keys=True)
        task_id = await tasks.create_task_data_annotator(
            end, client, who, None, args.task_type, annotation_type=args.annotation_type,
            annotation_media_samples=args.samples, annotation_files=args.files, annotation_class_labels=args.labels,
            annotation_class_coordinates=args.coordinates, annotation_json=args.annotation_json,
            annotation_files_storage_type=args.storage_type,
            annotation_files_storage_credentials=chain_credentials(args), **common)
    else:  # model engineering or contribution: the folder's CID goes in the type's path field
        if args.assets is not None:
            with progress_bar(f"publishing {args.assets}") as progress:
                ref = (await work.publish_assets(store_for(args, args.storage_type), args.assets,
                                                 progress=progress)).ref
        elif args.path is not None:
            ref = work.content_reference(args.path)
        else:
            raise ValueError(f"a {args.task_type} task needs its folder: --assets DIR (published now) or --path CID")
        spec = TaskSpec.for_type(args.task_type, ref, args.storage_type, chain_credentials(args),
                                 question=args.question, pays_amount=args.pays, expiration_block=end,
                                 max_assignments=args.max_assignments, validation_strategy=args.strategy,
                                 annotation_json=args.annotation_json)
        task_id = await tasks.create_task_from_spec(client, who, spec, terms, args.client_token)
    emit(args, {"task_id": task_id, "creator": who.ss58_address, "escrow": args.pays * args.max_assignments,
                "expiration_block": end, **({} if terms.is_default else {"terms": plain(terms)})})


async def list_tasks(args, client) -> None:
    found = await tasks.list_task(client, status=args.status, task_type=args.task_type, open_only=args.open)
    emit(args, found, TASK_COLUMNS, title="tasks")


async def show_task(args, client) -> int:
    task = await market.Market(client).task(args.task_id)
    if task is None:
        raise ValueError(f"no task {args.task_id}")
    from .result import results_with_reasons

    results = await results_with_reasons(client, args.task_id)
    emit(args, {**plain(task), "results": [r["submission_id"] for r in results],
                "verdicts": {str(r["submission_id"]): verdict_of(r) for r in results}}, title=f"task {args.task_id}")
    return 0


def verdict_of(result: dict) -> str:
    """``Accepted (paid 1 UNIT)``, ``Rejected: the reason``, or the status."""
    from decentralml_core.units import format_units

    if result.get("paid_amount"):
        return f"{result['status']} (paid {format_units(result['paid_amount'])})"
    if result.get("verdict_reason"):
        return f"{result['status']}: {result['verdict_reason']}"
    return str(result["status"])


async def assign_task(args, client) -> None:
    who = keypair(args)
    task = await market.Market(client).task(args.task_id)
    store = store_for(args, work.storage_of(task)) if task and work.assets_of(task) else None
    submission_id = await tasks.assign_task(client, who, None, args.task_id, store=store, work_root=args.work_dir)
    folder = work.work_dir(args.work_dir, args.task_id, submission_id)
    emit(args, {"task_id": args.task_id, "submission_id": submission_id, "worker": who.ss58_address,
                "work_dir": str(folder) if folder.exists() else None})


async def close_task(args, client) -> None:
    receipt = await market.Market(client).close_task(keypair(args), args.task_id)
    (closed,) = receipt.find("DecentralMLModule", "TaskClosed")
    emit(args, {"task_id": args.task_id, "refunded": closed["refunded"], "block": receipt.block_number})


def run_task(args) -> int:
    from decentralml_core.sandbox import SandboxLimits, SandboxUnavailable, run_task_script

    runs = sorted((args.work_dir / f"task-{args.task_id}").glob("submission-*"))
    if args.submission is not None:
        runs = [r for r in runs if r.name == f"submission-{args.submission}"]
    if len(runs) != 1:
        print(f"decentralml task run: {len(runs)} work dirs for task {args.task_id} under {args.work_dir}"
              " (give --submission)", file=sys.stderr)
        return 1
    limits = SandboxLimits(timeout_s=args.timeout, share_python=args.share_python)
    try:
        report = asyncio.run(run_task_script(runs[0], limits=limits, allow_unsandboxed=args.allow_unsandboxed))
    except SandboxUnavailable as exc:
        print(f"decentralml task run: {exc}", file=sys.stderr)
        return 1
    emit(args, report.as_dict(), title=f"task {args.task_id}: {runs[0].name}")
    return 0 if report.status == "ok" else 1

