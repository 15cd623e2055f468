"""What the review page shows, computed without I/O: the queue's rows (with the auto-approval countdown)
and each image's boxes — the submitted ones and the validator's reference (consensus or ground truth)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .box_agreement import boxes_from_coco
from .journal import Entry

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")


def countdown(seconds: float | None) -> str | None:
    """``"4 min 05 s"`` — what is left before the agent approves on its own (None: it never does)."""
    if seconds is None:
        return None
    seconds = max(0, math.ceil(seconds))
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


@dataclass(frozen=True)
class QueueRow:
    submission_id: int
    task_id: int
    worker: str
    waiting_s: float
    auto_approve_in: str | None
    advice: str | None


def queue(entries: list[Entry], now: float, auto_approve_after_s: float | None) -> list[QueueRow]:
    """The results waiting for a person, oldest first."""
    rows = []
    for entry in entries:
        since = entry.data.get("review_since", entry.updated)
        left = None if auto_approve_after_s is None else auto_approve_after_s - (now - since)
        verdict = entry.data.get("verdict") or {}
        rows.append(QueueRow(int(entry.id), entry.data.get("task_id", -1), entry.data.get("worker", "?"),
                             now - since, countdown(left), verdict.get("reason")))
    return sorted(rows, key=lambda r: -r.waiting_s)


@dataclass(frozen=True)
class Box:
    kind: str  # "submitted" or "reference"
    label: str
    x: float
    y: float
    w: float
    h: float
    score: float
    color: str


@dataclass(frozen=True)
class Picture:
    file_name: str
    width: int
    height: int
    boxes: list[Box]

    @property
    def counts(self) -> dict[str, int]:
        return {kind: sum(b.kind == kind for b in self.boxes) for kind in ("submitted", "reference")}


def pictures(files: list[str], submitted: dict | None, reference: dict | None, labels: list[str]) -> list[Picture]:
    """One picture per annotation file, sized by the submitted (else the reference) COCO image entry."""
    colors = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
    sizes = {}
    for coco in (reference, submitted):  # the submission's own sizes win
        for image in (coco or {}).get("images", []):
            if "width" in image and "height" in image:
                sizes[image["file_name"]] = (int(image["width"]), int(image["height"]))
    boxes_by_kind = {"submitted": boxes_from_coco(submitted) if submitted else {},
                     "reference": boxes_from_coco(reference) if reference else {}}
    result = []
    for name in (Path(f).name for f in files):
        drawn = [Box(kind, label, *(float(v) for v in row[:5]), colors.get(label, PALETTE[-1]))
                 for kind, boxes in boxes_by_kind.items()
                 for (file, label), rows in sorted(boxes.items()) if file == name for row in rows]
        width, height = sizes.get(name, (320, 240))
        result.append(Picture(name, width, height, drawn))
    return result
