"""The held-out detection set is what the benchmark's honesty rests on: written apart from the tuning
set's generator (nothing imported from it), reproducible from its seed, with every true box inside
its image and the conditions the benchmark breaks recall down by."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from make_heldout_detection_set import generate  # noqa: E402


def test_the_heldout_generator_imports_nothing_from_the_tuning_generator():
    tree = ast.parse((ROOT / "scripts" / "make_heldout_detection_set.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not any("make_detection_assets" in name for name in imported), imported


def test_the_heldout_set_is_reproducible_and_its_truth_consistent(tmp_path):
    first = generate(tmp_path / "a", files=6, seed=2111)
    second = generate(tmp_path / "b", files=6, seed=2111)
    other = generate(tmp_path / "c", files=6, seed=2112)
    assert first == second and first != other
    assert json.loads((tmp_path / "a" / "ground_truth.json").read_text()) == first
    assert [c["name"] for c in first["categories"]] == ["circle", "square", "triangle"]
    sizes = {}
    for image in first["images"]:
        pixels = cv2.imread(str(tmp_path / "a" / "images" / image["file_name"]))
        assert pixels.shape == (image["height"], image["width"], 3)
        assert image["kind"] in ("objects", "empty", "flat") and image["surround"] in ("dark", "light", "photo", "flat")
        sizes[image["id"]] = (image["width"], image["height"])
    assert first["annotations"], "six images and not one object"
    for a in first["annotations"]:
        x, y, w, h = a["bbox"]
        width, height = sizes[a["image_id"]]
        assert x >= 0 and y >= 0 and x + w <= width and y + h <= height and w > 0 and h > 0
        assert 0.42 <= a["scale"] <= 2.4 and -30 <= a["angle"] <= 30 and isinstance(a["occluded"], bool)
