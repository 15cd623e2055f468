"""Find the annotation samples in each annotation file, whatever lies around them; no model download.
Writes COCO annotations: outputs/<file>_annotations.json and outputs/annotations_coco.json; an
unreadable image is reported (stderr, outputs/errors.json) and the others are still annotated.

How: each sample's object is the part of the sample not connected to its border through near-white
pixels (so its own white margin is never matched, its markings are). The old matcher's score included
that margin: a circle scored 0.99 on white and 0.51 on grey 60. A place now scores the cube root of
the product of three figures, none looking outside the object's outline (and a one-pixel ring):

- colour: Pearson correlation of the object's pixels (all three channels as one vector) with the
  image's under the object's mask — unchanged by brightness, contrast and the background;
- edges: correlation of edge orientations (the colour structure tensor, sign-free, so a light object
  on dark ground matches as well as on white) — edges where the object has none lower it;
- edges found: the share of the object's own edges the image has there (noise-level edges matched
  the striped square's stripes at 0.5 on flat noisy ground; this figure keeps such places at ~0.2).

A place without texture (mean edge weight under the object below ``min_texture``) scores nothing: a
flat wall the colour of a sample is not that sample. The search runs over ``scales`` × ``angles``, each
scale on the pyramid level where the object is about ``search_px`` pixels across (12 px, 9 scales × 5
angles: at 18 px, 13 × 7, the tuning set took 3.6× the time for mAP@0.5 0.996 instead of 0.999), then
the best places are refined at full resolution at the half-steps between; non-maximum suppression across classes, and a box lying mostly inside a better
one dropped (a smaller striped square fits inside a larger one's stripes).

Parameters come from ``task.json`` (the task's ``annotation_json`` → ``detector``), all optional:
``threshold`` (0.6: the tuning set's true boxes score ≥ 0.68), ``scales`` (0.5 … 2.0, 9 steps ×1.19),
``angles`` (-30 … 30 by 15), ``nms_iou`` (0.3), ``min_texture`` (0.12), ``search_px`` (12).
Class labels are the task's ``annotation_class_labels`` (default: the sample file names); its
``annotation_class_coordinates``, if given, is JSON ``{"label": [x, y, w, h], …}``: where each label's
object lies in its sample image (the sample is cropped to it; otherwise the whole sample is the object).
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np

DEFAULTS = {"threshold": 0.6, "scales": [0.5, 0.595, 0.707, 0.841, 1.0, 1.189, 1.414, 1.682, 2.0],
            "angles": [-30, -15, 0, 15, 30], "nms_iou": 0.3, "min_texture": 0.12, "search_px": 12}
PAD = 3  # pixels of edge response around an object's box (tensor smoothing spreads an edge ~2 px)
EDGE_SATURATION = 40.0  # edge strength (sqrt of coherent tensor energy) counted as a full edge
NOISE_EDGES = 4.0  # pure noise of σ grey levels gives edge strength ≈ 3.9σ: counted as no edge
WHITE = 215  # a sample's margin: every channel above this, connected to the sample's border


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


def object_mask(sample):
    """The sample's object: all but the near-white pixels reachable from its border."""
    margin = np.pad((sample.min(axis=2) > WHITE).astype(np.uint8), 1, constant_values=1)
    cv2.floodFill(margin, None, (0, 0), 2)
    mask = (margin[1:-1, 1:-1] != 2).astype(np.uint8) * 255
    return mask if mask.any() else np.full_like(mask, 255)  # an all-white sample: take it whole


def noise_sigma(grey):
    """The image's noise level (Immerkær's estimator: a Laplacian difference that cancels smooth
    shading), in grey levels."""
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    response = np.abs(cv2.filter2D(grey, cv2.CV_32F, kernel))[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * response.mean() / 6) if response.size else 0.0


