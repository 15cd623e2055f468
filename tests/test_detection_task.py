"""The example object-detection task, run as an agent runs it (sandbox, shared python3 + OpenCV):
COCO outputs per file and combined, mAP@0.5 ≥ 0.9 against the hidden ground truth, and an unreadable
image reported while the rest are still annotated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agents.box_agreement import mean_average_precision
from decentralml_core.sandbox import SandboxLimits, bubblewrap_works, run_task_script

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not bubblewrap_works(), reason="runs the task in the sandbox")


async def test_example_task_finds_the_samples(tmp_path):
    task = tmp_path / "task"
    shutil.copytree(ROOT / "assets" / "data_annotator", task)
    (task / "task.json").write_text(json.dumps({"annotation_class_labels": "circle,square,triangle"}))
    (task / "annotation_files" / "file_99.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    report = await run_task_script(task, limits=SandboxLimits(timeout_s=300, share_python=True))
    assert report.status == "ok", report
    outputs = task / "outputs"
    combined = json.loads((outputs / "annotations_coco.json").read_text())
    assert [c["name"] for c in combined["categories"]] == ["circle", "square", "triangle"]
    assert len(combined["images"]) == 24 and (outputs / "file_1_annotations.json").exists()
    assert json.loads((outputs / "errors.json").read_text()) == [{"file": "file_99.jpg",
                                                                  "error": "not a readable image"}]
    for annotation in combined["annotations"]:
        x, y, w, h = annotation["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 320 and y + h <= 240 and 0 < annotation["score"] <= 1
    truth = json.loads((ROOT / "assets" / "data_annotator_truth" / "ground_truth.json").read_text())
    map50, map_all = mean_average_precision(truth, combined)
    assert map50 >= 0.9, (map50, map_all)


async def test_class_coordinates_crop_a_sample_out_of_its_background(tmp_path):
    """A creator whose sample images show the object on a busy background says where it is; without
    that the detector takes the whole picture for the object and finds (almost) nothing."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(5)
    found = {}
    for run, coordinates in (("plain", None), ("cropped", {})):
        task = tmp_path / run
        shutil.copytree(ROOT / "assets" / "data_annotator", task)
        for image in (task / "annotation_files").iterdir():
            if image.name not in ("file_1.jpg", "file_2.jpg", "file_3.jpg"):
                image.unlink()
        for sample in (task / "annotation_samples").iterdir():
            pixels = cv2.imread(str(sample))
            busy = rng.integers(0, 255, (pixels.shape[0] + 40, pixels.shape[1] + 60, 3), dtype=np.uint8)
            busy[25:25 + pixels.shape[0], 30:30 + pixels.shape[1]] = pixels
            cv2.imwrite(str(sample), busy)
            if coordinates is not None:
                coordinates[sample.stem] = [30, 25, pixels.shape[1], pixels.shape[0]]
        (task / "task.json").write_text(json.dumps({
            "annotation_class_labels": "circle,square,triangle",
            "annotation_class_coordinates": json.dumps(coordinates) if coordinates else None}))
        report = await run_task_script(task, limits=SandboxLimits(timeout_s=300, share_python=True))
        assert report.status == "ok", report
        found[run] = json.loads((task / "outputs" / "annotations_coco.json").read_text())
    truth = json.loads((ROOT / "assets" / "data_annotator_truth" / "ground_truth.json").read_text())
    three = {**truth, "images": truth["images"][:3],
             "annotations": [a for a in truth["annotations"] if a["image_id"] <= 3]}
    assert mean_average_precision(three, found["cropped"])[0] >= 0.9
    assert mean_average_precision(three, found["plain"])[0] < 0.5

    bad = tmp_path / "cropped" / "task.json"
    bad.write_text(json.dumps({"annotation_class_coordinates": '{"circle": [0, 0, 9999, 5]}'}))
    report = await run_task_script(tmp_path / "cropped", limits=SandboxLimits(timeout_s=60, share_python=True))
    assert report.status != "ok", report
    assert "lies outside its sample image" in "".join(p.read_text() for p in tmp_path.rglob("stderr.log"))
