"""What the review page shows, computed without I/O: the queue's rows (with the auto-approval countdown),
where a result sits in the queue, and each image's boxes — the submitted ones and the validator's
reference (consensus or ground truth) — drawn against the image's real size, capped, a page at a time."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .box_agreement import boxes_from_coco
from .journal import Entry

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")
# Boxes drawn per picture and kind, the highest scores first. A 100,000-box result drawn whole was 21 MB of
# HTML (2.9 s to render); 200 boxes already cover a 320x240 image many times over. The counts, the validator
# and the chain always use every box.
MAX_DRAWN = 200
PICTURES_PER_PAGE = 12  # a page of pictures stays under ~1 MB of HTML whatever the result holds
ROWS_PER_PAGE = 50
DEFAULT_SIZE = (320, 240)  # an image neither readable nor declared


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
    advice_passed: bool  # the validator accepted it: bulk approval may take it


def queue(entries: list[Entry], now: float, auto_approve_after_s: float | None) -> list[QueueRow]:
    """The results waiting for a person, oldest first."""
    rows = []
    for entry in entries:
        since = entry.data.get("review_since", entry.updated)
        left = None if auto_approve_after_s is None else auto_approve_after_s - (now - since)
        verdict = entry.data.get("verdict") or {}
        rows.append(QueueRow(int(entry.id), entry.data.get("task_id", -1), entry.data.get("worker", "?"),
                             now - since, countdown(left), verdict.get("reason"), verdict.get("accept") is True))
    return sorted(rows, key=lambda r: (-r.waiting_s, r.submission_id))


@dataclass(frozen=True)
class Neighbours:
    """Where a result sits in the waiting queue: the results before and after it (None at the ends)."""

    previous: int | None
    next: int | None
    position: int | None  # 1-based; None: not waiting (decided)
    waiting: int


def neighbours(order: list[int], sid: int) -> Neighbours:
    """Previous and next in queue order; for a result no longer waiting, next is the first that waits."""
    if sid not in order:
        return Neighbours(None, order[0] if order else None, None, len(order))
    i = order.index(sid)
    return Neighbours(order[i - 1] if i > 0 else None, order[i + 1] if i + 1 < len(order) else None, i + 1,
                      len(order))


def after_decision(order: list[int], sid: int) -> int | None:
    """The result to open after deciding ``sid``: the one that followed it, else the first still waiting."""
    rest = [s for s in order if s != sid]
    if sid in order:
        later = order[order.index(sid) + 1:]
        if later:
            return later[0]
    return rest[0] if rest else None


@dataclass(frozen=True)
class Page:
    items: list
    number: int  # 1-based
    pages: int
    total: int

    @property
    def previous(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def next(self) -> int | None:
        return self.number + 1 if self.number < self.pages else None


def paged(items: list, number: int, size: int) -> Page:
    pages = max(1, math.ceil(len(items) / size))
    number = min(max(1, number), pages)
    return Page(items[(number - 1) * size:number * size], number, pages, len(items))


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
    width: int  # the real image's, when it could be read
    height: int
    boxes: list[Box]  # the drawn ones (up to MAX_DRAWN of each kind)
    totals: dict[str, int] = field(default_factory=dict)  # every box of each kind
    declared: tuple[int, int] | None = None  # what the result claims, when that is not the real size
    real: bool = True  # width/height read from the image itself

    @property
    def counts(self) -> dict[str, int]:
        return {kind: self.totals.get(kind, 0) for kind in ("submitted", "reference")}

    @property
    def hidden(self) -> int:
        return sum(self.totals.values()) - len(self.boxes)

    @property
    def label_size(self) -> float:
        """Label text in image units: ~1/30 of the longer side, so it reads the same at any image size."""
        return round(max(9.0, max(self.width, self.height) / 30), 1)


@dataclass(frozen=True)
class Drawable:
    """A COCO document reduced to what the page draws: per image, its ``max_per_file`` highest-scored
    boxes and how many it has in all. Small whatever the result holds, so it is kept per result."""

    boxes: dict[tuple[str, str], np.ndarray]  # (file name, label) -> rows of x, y, w, h, score
    totals: dict[str, int]  # file name -> boxes before the cap
    sizes: dict[str, tuple[int, int]]  # the width and height each image is declared with
    count: int  # annotations in the document

    def to_json(self) -> dict:
        return {"boxes": [[f, label, rows.tolist()] for (f, label), rows in self.boxes.items()],
                "totals": self.totals, "sizes": {f: list(s) for f, s in self.sizes.items()}, "count": self.count}

    @classmethod
    def from_json(cls, data: dict) -> Drawable:
        return cls({(f, label): np.asarray(rows, dtype=float).reshape(-1, 5) for f, label, rows in data["boxes"]},
                   {f: int(n) for f, n in data["totals"].items()},
                   {f: (int(w), int(h)) for f, (w, h) in data["sizes"].items()}, int(data["count"]))


def drawable(coco: dict | None, max_per_file: int = MAX_DRAWN) -> Drawable | None:
    """Raises (KeyError, TypeError, ValueError, IndexError) on a document that is not COCO enough to draw."""
    if coco is None:
        return None
    sizes = {}
    for image in coco.get("images", []):
        try:
            sizes[image["file_name"]] = (int(image["width"]), int(image["height"]))
        except (KeyError, TypeError, ValueError):
            continue
    groups: dict[str, list[tuple[str, np.ndarray]]] = {}
    for (file, label), rows in boxes_from_coco(coco).items():
        groups.setdefault(file, []).append((label, rows.reshape(-1, 5)))
    kept, totals = {}, {}
    for file, labelled in groups.items():
        totals[file] = sum(len(rows) for _, rows in labelled)
        if totals[file] <= max_per_file:
            kept.update({(file, label): rows for label, rows in labelled})
            continue
        scores = np.concatenate([rows[:, 4] for _, rows in labelled])
        best = np.zeros(len(scores), dtype=bool)
        best[np.argsort(-scores, kind="stable")[:max_per_file]] = True
        offset = 0
        for label, rows in labelled:
            chosen = rows[best[offset:offset + len(rows)]]
            offset += len(rows)
            if len(chosen):
                kept[(file, label)] = chosen
    return Drawable(kept, totals, sizes, len(coco.get("annotations", [])))


def pictures(files: list[str], submitted: Drawable | None, reference: Drawable | None, labels: list[str],
             real_sizes: dict[str, tuple[int, int]] | None = None, max_drawn: int = MAX_DRAWN) -> list[Picture]:
    """One picture per annotation file, sized by the image itself (``real_sizes``); a size the result
    declares otherwise is kept as ``declared`` (the page flags it). Without a readable image, the
    submitted (else the reference) COCO size is used."""
    real_sizes = real_sizes or {}
    colors = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
    claimed = submitted.sizes if submitted else {}
    fallback = {**(reference.sizes if reference else {}), **claimed}
    wanted = [Path(f).name for f in files]
    by_file: dict[str, dict[str, list]] = {name: {"submitted": [], "reference": []} for name in wanted}
    for kind, doc in (("submitted", submitted), ("reference", reference)):
        for (file, label), rows in sorted((doc.boxes if doc else {}).items()):
            if file in by_file:
                by_file[file][kind] += [(label, row) for row in rows]
    result = []
    for name in wanted:
        drawn, totals = [], {}
        for kind, doc in (("submitted", submitted), ("reference", reference)):
            rows = by_file[name][kind]
            totals[kind] = doc.totals.get(name, len(rows)) if doc else 0
            rows = sorted(rows, key=lambda r: -float(r[1][4]))[:max_drawn] if len(rows) > max_drawn else rows
            drawn += [Box(kind, label, *(float(v) for v in row[:5]), colors.get(label, PALETTE[-1]))
                      for label, row in rows]
        real = real_sizes.get(name)
        width, height = real or fallback.get(name, DEFAULT_SIZE)
        declared = claimed.get(name)
        result.append(Picture(name, width, height, drawn, totals,
                              declared if real and declared and declared != real else None, real is not None))
    return result
