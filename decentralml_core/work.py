"""A task's files on both sides: the creator publishes an assets folder, a worker fetches it into its
work dir, runs the task's script there and publishes the outputs folder.

The chain carries references only: ``annotation_json`` holds ``{"assets": <folder CID>, "script":
"start_task.sh"}``, ``annotation_files``/``annotation_media_samples`` the names inside the folder,
and a result's ``result_path`` the CID of the outputs folder.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from .chain.model import StorageType, Task, TaskType
from .storage import BlockStore, Limits, get_folder, put_folder
from .storage.base import Progress
from .storage.cid import parse
from .storage.errors import NotFound, StorageError
from .storage.manifest import MAX_MANIFEST
from .storage.safety import safe_name, walk_folder, write_new

log = structlog.get_logger(__name__)
SCRIPT = "start_task.sh"


@dataclass(frozen=True)
class PublishedAssets:
    ref: str
    annotation_files: list[str]
    annotation_media_samples: list[str]
    annotation_json: str


async def publish_assets(store: BlockStore, folder: str | Path, limits: Limits = Limits(),
                         progress: Progress | None = None) -> PublishedAssets:
    """Publish the tutorial's layout (``annotation_files/``, ``annotation_samples/``, ``start_task.sh``)."""
    folder = Path(folder)
    names = [name for name, _, _ in walk_folder(folder, limits.max_files, limits.max_total)]
    if SCRIPT not in names:
        raise ValueError(f"{folder} has no {SCRIPT}: workers would have nothing to run")
    ref = await put_folder(store, folder, limits, progress)
    files = [n for n in names if n.startswith("annotation_files/")]
    samples = [n for n in names if n.startswith("annotation_samples/")]
    return PublishedAssets(ref, files, samples, json.dumps({"assets": ref, "script": SCRIPT}, sort_keys=True))


def content_reference(path: str, option: str = "--path") -> str:
    """``path`` if it is a content address (a CID) a worker can fetch and verify; else a one-line fix."""
    try:
        return parse(path).text
    except StorageError:
        raise ValueError(f"{option} {path!r} is not a content reference (CID): workers could not fetch it and "
                         "their escrow would stay locked; publish the folder with --assets DIR instead") from None


def assets_of(task: Task) -> tuple[str, str] | None:
    """(folder reference, script name) of a task's assets, or None if it names none.

    Data annotation: ``annotation_json``'s ``assets``; model engineering and model contribution: the
    folder reference in ``model_engineer_path`` / ``model_contributor_script_path``.
    """
    path = {TaskType.MODEL_ENGINEER: task.model_engineer_path,
            TaskType.MODEL_CONTRIBUTOR: task.model_contributor_script_path}.get(task.task_type)
    if path:
        try:
            return parse(path).text, SCRIPT  # any CID (a large manifest is a dag-pb root, bafybei…)
        except StorageError:
            return None  # a plain path, not a published folder
    try:
        info = json.loads(task.annotation_json or "")
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        return None
    if not isinstance(info, dict) or not isinstance(info.get("assets"), str):
        return None
    return info["assets"], safe_name(str(info.get("script") or SCRIPT))


def training_settings(task: Task) -> dict[str, Any]:
    """A training round's settings as its task announces them (``annotation_json``'s ``settings``: epochs,
    lr, …) so a contributor's policy can decline before taking it; {} when absent or unreadable."""
    try:
        info = json.loads(task.annotation_json or "{}")
    except (ValueError, RecursionError):
        return {}
    settings = info.get("settings") if isinstance(info, dict) else None
    return settings if isinstance(settings, dict) else {}


def storage_of(task: Task) -> str:
    """The StorageType a task's assets live in (the pallet keeps one field per task type)."""
    kind = {TaskType.MODEL_ENGINEER: task.model_engineer_storage_type,
            TaskType.MODEL_CONTRIBUTOR: task.model_contributor_script_storage_type}.get(
        task.task_type, task.annotation_files_storage_type)
    return str(kind or StorageType.IPFS)


def work_dir(root: str | Path, task_id: int, submission_id: int) -> Path:
    """Where an assignment's assets and outputs live: ``ROOT/task-<id>/submission-<id>``."""
    return Path(root) / f"task-{int(task_id)}" / f"submission-{int(submission_id)}"


async def fetch_assets(store: BlockStore, task: Task, dest: Path, limits: Limits = Limits()) -> Path:
    found = assets_of(task)
    if found is None:
        raise ValueError(f"task {task.task_id} names no assets folder in its annotation_json")
    return await get_folder(store, found[0], dest, limits)


async def publish_outputs(store: BlockStore, folder: str | Path, limits: Limits = Limits()) -> str:
    return await put_folder(store, folder, limits)


async def outputs_reference(store: BlockStore, path: str | Path, limits: Limits = Limits()) -> str:
    """The reference to send for ``path``: a local folder is published first; a content reference (CID)
    is sent only if ``store`` holds it. Anything else is refused, before anything reaches the chain.

    Why: the chain takes any text as a result path, and a sent result cannot be sent again — a mistyped
    folder name (``work/nope``) would cost the worker the assignment.
    """
    folder = Path(path)
    if folder.is_dir():
        return await publish_outputs(store, folder, limits)
    try:
        ref = parse(str(path)).text
    except StorageError:
        hint = "no such folder" if not folder.exists() else "not a folder"
        raise ValueError(f"{path}: {hint}, and not a content reference (CID): give the outputs folder "
                         f"(e.g. work/task-N/submission-M/outputs) or the CID `storage put` printed") from None
    try:
        await store.get(ref, MAX_MANIFEST)
    except NotFound:
        raise ValueError(f"{ref} is not in the {getattr(store, 'name', 'local')} store: publish the folder "
                         "(give its path instead) so the creator can fetch it") from None
    return ref


def write_task_parameters(folder: Path, terms: dict[str, Any]) -> None:
    """``folder/task.json``: the task's terms for its script. Whatever a previous run left under that
    name (a link out of the work dir, say) is removed, never followed."""
    name = "task.json"
    try:
        os.unlink(folder / name)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        shutil.rmtree(folder / name)
    write_new(folder, name, [json.dumps(terms, default=str, indent=1).encode()])
