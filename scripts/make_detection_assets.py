"""Generate the object-detection example task, reproducibly (seeded).

Writes ``assets/data_annotator/annotation_samples/<label>.jpg`` (one sample per class) and
``annotation_files/file_N.jpg`` (the samples pasted on varied backgrounds with scale, rotation, partial
occlusion, noise and lighting changes), and the ground truth in COCO format to
``assets/data_annotator_truth/ground_truth.json`` — outside the assets folder, so it is never shipped
to annotators (it serves gold-standard checks and benchmarks).

    python scripts/make_detection_assets.py [--files 24] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("circle", "square", "triangle")
SIZE = 40  # sample side, pixels
WIDTH, HEIGHT = 320, 240


def sample(label: str) -> tuple[np.ndarray, np.ndarray]:
    """A textured shape on white, and its mask."""
    img = np.full((SIZE, SIZE, 3), 255, np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    color = {"circle": (40, 40, 210), "square": (200, 60, 30), "triangle": (40, 170, 40)}[label]
    if label == "circle":
        cv2.circle(mask, (SIZE // 2, SIZE // 2), SIZE // 2 - 3, 255, -1)
    elif label == "square":
        cv2.rectangle(mask, (4, 4), (SIZE - 5, SIZE - 5), 255, -1)
    else:
        cv2.fillPoly(mask, [np.array([(SIZE // 2, 3), (SIZE - 4, SIZE - 4), (3, SIZE - 4)])], 255)
    img[mask > 0] = color
    # a texture that makes each class distinctive: stripes, a dot, a bar
    if label == "circle":
        cv2.circle(img, (SIZE // 2, SIZE // 2), 6, (255, 255, 255), -1)
    elif label == "square":
        for x in range(8, SIZE - 8, 8):
            cv2.line(img, (x, 6), (x, SIZE - 7), (255, 230, 80), 2)
    else:
        cv2.line(img, (SIZE // 2 - 8, SIZE - 12), (SIZE // 2 + 8, SIZE - 12), (255, 255, 255), 3)
    img[mask == 0] = 255
    return img, mask


def background(rng: np.random.Generator) -> np.ndarray:
    top, bottom = rng.integers(120, 256, 3), rng.integers(60, 220, 3)
    ramp = np.linspace(0, 1, HEIGHT)[:, None, None]
    bg = (top * (1 - ramp) + bottom * ramp).repeat(WIDTH, axis=1).astype(np.float32)
    for _ in range(int(rng.integers(3, 8))):  # clutter
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        p = (int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT)))
        cv2.ellipse(bg, p, (int(rng.integers(10, 50)), int(rng.integers(5, 30))), float(rng.integers(0, 180)),
                    0, 360, c, -1)
    return bg


def place(bg: np.ndarray, img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, taken: list):
    """Paste a scaled, rotated sample where it overlaps nothing placed; returns its bbox or None."""
    scale, angle = float(rng.uniform(0.8, 1.25)), float(rng.uniform(-15, 15))
    side = int(round(SIZE * scale * 1.3))
    m = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle, scale)
    m[:, 2] += (side - SIZE) / 2
    obj = cv2.warpAffine(img, m, (side, side), borderValue=(255, 255, 255))
    msk = cv2.warpAffine(mask, m, (side, side), flags=cv2.INTER_NEAREST)
    ys, xs = np.nonzero(msk)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    obj, msk = obj[y0:y1, x0:x1], msk[y0:y1, x0:x1]
    h, w = msk.shape
    for _ in range(50):
        x, y = int(rng.integers(0, WIDTH - w)), int(rng.integers(0, HEIGHT - h))
        box = (x, y, w, h)
        if all(x + w + 4 < bx or bx + bw + 4 < x or y + h + 4 < by or by + bh + 4 < y for bx, by, bw, bh in taken):
            region = bg[y:y + h, x:x + w]
            region[msk > 0] = obj[msk > 0]
            taken.append(box)
            return box
    return None


def generate(files: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    assets, truth_dir = ROOT / "assets" / "data_annotator", ROOT / "assets" / "data_annotator_truth"
    for sub in ("annotation_files", "annotation_samples"):
        (assets / sub).mkdir(parents=True, exist_ok=True)
        for old in (assets / sub).glob("*.jpg"):
            old.unlink()
    truth_dir.mkdir(exist_ok=True)
    samples = {label: sample(label) for label in LABELS}
    for label, (img, _) in samples.items():
        cv2.imwrite(str(assets / "annotation_samples" / f"{label}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(LABELS)]}
    for n in range(1, files + 1):
        bg, taken = background(rng), []
        for _ in range(int(rng.integers(2, 6))):
            label = LABELS[int(rng.integers(0, len(LABELS)))]
            box = place(bg, *samples[label], rng, taken)
            if box is None:
                continue
            if rng.random() < 0.25:  # partial occlusion of up to a fifth of the object
                x, y, w, h = box
                ow, oh = max(2, int(w * 0.45)), max(2, int(h * 0.45))
                bg[y:y + oh, x:x + ow] = rng.integers(60, 200, 3)
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": n,
                                        "category_id": LABELS.index(label) + 1, "bbox": [int(v) for v in box],
                                        "area": int(box[2] * box[3]), "iscrowd": 0})
        gain = float(rng.uniform(0.75, 1.2))  # lighting
        noisy = np.clip(bg * gain + rng.normal(0, 6, bg.shape), 0, 255).astype(np.uint8)
        name = f"file_{n}.jpg"
        cv2.imwrite(str(assets / "annotation_files" / name), noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])
        coco["images"].append({"id": n, "file_name": name, "width": WIDTH, "height": HEIGHT})
    (truth_dir / "ground_truth.json").write_text(json.dumps(coco, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    generate(args.files, args.seed)
