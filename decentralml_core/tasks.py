"""The data-annotation tutorial's functions, with its names and parameters, on the async chain client.

``substrate`` is a connected :class:`~decentralml_core.chain.ChainClient`; a function that signs
takes the tutorial's ``sudoaccount`` (a Keypair) or ``passphrase`` (a mnemonic or URI), whichever is
given. Thin synchronous wrappers with the same call style live in :mod:`decentralml_core.tutorial`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .chain import ChainClient, DispatchFailed
from .chain.market import Market
from .chain.model import (
    AnnotationType,
    ResultSpec,
    StorageType,
    Submission,
    SubmissionStatus,
    Task,
    TaskSpec,
    TaskStatus,
    TaskTerms,
    TaskType,
    ValidationStrategy,
)
from .keys import load_keypair
from .logs import get_logger

if TYPE_CHECKING:
    from substrateinterface import Keypair

    from .storage import BlockStore

log = get_logger(__name__)
E = TypeVar("E", bound=StrEnum)


def signer(sudoaccount: Keypair | None, passphrase: str | None) -> Keypair:
    """The tutorial's convention: a keypair if given, else one made from the passphrase."""
    if sudoaccount is not None:
        return sudoaccount
    if not passphrase:
        raise ValueError("give sudoaccount (a Keypair) or passphrase (a mnemonic or key URI)")
    return load_keypair(passphrase)


def _enum(kind: type[E], value: str | None) -> E | None:
    return None if value is None else kind(value)


async def _create(substrate: ChainClient, who: Keypair, spec: TaskSpec, terms: TaskTerms | None = None,
                  client_token: str | None = None) -> int:
    task_id, receipt = await Market(substrate).create_task(who, spec, terms, client_token)
    log.info("task_created", task_id=task_id, creator=who.ss58_address, type=str(spec.task_type),
             escrow=spec.pays_amount * spec.max_assignments, block=receipt.block_number)
    return task_id


async def create_task_from_spec(substrate: ChainClient, who: Keypair, spec: TaskSpec, terms: TaskTerms | None = None,
                                client_token: str | None = None) -> int:
    """Post a task built with :meth:`TaskSpec.for_type` (any type); returns the task id."""
    return await _create(substrate, who, spec, terms, client_token)


async def create_task_data_annotator(
        expiration_block: int, substrate: ChainClient, sudoaccount: Keypair | None, passphrase: str | None,
        task_type: str, question: str, pays_amount: int, max_assignments: int, validation_strategy: str,
        annotation_type: str | None, annotation_media_samples: Iterable[str] | None,
        annotation_files: Iterable[str] | None, annotation_class_labels: str | None,
        annotation_class_coordinates: str | None, annotation_json: str | None,
        annotation_files_storage_type: str | None, annotation_files_storage_credentials: str | None, *,
        terms: TaskTerms | None = None, client_token: str | None = None) -> int:
    """Post a data-annotation task; its pay × max_assignments is escrowed. Returns the task id."""
    spec = TaskSpec.for_type(
        task_type, None, annotation_files_storage_type, annotation_files_storage_credentials,
        annotation=dict(
            annotation_type=_enum(AnnotationType, annotation_type),
            annotation_media_samples=list(annotation_media_samples) if annotation_media_samples is not None else None,
            annotation_files=list(annotation_files) if annotation_files is not None else None,
            annotation_class_labels=annotation_class_labels, annotation_class_coordinates=annotation_class_coordinates),
        question=question, pays_amount=pays_amount, expiration_block=expiration_block,
        max_assignments=max_assignments, validation_strategy=validation_strategy, annotation_json=annotation_json)
    return await _create(substrate, signer(sudoaccount, passphrase), spec, terms, client_token)


async def create_task_model_engineer(
        expiration_block: int, substrate: ChainClient, sudoaccount: Keypair | None, passphrase: str | None,
        task_type: str, question: str, pays_amount: int, max_assignments: int, validation_strategy: str,
        model_engineer_path: str | None, model_engineer_storage_type: str | None,
        model_engineer_storage_credentials: str | None, *,
        terms: TaskTerms | None = None, client_token: str | None = None) -> int:
    spec = TaskSpec.for_type(
        task_type, model_engineer_path, model_engineer_storage_type, model_engineer_storage_credentials,
        question=question, pays_amount=pays_amount, expiration_block=expiration_block,
        max_assignments=max_assignments, validation_strategy=validation_strategy)
    return await _create(substrate, signer(sudoaccount, passphrase), spec, terms, client_token)


