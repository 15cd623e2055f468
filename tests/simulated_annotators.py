"""Annotators of varying quality, simulated from ground truth: the validators' tests and benchmark judge
these the way they would judge real results."""

from __future__ import annotations

import random


def perturbed(coco: dict, rng: random.Random, jitter: float = 2, drop: float = 0.0, invent: int = 0) -> dict:
    """Truth with each box moved by up to ``jitter`` px, a share ``drop`` of them missed and ``invent``
    false boxes per image."""
    out = {**coco, "annotations": []}
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    for a in coco["annotations"]:
        if rng.random() < drop:
            continue
        x, y, w, h = a["bbox"]
        width, height = sizes[a["image_id"]]
        box = [min(max(0, x + rng.uniform(-jitter, jitter)), width - w),
               min(max(0, y + rng.uniform(-jitter, jitter)), height - h), w, h]
        out["annotations"].append({**a, "bbox": box, "score": 0.9})
    for image in coco["images"]:
        for _ in range(invent):
            w, h = rng.uniform(10, 40), rng.uniform(10, 40)
            out["annotations"].append({"id": len(out["annotations"]) + 1000, "image_id": image["id"],
                                       "category_id": rng.choice(coco["categories"])["id"], "score": 0.5,
                                       "bbox": [rng.uniform(0, image["width"] - w), rng.uniform(0, image["height"] - h), w, h]})
    return out
