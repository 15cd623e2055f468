"""Find the annotation samples in each annotation file: multi-scale, rotation-tolerant template
matching (OpenCV, masked to each sample's shape, coarse-to-fine) with non-maximum suppression; no model
download. Writes COCO annotations: outputs/<file>_annotations.json and outputs/annotations_coco.json;
an unreadable image is reported (stderr, outputs/errors.json) and the others are still annotated.

Parameters come from ``task.json`` (the task's ``annotation_json`` → ``detector``), all optional:
``threshold`` (0.55), ``scales`` ([0.8 … 1.25]), ``angles`` ([-15 … 15]), ``nms_iou`` (0.3).
Class labels are the task's ``annotation_class_labels`` (default: the sample file names); its
``annotation_class_coordinates``, if given, is JSON ``{"label": [x, y, w, h], …}``: where each label's
object lies in its sample image (the sample is cropped to it; otherwise the whole sample is the object).
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np

DEFAULTS = {"threshold": 0.55, "scales": [0.8, 0.9, 1.0, 1.1, 1.25], "angles": [-15, -7.5, 0, 7.5, 15],
            "nms_iou": 0.3}


def parameters():
    task = json.loads(Path("task.json").read_text()) if Path("task.json").exists() else {}
    try:
        extra = json.loads(task.get("annotation_json") or "{}").get("detector", {})
    except ValueError:
        extra = {}
    labels = [s.strip() for s in (task.get("annotation_class_labels") or "").split(",") if s.strip()]
    return {**DEFAULTS, **extra}, labels, task.get("annotation_class_coordinates")


def crops(text):
    """``annotation_class_coordinates`` as {label: (x, y, w, h)}; raises ValueError on anything else."""
    if not text:
        return {}
    found = json.loads(text)
    if not isinstance(found, dict):
        raise ValueError("annotation_class_coordinates must be a JSON object {label: [x, y, w, h]}")
    result = {}
    for label, box in found.items():
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) and v >= 0 for v in box)
                and box[2] > 0 and box[3] > 0):
            raise ValueError(f"annotation_class_coordinates[{label!r}] must be [x, y, w, h] in whole pixels")
        result[label] = tuple(box)
    return result


def variants(img, scales, angles):
    """The sample scaled and rotated, each with the mask of its shape (non-white pixels)."""
    mask = (img.min(axis=2) < 235).astype(np.uint8) * 255
    h, w = mask.shape
    for scale in scales:
        for angle in angles:
            side = int(round(max(h, w) * scale * 1.3))
            m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
            m[:, 2] += ((side - w) / 2, (side - h) / 2)
            t = cv2.warpAffine(img, m, (side, side), borderValue=(255, 255, 255))
            k = cv2.warpAffine(mask, m, (side, side), flags=cv2.INTER_NEAREST)
            ys, xs = np.nonzero(k)
            if len(xs) == 0:
                continue
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            yield t[y0:y1, x0:x1], k[y0:y1, x0:x1]


def masked_score(image, templ, mask):
    """Normalised correlation over the shape's pixels only; the stricter of two measures."""
    a = cv2.matchTemplate(image, templ, cv2.TM_CCORR_NORMED, mask=mask)
    b = cv2.matchTemplate(image, templ, cv2.TM_CCOEFF_NORMED, mask=mask)
    return np.nan_to_num(np.minimum(a, b), nan=0.0, posinf=0.0, neginf=0.0)


def detect(image, samples, params, factor=0.5, margin=4):
    """Coarse search at half resolution, then each local peak refined at full resolution; then NMS."""
    small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    boxes, scores, classes = [], [], []
    for category, (_label, sample) in enumerate(samples, start=1):
        for templ, mask in variants(sample, params["scales"], params["angles"]):
            th, tw = mask.shape
            if th > image.shape[0] or tw > image.shape[1]:
                continue
            st = cv2.resize(templ, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
            sm = (cv2.resize(mask, (st.shape[1], st.shape[0]), interpolation=cv2.INTER_NEAREST) > 0)
            coarse = masked_score(small, st, sm.astype(np.uint8) * 255)
            peaks = (coarse == cv2.dilate(coarse, np.ones((5, 5), np.uint8))) & (coarse >= params["threshold"] - 0.12)
            for y, x in zip(*np.nonzero(peaks), strict=True):
                x0, y0 = max(int(x / factor) - margin, 0), max(int(y / factor) - margin, 0)
                x1 = min(int(x / factor) + margin + tw, image.shape[1])
                y1 = min(int(y / factor) + margin + th, image.shape[0])
                if y1 - y0 < th or x1 - x0 < tw:
                    continue
                fine = masked_score(image[y0:y1, x0:x1], templ, mask)
                fy, fx = np.unravel_index(int(np.argmax(fine)), fine.shape)
                if fine[fy, fx] >= params["threshold"]:
                    boxes.append([x0 + int(fx), y0 + int(fy), int(tw), int(th)])
                    scores.append(float(fine[fy, fx]))
                    classes.append(category)
    keep = cv2.dnn.NMSBoxes(boxes, scores, params["threshold"], params["nms_iou"]) if boxes else []
    return [(boxes[i], scores[i], classes[i]) for i in np.array(keep).reshape(-1)]


def main() -> int:
    params, labels, coordinates = parameters()
    try:
        boxes = crops(coordinates)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    sample_files = sorted(Path("annotation_samples").glob("*.jpg"))
    by_stem = {p.stem: p for p in sample_files}
    labels = labels or [p.stem for p in sample_files]
    samples = []
    for label in labels:
        if label not in by_stem:
            print(f"no sample image for label {label!r} in annotation_samples/", file=sys.stderr)
            return 2
        sample = cv2.imread(str(by_stem[label]), cv2.IMREAD_COLOR)
        if label in boxes:
            x, y, w, h = boxes[label]
            if sample is None or x + w > sample.shape[1] or y + h > sample.shape[0]:
                print(f"annotation_class_coordinates[{label!r}] lies outside its sample image", file=sys.stderr)
                return 2
            sample = sample[y:y + h, x:x + w]
        samples.append((label, sample))
    categories = [{"id": i + 1, "name": label} for i, label in enumerate(labels)]
    out = Path("outputs")
    out.mkdir(exist_ok=True)
    combined = {"images": [], "annotations": [], "categories": categories}
    errors = []
    for image_id, path in enumerate(sorted(Path("annotation_files").iterdir(), key=lambda p: p.name), start=1):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            errors.append({"file": path.name, "error": "not a readable image"})
            print(f"{path.name}: not a readable image; skipped", file=sys.stderr)
            continue
        entry = {"id": image_id, "file_name": path.name, "width": image.shape[1], "height": image.shape[0]}
        found = []
        for box, score, category in detect(image, samples, params):
            found.append({"id": len(combined["annotations"]) + len(found) + 1, "image_id": image_id,
                          "category_id": category, "bbox": box, "area": box[2] * box[3], "score": round(score, 4),
                          "iscrowd": 0})
        (out / f"{path.stem}_annotations.json").write_text(json.dumps(
            {"images": [entry], "annotations": found, "categories": categories}))
        combined["images"].append(entry)
        combined["annotations"] += found
    (out / "annotations_coco.json").write_text(json.dumps(combined))
    if errors:
        (out / "errors.json").write_text(json.dumps(errors))
    print(f"{len(combined['images'])} images, {len(combined['annotations'])} objects, {len(errors)} errors",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
