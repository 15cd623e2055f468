"""Generate the held-out set for the example detection task: images the detector was never tuned on.

The tuning set (``scripts/make_detection_assets.py``, shipped in ``assets/data_annotator/``) pastes the
samples on smooth synthetic backgrounds at scale 0.8–1.25 and ±15°. This generator is written apart
from it on purpose — it imports nothing from it and shares none of its numbers — so that a score
on its output says how the detector does on images nobody looked at while choosing thresholds:

- backgrounds are crops of the real photographs bundled in scikit-image's wheel (``skimage.data``:
  nothing is downloaded), resized, in colour or grey, often darkened to night-like surroundings
  (``dark``) or washed out (``light``);
- the published samples (``annotation_samples/*.jpg``, the only thing taken from the task) are pasted
  at scale 0.5–2.0 (log-uniform) and a tenth of them beyond it (0.42–0.5 and 2.0–2.4), rotated ±30°,
  a third of them partly covered (15–35 % of their box) by a patch of the photo or a flat colour;
- distractors: other shapes (ellipses, stars, hexagons, crosses, rings, bars, and plain discs or
  squares of other colours, without the samples' markings);
- per image: lighting (gain, offset, gamma, a colour cast), Gaussian blur, noise, JPEG quality 35–95;
- images with nothing to find: ``empty`` (a photo, sometimes with distractors) and ``flat`` (one colour
  or a smooth ramp, with sensor noise).

Each image's entry in the COCO truth carries ``kind`` (objects / empty / flat), ``surround`` (dark /
light / photo / flat) and whether it has distractors, each object its ``scale``, ``angle`` and
whether it is ``occluded``: the benchmark's breakdown. The images go to a
build folder, never into the repository; the default seed (2111) is never used for tuning.

    python scripts/make_heldout_detection_set.py OUT_DIR [--files 36] [--seed 2111]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "assets" / "data_annotator" / "annotation_samples"
PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket", "hubble_deep_field", "coins", "brick",
          "grass", "gravel", "moon", "immunohistochemistry", "retina", "clock", "page", "text")
SIZES = ((320, 240), (400, 300), (480, 360), (640, 480))
DISTRACTORS = ("ellipse", "star", "hexagon", "cross", "ring", "bar", "plain_disc", "plain_square")


def photo_library() -> dict[str, np.ndarray]:
    """The real photographs scikit-image ships in its wheel, as BGR uint8."""
    import skimage.data

    photos = {}
    for name in PHOTOS:
        image = getattr(skimage.data, name)()
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        photos[name] = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR) if image.shape[2] >= 3 else image
    return photos


def object_of(sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sample and the mask of its object: every pixel not connected to the border through
    near-white ones (so markings inside the object belong to it)."""
    background = (sample.astype(int).min(axis=2) > 215).astype(np.uint8)
    padded = np.pad(background, 1, constant_values=1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 2)
    outside = flood[1:-1, 1:-1] == 2
    return sample, (~outside).astype(np.uint8) * 255


