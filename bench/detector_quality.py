"""How good and how fast the example detection task and the detection validators are.

1. The default ``start_task.sh`` (OpenCV template matching, in the sandbox with the agent's python3) on
   the generated set: mAP@0.5 and mAP@[.5:.95] against the hidden ground truth (pycocotools COCOeval),
   seconds per image.
2. The validators on N simulated results (default 1,000: 70 % careful annotators — boxes within 2 px —,
   15 % sloppy — 40 % of the objects missed —, 15 % careless — 90 % missed, 2 invented boxes per
   image): results judged per second, read from disk as the creator agent reads them, and how many good
   results each accepts and bad ones it rejects. iou_consensus judges each result against two others
   of the same task (three annotators per task); gold_standard knows the truth of 8 of the 24 files.

    .venv/bin/python bench/detector_quality.py [--results 1000] [--skip-detector]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from simulated_annotators import perturbed  # noqa: E402

from agents.box_agreement import mean_average_precision  # noqa: E402
from agents.validators import (  # noqa: E402
    Evidence,
    GoldStandardParams,
    IouConsensusParams,
    coco_schema,
    load_validator,
)
from decentralml_core.chain.model import (  # noqa: E402
    Submission,
    SubmissionStatus,
    Task,
    TaskStatus,
    TaskType,
    ValidationStrategy,
)
from decentralml_core.sandbox import SandboxLimits, run_task_script  # noqa: E402

ASSETS = ROOT / "assets" / "data_annotator"
TRUTH = ROOT / "assets" / "data_annotator_truth" / "ground_truth.json"
KINDS = {"careful": (0.70, {"jitter": 2}), "sloppy": (0.15, {"drop": 0.4}), "careless": (0.15, {"drop": 0.9, "invent": 2})}


def detector(work: Path) -> dict:
    task = work / "task"
    shutil.copytree(ASSETS, task)
    (task / "task.json").write_text(json.dumps({"annotation_class_labels": "circle,square,triangle"}))
    images = len(list((task / "annotation_files").iterdir()))
    started = time.perf_counter()
    report = asyncio.run(run_task_script(task, limits=SandboxLimits(timeout_s=600, share_python=True)))
    seconds = time.perf_counter() - started
    if report.status != "ok":
        raise SystemExit(f"start_task.sh failed: {report}")
    found = json.loads((task / "outputs" / "annotations_coco.json").read_text())
    map50, map_all = mean_average_precision(json.loads(TRUTH.read_text()), found)
    return {"images": images, "seconds": round(seconds, 1), "s_per_image": round(seconds / images, 2),
            "map50": round(map50, 3), "map50_95": round(map_all, 3), "boxes": len(found["annotations"])}


def simulated_results(work: Path, n: int, seed: int = 1) -> list[tuple[str, Path]]:
    truth = json.loads(TRUTH.read_text())
    rng = random.Random(seed)
    kinds = [kind for kind, (share, _) in KINDS.items() for _ in range(round(share * n))][:n]
    rng.shuffle(kinds)
    results = []
    for i, kind in enumerate(kinds):
        folder = work / "results" / f"r{i}"
        folder.mkdir(parents=True)
        (folder / "annotations_coco.json").write_text(json.dumps(perturbed(truth, rng, **KINDS[kind][1])))
        results.append((kind, folder))
    return results


def judge_all(name: str, validator, results: list[tuple[str, Path]], task: Task, peers_per_task: int = 0) -> dict:
    verdicts = {kind: {"accepted": 0, "rejected": 0, "undecided": 0} for kind in KINDS}
    started = time.perf_counter()
    for i, (kind, folder) in enumerate(results):
        group = i - i % (peers_per_task + 1)
        peers = tuple((Submission(j, 0, "w", 1, SubmissionStatus.PENDING_VALIDATION), results[j][1])
                      for j in range(group, min(group + peers_per_task + 1, len(results))) if j != i)
        verdict = validator(Evidence(Submission(i, 0, "w", 1, SubmissionStatus.PENDING_VALIDATION), folder, task, peers))
        verdicts[kind][{True: "accepted", False: "rejected", None: "undecided"}[verdict.accept]] += 1
    seconds = time.perf_counter() - started
    return {"validator": name, "results": len(results), "seconds": round(seconds, 2),
            "per_s": round(len(results) / seconds), "verdicts": verdicts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=int, default=1000)
    parser.add_argument("--skip-detector", action="store_true")
    args = parser.parse_args()
    truth = json.loads(TRUTH.read_text())
    task = Task(0, TaskStatus.IN_PROGRESS, TaskType.DATA_ANNOTATORS, "creator", 1, 3, 100, 1,
                ValidationStrategy.CUSTOM_ACCEPT, "q", annotation_class_labels="circle,square,triangle",
                annotation_files=[f"annotation_files/{im['file_name']}" for im in truth["images"]])
    print(f"# {platform.python_implementation()} {platform.python_version()}, {platform.machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_detector:
            print("detector", json.dumps(detector(work)))
        gold = work / "gold.json"
        kept = {im["id"] for im in truth["images"][:8]}
        gold.write_text(json.dumps({**truth, "images": [im for im in truth["images"] if im["id"] in kept],
                                    "annotations": [a for a in truth["annotations"] if a["image_id"] in kept]}))
        results = simulated_results(work, args.results)
        consensus = load_validator(IouConsensusParams(name="iou_consensus"))
        gold_standard = load_validator(GoldStandardParams(name="gold_standard", truth=gold))
        for row in (judge_all("coco_schema", coco_schema, results, task),
                    judge_all("gold_standard", gold_standard.check, results, task),
                    judge_all("iou_consensus (3 per task)", consensus.check, results, task, peers_per_task=2)):
            print("validator", json.dumps(row))


if __name__ == "__main__":
    main()