class Features:
    """What the scores need of an image (or a template): colour, channel sums, edge orientations."""

    def __init__(self, bgr, noise_floor=True):
        self.color = bgr.astype(np.float32)
        self.sum = self.color.sum(axis=2)
        self.sum_sq = (self.color * self.color).sum(axis=2)
        gx = cv2.Sobel(self.color, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(self.color, cv2.CV_32F, 0, 1, ksize=3)
        # colour structure tensor, smoothed: its doubled-angle form is sign-free and sums the channels
        a = cv2.GaussianBlur((gx * gx - gy * gy).sum(axis=2), (0, 0), 1.0)
        b = cv2.GaussianBlur((2 * gx * gy).sum(axis=2), (0, 0), 1.0)
        energy = np.sqrt(a * a + b * b)
        floor = NOISE_EDGES * noise_sigma(self.sum / 3) if noise_floor else 0.0
        weight = np.clip((np.sqrt(energy) - floor) / EDGE_SATURATION, 0.0, 1.0)
        scale = np.where(energy > 1e-6, weight / np.maximum(energy, 1e-6), 0).astype(np.float32)
        self.edges = np.dstack([a * scale, b * scale]).astype(np.float32)
        self.edge_energy = (weight * weight).astype(np.float32)
        self.color_planes, self.edge_planes = _planes(self.color), _planes(self.edges)


class Template:
    """One sample at one scale and angle: its object's colour (mean removed, masked), its edge
    orientations over the object and a ring, and the box the object fills."""

    def __init__(self, sample, mask, scale, angle):
        h, w = mask.shape
        if scale < 1:  # shrink first (area-averaged, as the image pyramid is), then rotate
            sample = cv2.resize(sample, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, (sample.shape[1], sample.shape[0]), interpolation=cv2.INTER_AREA)
            h, w, rest = mask.shape[0], mask.shape[1], 1.0
        else:
            rest = scale
        side = int(np.ceil(max(h, w) * rest * 1.5)) + 2 * PAD + 2
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, rest)
        m[:, 2] += ((side - w) / 2, (side - h) / 2)
        image = cv2.warpAffine(sample, m, (side, side), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))
        inside = cv2.warpAffine(mask, m, (side, side), flags=cv2.INTER_LINEAR) > 127
        ys, xs = np.nonzero(inside)
        self.valid = len(xs) > 0  # a tiny sample shrunk to nothing
        if not self.valid:
            return
        self.box = (int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))  # object's w, h
        y0, x0 = ys.min() - PAD, xs.min() - PAD
        y1, x1 = ys.max() + 1 + PAD, xs.max() + 1 + PAD
        feats = Features(image, noise_floor=False)
        inside = inside[y0:y1, x0:x1]
        self.mask = inside.astype(np.float32)
        self.count = 3 * float(inside.sum())
        color = feats.color[y0:y1, x0:x1]
        centred = (color - color[inside].mean()) * self.mask[..., None]
        self.color = centred.astype(np.float32)
        self.color_norm = float(np.sqrt((centred * centred).sum()))
        ring = cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
        self.support = ring
        self.support_area = float(ring.sum())
        self.edges = (feats.edges[y0:y1, x0:x1] * ring[..., None]).astype(np.float32)
        self.edge_norm = float(np.sqrt((self.edges * self.edges).sum()))
        self.color_planes, self.edge_planes = _planes(self.color), _planes(self.edges)
        self.valid = self.edge_norm > 0  # no edge at all (a blank crop): nothing to match

    def scores(self, image: Features, min_texture: float):
        """Score of the object's box at every place of ``image`` (geometric mean of the colour
        correlation, the edge correlation and the share of edges found; 0 where the image lacks
        texture)."""
        match = cv2.matchTemplate
        color_num = _correlate(image.color_planes, self.color_planes)
        s1 = match(image.sum, self.mask, cv2.TM_CCORR)
        s2 = match(image.sum_sq, self.mask, cv2.TM_CCORR)
        variance = np.maximum(s2 - s1 * s1 / self.count, 1e-3)
        # a grey object of one shade has no colour pattern to correlate: its colour figure is 1
        color = color_num / (self.color_norm * np.sqrt(variance)) if self.color_norm > 0 else 1.0
        edge_num = _correlate(image.edge_planes, self.edge_planes)
        energy = np.maximum(match(image.edge_energy, self.support, cv2.TM_CCORR), 1e-6)
        edges = edge_num / (self.edge_norm * np.sqrt(energy))
        found = edge_num / (self.edge_norm * self.edge_norm)
        textured = energy >= min_texture * min_texture * self.support_area
        score = np.cbrt(np.clip(color, 0, 1) * np.clip(edges, 0, 1) * np.clip(found, 0, 1))
        return np.where(textured, score, 0).astype(np.float32)


