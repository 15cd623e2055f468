"""How far sets of detection boxes agree: one-to-one matching at an IoU threshold (COCO's rule), the
precision/recall/F1 that follow, and the majority consensus of several annotators' boxes.

Pure functions over :data:`Boxes` — boxes grouped by (file name, class label), each an ``[x, y, w, h,
score]`` row — so the validators and the benchmark share one definition. IoU comes from pycocotools.
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

Boxes = dict[tuple[str, str], np.ndarray]
"""(file name, class label) → an N×5 array of ``x, y, w, h, score``."""


def boxes_from_coco(coco: dict, files: set[str] | None = None) -> Boxes:
    """The boxes of a parsed COCO document, keyed by image file name and category name (ids differ
    between annotators; names do not). ``files`` keeps only those images."""
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    labels = {c["id"]: c["name"] for c in coco["categories"]}
    rows: dict[tuple[str, str], list] = defaultdict(list)
    for a in coco["annotations"]:
        file = names[a["image_id"]]
        if files is None or file in files:
            rows[(file, labels[a["category_id"]])].append([*map(float, a["bbox"]), float(a.get("score", 1.0))])
    return {key: np.asarray(value, dtype=float) for key, value in rows.items()}


def boxes_to_coco(boxes: Boxes) -> dict:
    """Boxes as a minimal COCO document (for drawing and for storing a reference)."""
    files = sorted({f for f, _ in boxes})
    labels = sorted({c for _, c in boxes})
    images = [{"id": i + 1, "file_name": f} for i, f in enumerate(files)]
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(labels)]
    image_ids, category_ids = {f: i + 1 for i, f in enumerate(files)}, {c: i + 1 for i, c in enumerate(labels)}
    annotations = [{"id": n + 1, "image_id": image_ids[f], "category_id": category_ids[c],
                    "bbox": [round(v, 1) for v in row[:4]], "score": round(float(row[4]), 3)}
                   for n, ((f, c), row) in enumerate((key, row) for key, rows in sorted(boxes.items()) for row in rows)]
    return {"images": images, "categories": categories, "annotations": annotations}


def count_boxes(boxes: Boxes) -> int:
    return sum(len(rows) for rows in boxes.values())


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b`` (rows × columns)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    # contiguous float arrays: pycocotools converts lists in Python, 5x slower than the IoU itself
    return coco_mask.iou(np.ascontiguousarray(a[:, :4], dtype=float), np.ascontiguousarray(b[:, :4], dtype=float),
                         np.zeros(len(b), dtype=np.uint8))


def greedy_match(ious: np.ndarray, threshold: float, order: np.ndarray | None = None) -> list[tuple[int, int]]:
    """COCO's matching: rows in ``order`` (by default as given) each take the best still-free column
    whose IoU reaches ``threshold``. Returns (row, column) pairs."""
    taken: set[int] = set()
    pairs = []
    for r in order if order is not None else range(ious.shape[0]):
        best, best_iou = -1, threshold
        for c in range(ious.shape[1]):
            if c not in taken and ious[r, c] >= best_iou:
                best, best_iou = c, ious[r, c]
        if best >= 0:
            taken.add(best)
            pairs.append((int(r), best))
    return pairs


@dataclass(frozen=True)
class Agreement:
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        present = self.true_positives + self.false_negatives
        return self.true_positives / present if present else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def agreement(reference: Boxes, predicted: Boxes, iou: float = 0.5) -> Agreement:
    """Match ``predicted`` against ``reference`` per file and label, highest score first; nothing to find
    and nothing found counts as full agreement."""
    tp = fp = fn = 0
    for key in reference.keys() | predicted.keys():
        ref, pred = reference.get(key, np.zeros((0, 5))), predicted.get(key, np.zeros((0, 5)))
        pairs = greedy_match(iou_matrix(pred, ref), iou, order=np.argsort(-pred[:, 4], kind="stable"))
        tp += len(pairs)
        fp += len(pred) - len(pairs)
        fn += len(ref) - len(pairs)
    return Agreement(tp, fp, fn)


def consensus(annotators: list[Boxes], iou: float = 0.5, quorum: int | None = None) -> Boxes:
    """The boxes a majority agrees on. Each annotator's boxes join the cluster (same file and label)
    whose mean box they overlap most at ``iou`` — one box per annotator per cluster — or start a new
    one; clusters with at least ``quorum`` annotators (default: more than half) become their mean box,
    scored by the share of annotators behind it."""
    quorum = quorum if quorum is not None else len(annotators) // 2 + 1
    result: Boxes = {}
    for key in set().union(*annotators) if annotators else ():
        sums, votes = np.zeros((0, 5)), np.zeros(0)  # per cluster: the sum of its boxes, how many
        for boxes in annotators:
            rows = boxes.get(key)
            if rows is None:
                continue
            pairs = greedy_match(iou_matrix(rows, sums / votes[:, None]), iou)
            for r, c in pairs:
                sums[c] += rows[r]
                votes[c] += 1
            matched = {r for r, _ in pairs}
            new = [r for r in range(len(rows)) if r not in matched]
            sums, votes = np.vstack([sums, rows[new]]), np.concatenate([votes, np.ones(len(new))])
        keep = votes >= quorum
        if keep.any():
            means = sums[keep] / votes[keep, None]
            means[:, 4] = votes[keep] / len(annotators)
            result[key] = means
    return result


def mean_average_precision(truth: dict, found: dict) -> tuple[float, float]:
    """COCOeval's mAP@0.5 and mAP@[.5:.95] of ``found`` against ``truth`` (images matched by file name)."""
    scores = detection_scores(truth, found)
    return scores["map50"], scores["map50_95"]


def detection_scores(truth: dict, found: dict) -> dict:
    """COCOeval's mAP@0.5 and mAP@[.5:.95] of ``found`` against ``truth`` (images matched by file name),
    and AP@0.5 per class name (-1 for a class without true boxes)."""
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = truth
        gt.createIndex()
        ids = {im["file_name"]: im["id"] for im in truth["images"]}
        names = {im["id"]: im["file_name"] for im in found["images"]}
        categories = {c["name"]: c["id"] for c in truth["categories"]}
        found_names = {c["id"]: c["name"] for c in found["categories"]}
        detections = [{**a, "image_id": ids[names[a["image_id"]]], "category_id": categories[found_names[a["category_id"]]]}
                      for a in found["annotations"] if names[a["image_id"]] in ids]
        if not detections:
            return {"map50": 0.0, "map50_95": 0.0, "ap50": {name: 0.0 for name in categories}}
        evaluation = COCOeval(gt, gt.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # precision: [IoU threshold, recall point, category, area range, max detections]; IoU 0.5 is first
    precision = evaluation.eval["precision"][0, :, :, 0, -1]
    per_class = {}
    for k, category_id in enumerate(evaluation.params.catIds):
        column = precision[:, k]
        valid = column[column > -1]
        per_class[gt.cats[category_id]["name"]] = float(valid.mean()) if valid.size else -1.0
    return {"map50": float(evaluation.stats[1]), "map50_95": float(evaluation.stats[0]), "ap50": per_class}