def backdrop(rng: np.random.Generator, photos: dict, width: int, height: int) -> tuple[np.ndarray, str]:
    name = PHOTOS[int(rng.integers(len(PHOTOS)))]
    photo = photos[name]
    zoom = max(width / photo.shape[1], height / photo.shape[0]) * float(rng.uniform(1.0, 2.2))
    photo = cv2.resize(photo, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
    x = int(rng.integers(0, photo.shape[1] - width + 1))
    y = int(rng.integers(0, photo.shape[0] - height + 1))
    crop = photo[y:y + height, x:x + width].astype(np.float32)
    if rng.random() < 0.3:
        crop = cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return crop, name


def transformed(image: np.ndarray, mask: np.ndarray, scale: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    side = int(np.ceil(max(h, w) * scale * 1.5)) + 2
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += ((side - w) / 2, (side - h) / 2)
    obj = cv2.warpAffine(image.astype(np.float32), m, (side, side), flags=cv2.INTER_LINEAR,
                         borderValue=(255, 255, 255))
    soft = cv2.warpAffine(mask.astype(np.float32) / 255, m, (side, side), flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(soft > 0.5)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return obj[y0:y1, x0:x1], soft[y0:y1, x0:x1]


def distractor(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A shape that is not a sample: its colour and its mask."""
    kind = DISTRACTORS[int(rng.integers(len(DISTRACTORS)))]
    side = int(rng.integers(22, 90))
    mask = np.zeros((side, side), np.uint8)
    c, r = (side // 2, side // 2), side // 2 - 2
    if kind == "ellipse":
        cv2.ellipse(mask, c, (r, max(3, int(r * rng.uniform(0.3, 0.7)))), 0, 0, 360, 255, -1)
    elif kind in ("star", "hexagon"):
        points = 5 if kind == "star" else 6
        radii = [r, r * 0.45] if kind == "star" else [r]
        angles = np.linspace(0, 2 * np.pi, points * len(radii), endpoint=False)
        poly = [(c[0] + radii[i % len(radii)] * np.cos(a), c[1] + radii[i % len(radii)] * np.sin(a))
                for i, a in enumerate(angles)]
        cv2.fillPoly(mask, [np.array(poly, np.int32)], 255)
    elif kind == "cross":
        t = max(2, side // 6)
        mask[c[1] - t:c[1] + t, 2:-2] = 255
        mask[2:-2, c[0] - t:c[0] + t] = 255
    elif kind == "ring":
        cv2.circle(mask, c, r, 255, max(2, side // 8))
    elif kind == "bar":
        mask[c[1] - max(2, side // 8):c[1] + max(2, side // 8), 2:-2] = 255
    elif kind == "plain_disc":
        cv2.circle(mask, c, r, 255, -1)
    else:
        mask[3:-3, 3:-3] = 255
    color = np.array([rng.integers(0, 256) for _ in range(3)], np.float32)
    image = np.empty((side, side, 3), np.float32)
    image[:] = color
    return image, mask


def paste(canvas: np.ndarray, obj: np.ndarray, soft: np.ndarray, taken: list, rng: np.random.Generator,
          gap: int = 3) -> tuple[int, int, int, int] | None:
    h, w = soft.shape
    height, width = canvas.shape[:2]
    if w >= width or h >= height:
        return None
    for _ in range(60):
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        if all(x + w + gap < bx or bx + bw + gap < x or y + h + gap < by or by + bh + gap < y
               for bx, by, bw, bh in taken):
            alpha = soft[..., None]
            canvas[y:y + h, x:x + w] = canvas[y:y + h, x:x + w] * (1 - alpha) + obj * alpha
            taken.append((x, y, w, h))
            return x, y, w, h
    return None


def occlude(canvas: np.ndarray, box: tuple, photo_patch: np.ndarray, rng: np.random.Generator) -> None:
    """Cover 15–35 % of the box from one side or corner with a patch of photo or a flat colour."""
    x, y, w, h = box
    share = float(rng.uniform(0.15, 0.35))
    if rng.random() < 0.5:  # a band from one side
        side = int(rng.integers(4))
        if side in (0, 1):
            ow, oh = max(1, int(round(w * share))), h
        else:
            ow, oh = w, max(1, int(round(h * share)))
        ox = x if side != 1 else x + w - ow
        oy = y if side != 3 else y + h - oh
    else:  # a corner
        ow, oh = max(1, int(round(w * np.sqrt(share)))), max(1, int(round(h * np.sqrt(share))))
        ox = x if rng.random() < 0.5 else x + w - ow
        oy = y if rng.random() < 0.5 else y + h - oh
    if rng.random() < 0.5:
        canvas[oy:oy + oh, ox:ox + ow] = photo_patch[:oh, :ow]
    else:
        canvas[oy:oy + oh, ox:ox + ow] = rng.integers(0, 256, 3).astype(np.float32)


def degrade(image: np.ndarray, rng: np.random.Generator, surround: str) -> np.ndarray:
    """Lighting (gain, offset, gamma, colour cast), blur and noise; the caller writes it as JPEG."""
    gain = {"dark": rng.uniform(0.2, 0.45), "light": rng.uniform(1.0, 1.3)}.get(surround, rng.uniform(0.7, 1.15))
    offset = rng.uniform(40, 90) if surround == "light" else rng.uniform(-10, 15)
    cast = rng.uniform(0.88, 1.12, 3).astype(np.float32)
    out = np.clip(image * gain * cast + offset, 0, 255)
    gamma = float(rng.uniform(0.8, 1.25))
    out = 255 * (out / 255) ** gamma
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.5, 1.3)))
    out = out + rng.normal(0, float(rng.uniform(1, 9)), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def flat_image(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    a = rng.integers(0, 256, 3).astype(np.float32)
    if rng.random() < 0.5:
        return np.broadcast_to(a, (height, width, 3)).copy()
    b = rng.integers(0, 256, 3).astype(np.float32)
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    return np.broadcast_to(a * (1 - ramp) + b * ramp, (height, width, 3)).copy()


def object_scale(rng: np.random.Generator) -> float:
    if rng.random() < 0.1:  # beyond the range the detector is configured for
        return float(rng.uniform(0.42, 0.5)) if rng.random() < 0.5 else float(rng.uniform(2.0, 2.4))
    return float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))


def generate(out: Path, files: int, seed: int) -> dict:
    """Write ``out/images/*.jpg`` and ``out/ground_truth.json``; returns the truth (COCO)."""
    rng = np.random.default_rng(seed)
    photos = photo_library()
    labels = sorted(p.stem for p in SAMPLES.glob("*.jpg"))
    objects = {label: object_of(cv2.imread(str(SAMPLES / f"{label}.jpg"))) for label in labels}
    (out / "images").mkdir(parents=True, exist_ok=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(labels)]}
    for n in range(1, files + 1):
        width, height = SIZES[int(rng.integers(len(SIZES)))]
        roll = rng.random()
        kind = "flat" if roll < 0.08 else "empty" if roll < 0.18 else "objects"
        surround = "flat" if kind == "flat" else ("dark", "light", "photo", "photo")[int(rng.integers(4))]
        if kind == "flat":
            canvas, photo = flat_image(rng, width, height), "flat"
        else:
            canvas, photo = backdrop(rng, photos, width, height)
        other, _ = backdrop(rng, photos, width, height)
        taken: list = []
        boxes = []
        if kind == "objects":
            for _ in range(int(rng.integers(1, 6))):
                label = labels[int(rng.integers(len(labels)))]
                scale, angle = object_scale(rng), float(rng.uniform(-30, 30))
                obj, soft = transformed(*objects[label], scale, angle)
                box = paste(canvas, obj, soft, taken, rng)
                if box is not None:
                    boxes.append((label, box, scale, angle))
        with_distractors = kind != "flat" and rng.random() < 0.6
        if with_distractors:
            for _ in range(int(rng.integers(1, 4))):
                image, mask = distractor(rng)
                obj, soft = transformed(image, mask, 1.0, float(rng.uniform(0, 360)))
                paste(canvas, obj, soft, taken, rng)
        for label, box, scale, angle in boxes:
            occluded = bool(rng.random() < 0.33)
            if occluded:
                x, y, w, h = box
                occlude(canvas, box, other[y:y + h, x:x + w], rng)
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": n,
                                        "category_id": labels.index(label) + 1, "bbox": [int(v) for v in box],
                                        "area": int(box[2] * box[3]), "iscrowd": 0, "scale": round(scale, 3),
                                        "angle": round(angle, 1), "occluded": occluded})
        pixels = degrade(canvas, rng, surround)
        name = f"heldout_{n}.jpg"
        cv2.imwrite(str(out / "images" / name), pixels, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 96))])
        coco["images"].append({"id": n, "file_name": name, "width": width, "height": height, "kind": kind,
                               "surround": surround, "background": photo, "distractors": with_distractors})
    (out / "ground_truth.json").write_text(json.dumps(coco, indent=1))
    return coco


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--files", type=int, default=36)
    parser.add_argument("--seed", type=int, default=2111)
    args = parser.parse_args()
    truth = generate(args.out, args.files, args.seed)
    kinds = [im["kind"] for im in truth["images"]]
    print(f"{len(kinds)} images ({kinds.count('empty')} empty, {kinds.count('flat')} flat), "
          f"{len(truth['annotations'])} objects → {args.out}")