def pyramid(image, factors):
    levels = {}
    for f in factors:
        size = (max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f)))
        small = image if f == 1 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        levels[f] = Features(cv2.copyMakeBorder(small, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE))
    return levels


def symmetric(sample, mask, angles):
    """Whether the object looks the same at every searched angle (a disc): then one angle suffices."""
    h, w = mask.shape
    inside = mask > 127
    base = sample.astype(np.float32)[inside]
    base -= base.mean()
    for angle in angles:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        turned = cv2.warpAffine(sample, m, (w, h), borderValue=(255, 255, 255)).astype(np.float32)[inside]
        turned -= turned.mean()
        if float((turned * base).sum() / (np.linalg.norm(turned) * np.linalg.norm(base) + 1e-9)) < 0.97:
            return False
    return True


def half_steps(values, v):
    """``v`` and the points halfway to its neighbours in the sorted list ``values``."""
    i = values.index(v)
    out = [v]
    if i > 0:
        out.append((values[i - 1] + v) / 2)
    if i + 1 < len(values):
        out.append((values[i + 1] + v) / 2)
    return out


class Detector:
    """The samples' templates, built once per run and reused for every image (a third of the time
    per 320×240 image went to building them)."""

    def __init__(self, samples, params):
        self.params = params
        self.scales = sorted(float(s) for s in params["scales"])
        self.angles = sorted(float(a) for a in params["angles"])
        self.classes = []  # (sample, mask, size, angles)
        for sample in samples:
            mask = object_mask(sample)
            angles = [0.0] if symmetric(sample, mask, self.angles) else self.angles
            self.classes.append((sample, mask, max(mask.shape), angles))
        self.factors = sorted({self.level(k, s) for k in range(len(self.classes)) for s in self.scales}, reverse=True)
        self.cache = {}

    def level(self, k, scale):
        """The pyramid factor (1, 1/2, 1/4, …) at which class ``k`` at ``scale`` is closest to
        ``search_px`` pixels across without going below it."""
        f, size = 1.0, self.classes[k][2] * scale
        while size * f / 2 >= self.params["search_px"]:
            f /= 2
        return f

    def template(self, k, scale, angle):
        key = (k, round(scale, 5), round(angle, 3))
        if key not in self.cache:
            sample, mask, _, _ = self.classes[k]
            self.cache[key] = Template(sample, mask, scale, angle)
        return self.cache[key]

    def refine(self, full, k, scale, angle, x, y, reach):
        """The best place within ``reach`` px of (x, y) at full resolution for one scale and angle:
        (score, x, y, object's (w, h), scale)."""
        t = self.template(k, scale, angle)
        if not t.valid:
            return (-1.0, 0, 0, (0, 0), scale)
        th, tw = t.color.shape[:2]
        x0, y0 = max(int(round(x)) - reach, 0), max(int(round(y)) - reach, 0)
        x1, y1 = min(int(round(x)) + reach + tw, full.sum.shape[1]), min(int(round(y)) + reach + th, full.sum.shape[0])
        if x1 - x0 < tw or y1 - y0 < th:
            return (-1.0, 0, 0, t.box, scale)
        sc = t.scores(_crop(full, x0, y0, x1, y1), self.params["min_texture"])
        wy, wx = np.unravel_index(int(np.argmax(sc)), sc.shape)
        return (float(sc[wy, wx]), x0 + int(wx), y0 + int(wy), t.box, scale)

    def detect(self, image, limit=40):
        """Coarse search per scale on its pyramid level, refinement at full resolution, then NMS."""
        threshold, min_texture = self.params["threshold"], self.params["min_texture"]
        levels = pyramid(image, sorted({*self.factors, 1.0}, reverse=True))
        height, width = image.shape[:2]
        candidates = []  # (score, class index, scale, angle, x, y, level) — x, y at full resolution
        for k, (_, _, _, class_angles) in enumerate(self.classes):
            for scale in self.scales:
                f = self.level(k, scale)
                feats = levels[f]
                for angle in class_angles:
                    t = self.template(k, scale * f, angle)
                    if not t.valid or t.color.shape[0] > feats.sum.shape[0] or t.color.shape[1] > feats.sum.shape[1]:
                        continue
                    s = t.scores(feats, min_texture)
                    peaks = (s >= threshold * 0.8) & (s == cv2.dilate(s, np.ones((3, 3), np.uint8)))
                    for y, x in zip(*np.nonzero(peaks), strict=True):
                        candidates.append((float(s[y, x]), k, scale, angle, x / f, y / f, f))
        candidates.sort(key=lambda c: -c[0])
        # candidates overlapping a better one of about the same size go before the (costlier) refinement;
        # one of a size two steps away stays: a plain square scored 0.84 at ×1.41 on the coarse level
        # where it was ×1.0 (0.83), and refining around ×1.41 never reaches ×1.0
        kept, boxes = [], []
        for c in candidates:
            _, k, scale, _, x, y, _ = c
            size = self.classes[k][2] * scale
            box = (x, y, size, size)
            if all(_iou(box, b) < 0.5 or max(size / b[2], b[2] / size) > 1.25 for b in boxes):
                kept.append(c)
                boxes.append(box)
            if len(kept) >= limit:
                break
        full = levels[1.0]
        found_boxes, found_scores, found_classes = [], [], []
        for _, k, scale, angle, x, y, f in kept:
            reach = int(round(1 / f)) + 2
            # scale first (at the coarse angle), then angle (at the best scale): 5 tries, not 9
            best = max((self.refine(full, k, s, angle, x, y, reach) for s in half_steps(self.scales, scale)),
                       key=lambda b: b[0])
            for a in half_steps(self.classes[k][3], angle)[1:]:
                best = max(best, self.refine(full, k, best[4], a, x, y, reach), key=lambda b: b[0])
            if best[0] < threshold:
                continue
            # the template starts PAD before the object's box, and the image is padded by PAD: they cancel
            score, bx, by, (bw, bh), _ = best
            bx, by = min(max(bx, 0), width - 1), min(max(by, 0), height - 1)
            found_boxes.append([int(bx), int(by), int(min(bw, width - bx)), int(min(bh, height - by))])
            found_scores.append(min(score, 1.0))
            found_classes.append(k + 1)
        if not found_boxes:
            return []
        kept_boxes = []
        for i in np.array(cv2.dnn.NMSBoxes(found_boxes, found_scores, threshold, self.params["nms_iou"])).reshape(-1):
            # a smaller copy of a sample inside a better match is a part of it (the square's stripes)
            if all(_covered(found_boxes[i], found_boxes[j]) < 0.6 for j, _, _ in kept_boxes):
                kept_boxes.append((i, found_scores[i], found_classes[i]))
        return [(found_boxes[i], score, category) for i, score, category in kept_boxes]