async def create_task_model_contributor(
        expiration_block: int, substrate: ChainClient, sudoaccount: Keypair | None, passphrase: str | None,
        task_type: str, question: str, pays_amount: int, max_assignments: int, validation_strategy: str,
        model_contributor_script_path: str | None, model_contributor_script_storage_type: str | None,
        model_contributor_script_storage_credentials: str | None, *,
        terms: TaskTerms | None = None, client_token: str | None = None) -> int:
    spec = TaskSpec.for_type(
        task_type, model_contributor_script_path, model_contributor_script_storage_type,
        model_contributor_script_storage_credentials,
        question=question, pays_amount=pays_amount, expiration_block=expiration_block,
        max_assignments=max_assignments, validation_strategy=validation_strategy)
    return await _create(substrate, signer(sudoaccount, passphrase), spec, terms, client_token)


async def list_task(substrate: ChainClient, status: str | None = None, task_type: str | None = None,
                    open_only: bool = False) -> list[Task]:
    """Tasks on chain, optionally only open ones (still taking assignments) or of a status/type."""
    market = Market(substrate)
    tasks = await market.tasks()
    if open_only:
        open_ids = set(await market.open_task_ids())
        now = await substrate.block_number()
        tasks = [t for t in tasks if t.task_id in open_ids and t.expiration_block >= now]
    if status is not None:
        tasks = [t for t in tasks if t.status == TaskStatus(status)]
    if task_type is not None:
        tasks = [t for t in tasks if t.task_type == TaskType(task_type)]
    return tasks


async def list_task_results(substrate: ChainClient, task_id: int | None = None,
                            status: str | None = None) -> list[Submission]:
    results = await Market(substrate).submissions(task_id)
    return [s for s in results if status is None or s.status == SubmissionStatus(status)]


VERDICT_SCAN_BLOCKS = 2_000
"""How far after a result was sent :func:`verdict_reasons` looks for its rejection (~3 h at 6 s blocks; on a
loopback devnet ~1 s of reads). The chain keeps a rejection's reason only in its event, not in storage."""


async def verdict_reasons(substrate: ChainClient, submissions: list[Submission],
                          max_blocks: int = VERDICT_SCAN_BLOCKS) -> dict[int, str]:
    """The creator's reason for each rejected submission, from its ``TaskResultRejected`` event."""
    wanted = {s.submission_id: s.submitted_block for s in submissions
              if s.status == SubmissionStatus.REJECTED and s.submitted_block is not None}
    if not wanted:
        return {}
    head = await substrate.block_number()
    start = min(wanted.values())
    end = min(head, max(wanted.values()) + max_blocks)
    found: dict[int, str] = {}
    for block in range(start, end + 1):
        for event in await substrate.events_at(block):
            if event.pallet == "DecentralMLModule" and event.name == "TaskResultRejected":
                sid = event.attributes.get("submission_id")
                if sid in wanted and sid not in found:
                    reason = event.attributes.get("reason")
                    found[sid] = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason or "")
        if len(found) == len(wanted):
            break
    return found


async def assign_task(substrate: ChainClient, sudoaccount: Keypair | None, passphrase: str | None, task_id: int, *,
                      store: BlockStore | None = None,
                      work_root: str | Path | None = None) -> int:
    """Take one assignment of a task; returns the submission id.

    With a ``store`` and ``work_root``, the task's assets are then fetched and verified into the
    assignment's work dir (``work.work_dir``), where its script runs and writes ``outputs/``.
    """
    from . import work  # storage: only for a call that fetches

    who, market = signer(sudoaccount, passphrase), Market(substrate)
    submission_id, receipt = await market.assign_task(who, task_id)
    log.info("task_assigned", task_id=task_id, submission_id=submission_id, worker=who.ss58_address,
             block=receipt.block_number)
    if store is not None and work_root is not None:
        task = await market.task(task_id)
        if task is not None and work.assets_of(task) is not None:
            dest = work.work_dir(work_root, task_id, submission_id)
            if dest.exists() or dest.is_symlink():  # another chain's (a restarted devnet numbers from 0 again)
                aside = dest.with_name(f"{dest.name}.old-{time.strftime('%Y%m%dT%H%M%S')}")
                dest.rename(aside)
                log.warning("work_dir_set_aside", folder=str(dest), moved_to=str(aside),
                            reason="it existed before this assignment: it belongs to another chain's task")
            await work.fetch_assets(store, task, dest)
    return submission_id


