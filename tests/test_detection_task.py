"""The example object-detection task, run as an agent runs it (sandbox, shared python3 + OpenCV):
COCO outputs per file and combined, mAP@0.5 ≥ 0.9 against the hidden ground truth, and an unreadable
image reported while the rest are still annotated."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from decentralml_core.sandbox import SandboxLimits, bubblewrap_works, run_task_script

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not bubblewrap_works(), reason="runs the task in the sandbox")


def mean_ap(ground_truth: Path, outputs: dict) -> tuple[float, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ground_truth))
        ids = {im["file_name"]: im["id"] for im in gt.dataset["images"]}
        names = {im["id"]: im["file_name"] for im in outputs["images"]}
        found = [{**a, "image_id": ids[names[a["image_id"]]]} for a in outputs["annotations"]]
        evaluation = COCOeval(gt, gt.loadRes(found), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats[1], evaluation.stats[0]


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
    map50, map_all = mean_ap(ROOT / "assets" / "data_annotator_truth" / "ground_truth.json", combined)
    assert map50 >= 0.9, (map50, map_all)
