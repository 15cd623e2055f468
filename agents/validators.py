"""CustomAccept validators: a result's outputs folder (and the task) in, ``(accept?, reason)`` out.

Built-ins are named in the creator's YAML (``validator: coco_schema``); any other validator is
``package.module:function`` taking ``(submission, folder)`` or ``(submission, folder, task)``.
The reason is short and machine-readable enough to go on chain with a rejection.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

from decentralml_core.chain.model import Submission, Task

Verdict = tuple[bool, str]


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def outputs_present(submission: Submission, folder: Path, task: Task | None = None) -> Verdict:
    return (True, "") if _files(folder) else (False, "the result has no output files")


def json_outputs(submission: Submission, folder: Path, task: Task | None = None) -> Verdict:
    files = _files(folder)
    if not files:
        return False, "the result has no output files"
    for path in files:
        try:
            json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            return False, f"{path.relative_to(folder)} is not JSON"
    return True, ""


def coco_schema(submission: Submission, folder: Path, task: Task | None = None) -> Verdict:
    """``annotations_coco.json`` parses as COCO, covers every annotation file, keeps boxes inside their
    images and uses only the task's class labels."""
    path = folder / "annotations_coco.json"
    try:
        coco = json.loads(path.read_text())
        images = {im["id"]: im for im in coco["images"]}
        categories = {c["id"]: c["name"] for c in coco["categories"]}
        annotations = coco["annotations"]
    except FileNotFoundError:
        return False, "coco_schema: no annotations_coco.json"
    except (ValueError, KeyError, TypeError) as exc:
        return False, f"coco_schema: not COCO ({type(exc).__name__}: {exc})"[:200]
    if task is not None:
        labels = [s.strip() for s in (task.annotation_class_labels or "").split(",") if s.strip()]
        unknown = sorted(set(categories.values()) - set(labels)) if labels else []
        if unknown:
            return False, f"coco_schema: unknown categories {unknown}"
        expected = {Path(name).name for name in task.annotation_files}
        missing = sorted(expected - {im.get("file_name") for im in images.values()})
        if missing:
            return False, f"coco_schema: {len(missing)} files not annotated, e.g. {missing[0]}"
    for a in annotations:
        image = images.get(a.get("image_id"))
        if image is None or a.get("category_id") not in categories:
            return False, f"coco_schema: annotation {a.get('id')} names an unknown image or category"
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
        except (KeyError, TypeError, ValueError):
            return False, f"coco_schema: annotation {a.get('id')} has no [x, y, w, h] bbox"
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > image["width"] or y + h > image["height"]:
            return False, f"coco_schema: annotation {a.get('id')} box outside {image['file_name']}"
    return True, f"coco_schema: {len(images)} images, {len(annotations)} boxes"


BUILTINS = {"outputs_present": outputs_present, "json_outputs": json_outputs, "coco_schema": coco_schema}


def load_validator(spec: str):
    """A built-in name or ``package.module:function``, as a callable (submission, folder, task)."""
    if spec in BUILTINS:
        return BUILTINS[spec]
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"validator {spec!r}: use a built-in ({', '.join(BUILTINS)}) or package.module:function")
    fn = getattr(importlib.import_module(module), attr)
    if len(inspect.signature(fn).parameters) >= 3:
        return fn
    return lambda submission, folder, task: fn(submission, folder)