async def send_task_result(substrate: ChainClient, keypair: Keypair, submission_id: int, result: str | None,
                           result_path: str | None, result_storage_type: str | None,
                           result_storage_credentials: str | None, *, store: BlockStore | None = None) -> str | None:
    """Submit a result for an assignment; returns the ``result_path`` sent.

    With a ``store``, a ``result_path`` naming a local folder is first published to it and its
    reference sent; a content reference is sent only if the store holds it; anything else is refused.
    """
    if store is not None and result_path is not None:
        from . import work

        result_path = await work.outputs_reference(store, result_path)
    spec = ResultSpec(submission_id=submission_id, result=result, result_path=result_path,
                      result_storage_type=_enum(StorageType, result_storage_type),
                      result_storage_credentials=result_storage_credentials)
    receipt = await Market(substrate).send_task_result(keypair, spec)
    log.info("task_result_sent", submission_id=submission_id, worker=keypair.ss58_address,
             block=receipt.block_number, result_path=result_path)
    return result_path


async def accept_task_results(substrate: ChainClient, sudoaccount: Keypair | None, passphrase: str | None,
                              submission_ids: Iterable[int]) -> list[int]:
    """Accept results (each worker paid once); returns the ids accepted now, skipping decided ones."""
    who, market = signer(sudoaccount, passphrase), Market(substrate)
    accepted = []
    for submission_id in submission_ids:
        try:
            await market.accept_task_result(who, submission_id)
        except DispatchFailed as exc:
            if exc.error != "AlreadyDecided":
                raise
            log.info("task_result_already_decided", submission_id=submission_id)
            continue
        accepted.append(submission_id)
        log.info("task_result_accepted", submission_id=submission_id)
    return accepted


async def reject_task_results(substrate: ChainClient, sudoaccount: Keypair | None, passphrase: str | None,
                              submission_ids: Iterable[int], reason: str) -> list[int]:
    who, market = signer(sudoaccount, passphrase), Market(substrate)
    rejected = []
    for submission_id in submission_ids:
        try:
            await market.reject_task_result(who, submission_id, reason)
        except DispatchFailed as exc:
            if exc.error != "AlreadyDecided":
                raise
            continue
        rejected.append(submission_id)
        log.info("task_result_rejected", submission_id=submission_id, reason=reason)
    return rejected


async def claim_payment(substrate: ChainClient, sudoaccount: Keypair | None, passphrase: str | None,
                        submission_id: int) -> int:
    """The worker takes the pay of a result its creator left undecided past the task's review window.

    Returns the amount paid; a claim after the creator decided (or a second claim) fails ``AlreadyDecided``.
    """
    receipt = await Market(substrate).claim_payment(signer(sudoaccount, passphrase), submission_id)
    (claimed,) = receipt.find("DecentralMLModule", "PaymentClaimed")
    log.info("payment_claimed", submission_id=submission_id, amount=claimed["amount"], block=receipt.block_number)
    amount: int = claimed["amount"]
    return amount


Verdict = tuple[bool, str]
"""(accept?, reason): what a CustomAccept validator returns for one result."""
Validator = Callable[[Submission], Awaitable[Verdict]]


@dataclass(frozen=True)
class Validation:
    accepted: list[int]
    rejected: list[int]
    waiting: list[int]  # ManualAccept: results a person still has to decide


async def validate_task_results(substrate: ChainClient, sudoaccount: Keypair | None, passphrase: str | None, task_id: int,
                                validator: Validator | None = None) -> Validation:
    """Apply the task's validation strategy to its results waiting for validation.

    AutoAccept accepts each; CustomAccept asks ``validator``; ManualAccept decides nothing and
    lists what waits for a person (``accept_task_results``/``reject_task_results``).
    """
    task = await Market(substrate).task(task_id)
    if task is None:
        raise DispatchFailed("DecentralMLModule", "TaskNotFound")
    pending = await list_task_results(substrate, task_id, SubmissionStatus.PENDING_VALIDATION)
    ids = [s.submission_id for s in pending]
    if task.validation_strategy == ValidationStrategy.AUTO_ACCEPT:
        return Validation(await accept_task_results(substrate, sudoaccount, passphrase, ids), [], [])
    if task.validation_strategy == ValidationStrategy.MANUAL_ACCEPT:
        return Validation([], [], ids)
    if validator is None:
        raise ValueError(f"task {task_id} uses CustomAccept: pass a validator")
    accepted: list[int] = []
    rejected: list[int] = []
    for submission in pending:
        ok, reason = await validator(submission)
        if ok:
            accepted += await accept_task_results(substrate, sudoaccount, passphrase, [submission.submission_id])
        else:
            rejected += await reject_task_results(substrate, sudoaccount, passphrase, [submission.submission_id],
                                                  reason or "rejected by the creator's validator")
    return Validation(accepted, rejected, [])

