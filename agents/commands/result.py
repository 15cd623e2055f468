"""``decentralml result …``: send, list and decide results."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from decentralml_core.chain.model import SubmissionStatus, ValidationStrategy

from ._shared import (
    add_key_options,
    add_node_options,
    add_storage_options,
    add_storage_type_option,
    chain_credentials,
    emit,
    keypair,
    lazy,
    plain,
    runner,
    store_for,
)

tasks, market = lazy("decentralml_core.tasks"), lazy("decentralml_core.chain.market")

RESULT_COLUMNS = ["submission_id", "task_id", "worker", "status", "result_path", "paid_amount", "paid_block",
                  "verdict_reason"]


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    result = commands.add_parser("result", parents=[common], help="send, list and decide results")
    sub = result.add_subparsers(dest="result_command", required=True, metavar="ACTION")

    send = sub.add_parser("send", parents=[common], help="send the result of an assignment")
    add_node_options(send)
    add_key_options(send)
    send.add_argument("submission_id", type=int, help="the assignment's id (`task assign` printed it)")
    send.add_argument("--result", help="an inline result (≤ 2048 bytes)")
    send.add_argument("--path", help="the outputs folder (published first) or a storage reference")
    add_storage_type_option(send, "where the outputs folder is published")
    add_storage_options(send)
    send.set_defaults(run=runner(send_result))

    listing = sub.add_parser("list", parents=[common], help="results on chain")
    add_node_options(listing)
    listing.add_argument("--task", type=int, dest="task_id", help="only this task's results")
    listing.add_argument("--status", choices=[s.value for s in SubmissionStatus], help="only results in this state")
    listing.set_defaults(run=runner(list_results))

    for name, fn, text in (("accept", accept, "accept results: each worker is paid once"),
                           ("reject", reject, "reject results, with a reason")):
        decide = sub.add_parser(name, parents=[common], help=text)
        add_node_options(decide)
        add_key_options(decide)
        decide.add_argument("submission_ids", type=int, nargs="+", metavar="SUBMISSION", help="result ids (see `result list`)")
        if name == "reject":
            decide.add_argument("--reason", required=True, help="why, for the worker (≤ 1024 bytes, on chain)")
        decide.set_defaults(run=runner(fn))

    claim = sub.add_parser("claim", parents=[common],
                           help="take the pay of your result left undecided past the task's review window")
    add_node_options(claim)
    add_key_options(claim)
    claim.add_argument("submission_id", type=int, help="your result's id")
    claim.set_defaults(run=runner(claim_payment))

    validate = sub.add_parser("validate", parents=[common],
                              help="apply a task's strategy: AutoAccept accepts, ManualAccept lists what waits, "
                                   "CustomAccept runs --validator on each result's outputs")
    add_node_options(validate)
    add_key_options(validate)
    validate.add_argument("task_id", type=int, help="the task whose waiting results to decide")
    validate.add_argument("--validator", help="CustomAccept: outputs_present, json_outputs, coco_schema or "
                                              "package.module:function")
    validate.add_argument("--results-dir", type=Path, default=Path("results"),
                          help="results are fetched to RESULTS_DIR/submission-N (default: %(default)s)")
    add_storage_options(validate)
    validate.set_defaults(run=runner(validate_results))


async def send_result(args, client) -> None:
    if args.result is None and args.path is None:
        raise ValueError("give --path OUTPUTS_FOLDER (or --result TEXT, or both)")
    who = keypair(args)
    await check_assignment(client, args.submission_id, who.ss58_address)
    storage = args.storage_type if args.path is not None else None
    sent = await tasks.send_task_result(client, who, args.submission_id, args.result, args.path, storage,
                                        chain_credentials(args) if args.path is not None else None,
                                        store=store_for(args, storage) if args.path is not None else None)
    emit(args, {"submission_id": args.submission_id, "result_path": sent,
                "status": SubmissionStatus.PENDING_VALIDATION.value})


async def results_with_reasons(client, task_id: int | None, status: str | None = None) -> list[dict]:
    """Results as rows, each rejected one with the creator's reason (``verdict_reason``): what a worker
    needs to see to do better next time."""
    found = await tasks.list_task_results(client, task_id, status)
    reasons = await tasks.verdict_reasons(client, found)
    return [{**plain(s), "verdict_reason": reasons.get(s.submission_id)} for s in found]


async def check_assignment(client, submission_id: int, worker: str) -> None:
    """Refuse, before anything is published or signed, a result the chain would refuse (or take and keep)."""
    submission = await market.Market(client).submission(submission_id)
    if submission is None:
        raise ValueError(f"no submission {submission_id} on this chain (see `decentralml result list`)")
    if submission.worker != worker:
        raise ValueError(f"submission {submission_id} is another worker's ({submission.worker}): "
                         "sign with the key that took the assignment")
    if submission.status != SubmissionStatus.ASSIGNED:
        raise ValueError(f"submission {submission_id} already has a result ({submission.status}): "
                         f"see `decentralml result list --task {submission.task_id}`")


async def list_results(args, client) -> None:
    if args.task_id is not None and await market.Market(client).task(args.task_id) is None:
        raise ValueError(f"no task {args.task_id} on this chain (see `decentralml task list`)")
    emit(args, await results_with_reasons(client, args.task_id, args.status), RESULT_COLUMNS, title="results")


async def accept(args, client) -> None:
    done = await tasks.accept_task_results(client, keypair(args), None, args.submission_ids)
    emit(args, {"accepted": done, "already_decided": [s for s in args.submission_ids if s not in done]})


async def reject(args, client) -> None:
    done = await tasks.reject_task_results(client, keypair(args), None, args.submission_ids, args.reason)
    emit(args, {"rejected": done, "already_decided": [s for s in args.submission_ids if s not in done]})


async def validate_results(args, client) -> None:
    from agents.validators import Evidence, load_validator
    from decentralml_core.storage import get_folder

    validator = None
    task = await market.Market(client).task(args.task_id)
    if task is None:
        raise ValueError(f"no task {args.task_id} on this chain (see `decentralml task list`)")
    if args.validator and task.validation_strategy != ValidationStrategy.CUSTOM_ACCEPT:
        raise ValueError(f"task {args.task_id} uses {task.validation_strategy}, which takes no --validator "
                         f"(only CustomAccept tasks do): drop --validator, or check results with `decentralml "
                         "sandbox run` first")
    if args.validator:
        check = load_validator(args.validator)
        if check.needs_peers:
            raise ValueError(f"validator {check.name} compares results: run it in the creator agent")

        async def validator(submission):
            """The result's outputs, fetched (and verified) once into RESULTS_DIR, judged by the validator."""
            folder = args.results_dir / f"submission-{submission.submission_id}"
            if not folder.exists():
                if submission.result_path:  # get_folder leaves only a complete folder there
                    store = store_for(args, str(submission.result_storage_type or "IPFS"))
                    await get_folder(store, submission.result_path, folder)
                else:
                    folder.mkdir(parents=True)
            verdict = check.check(Evidence(submission, folder, task))
            verdict = (await verdict) if inspect.isawaitable(verdict) else verdict
            if verdict.accept is None:
                raise ValueError(f"{check.name} cannot decide submission {submission.submission_id} yet: "
                                 f"{verdict.reason}")
            return verdict.accept, verdict.for_chain()

    outcome = await tasks.validate_task_results(client, keypair(args), None, args.task_id, validator)
    emit(args, outcome)


async def claim_payment(args, client) -> None:
    amount = await tasks.claim_payment(client, keypair(args), None, args.submission_id)
    emit(args, {"submission_id": args.submission_id, "paid": amount})