def _planes(array):
    return [np.ascontiguousarray(array[..., c]) for c in range(array.shape[2])]


def _correlate(planes, templates):
    """Cross-correlation summed over channels, one channel at a time: OpenCV's multi-channel
    matchTemplate took 13 ms where three single-channel calls take 4.5 (326×246 image, 20 px)."""
    total = cv2.matchTemplate(planes[0], templates[0], cv2.TM_CCORR)
    for plane, template in zip(planes[1:], templates[1:], strict=True):
        total += cv2.matchTemplate(plane, template, cv2.TM_CCORR)
    return total


def _crop(feats, x0, y0, x1, y1):
    window = Features.__new__(Features)
    window.color = feats.color[y0:y1, x0:x1]
    window.sum, window.sum_sq = feats.sum[y0:y1, x0:x1], feats.sum_sq[y0:y1, x0:x1]
    window.edges, window.edge_energy = feats.edges[y0:y1, x0:x1], feats.edge_energy[y0:y1, x0:x1]
    window.color_planes = [p[y0:y1, x0:x1] for p in feats.color_planes]
    window.edge_planes = [p[y0:y1, x0:x1] for p in feats.edge_planes]
    return window


def _covered(a, b):
    """The share of box ``a`` that box ``b`` covers."""
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih / (a[2] * a[3] + 1e-9)


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter + 1e-9)


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
        samples.append(sample)
    detector = Detector(samples, params)
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
        for box, score, category in detector.detect(image):
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
