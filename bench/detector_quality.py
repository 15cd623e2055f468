"""How good and how fast the example detection task and the detection validators are.

1. The default ``start_task.sh`` (in the sandbox with the agent's python3) on two sets, side by side:
   the tuning set shipped in ``assets/data_annotator/`` (the one its thresholds were chosen on) and a
   held-out set generated at bench time by ``scripts/make_heldout_detection_set.py`` (real-photo
   backgrounds, dark and light surroundings, scale 0.42–2.4, ±30°, occlusion, distractors, empty and
   flat images; its own seed, never used for tuning). Per set: mAP@0.5, mAP@[.5:.95] and AP@0.5 per
   class (pycocotools COCOeval against the hidden truth), boxes on empty and on flat images, false
   boxes on images with distractors, seconds per megapixel (wall clock of the sandboxed run).
   ``--before REV`` runs the detector of git revision REV the same way, in the same run.
2. The validators on N simulated results (default 1,000: 70 % careful annotators — boxes within 2 px —,
   15 % sloppy — 40 % of the objects missed —, 15 % careless — 90 % missed, 2 invented boxes per
   image): results judged per second, read from disk as the creator agent reads them, and how many good
   results each accepts and bad ones it rejects. iou_consensus judges each result against two others
   of the same task (three annotators per task); gold_standard knows the truth of 8 of the 24 files.

    .venv/bin/python bench/detector_quality.py [--before REV] [--results 1000] [--skip-detector]
        [--skip-validators] [--heldout-files 36] [--heldout-seed 2111]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]

import numpy as np  # noqa: E402
from simulated_annotators import perturbed  # noqa: E402

from agents.box_agreement import boxes_from_coco, detection_scores, greedy_match, iou_matrix  # noqa: E402
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


def detector_run(work: Path, detect_py: Path, images: Path, truth: dict) -> dict:
    """One sandboxed run of ``start_task.sh`` with ``detect_py`` over ``images``, scored against ``truth``."""
    task = work / "task"
    shutil.rmtree(task, ignore_errors=True)
    shutil.copytree(ASSETS, task, ignore=shutil.ignore_patterns("annotation_files"))
    shutil.copytree(images, task / "annotation_files")
    shutil.copy(detect_py, task / "detect.py")
    (task / "task.json").write_text(json.dumps({"annotation_class_labels": "circle,square,triangle"}))
    megapixels = sum(im["width"] * im["height"] for im in truth["images"]) / 1e6
    started = time.perf_counter()
    report = asyncio.run(run_task_script(task, limits=SandboxLimits(timeout_s=600, share_python=True)))
    seconds = time.perf_counter() - started
    if report.status != "ok":
        raise SystemExit(f"start_task.sh failed: {report}")
    found = json.loads((task / "outputs" / "annotations_coco.json").read_text())
    scores = detection_scores(truth, found)
    return {"images": len(truth["images"]), "megapixels": round(megapixels, 2), "seconds": round(seconds, 1),
            "s_per_mp": round(seconds / megapixels, 2), "map50": round(scores["map50"], 3),
            "map50_95": round(scores["map50_95"], 3), **{f"ap50_{k}": round(v, 3) for k, v in scores["ap50"].items()},
            "boxes": len(found["annotations"]), "truth": len(truth["annotations"]), **false_boxes(truth, found),
            **recall_by_condition(truth, found)}


def condition(image: dict, annotation: dict) -> list[str]:
    """The held-out set's groups an object belongs to (none for the tuning set, which has no labels)."""
    if "scale" not in annotation:
        return []
    scale = annotation["scale"]
    size = ("scale<0.5" if scale < 0.5 else "scale 0.5-0.8" if scale < 0.8 else "scale 0.8-1.25" if scale <= 1.25
            else "scale 1.25-2" if scale <= 2 else "scale>2")
    return [f"surround {image['surround']}", size, "occluded" if annotation["occluded"] else "whole"]


def recall_by_condition(truth: dict, found: dict) -> dict:
    """Share of true boxes found (same class, IoU ≥ 0.5, COCO's greedy matching by score) per group."""
    images = {im["id"]: im for im in truth["images"]}
    true_labels = {c["id"]: c["name"] for c in truth["categories"]}
    found_boxes = boxes_from_coco(found)
    counts: dict[str, list[int]] = {}
    grouped: dict[tuple[str, str], list[dict]] = {}
    for a in truth["annotations"]:
        grouped.setdefault((images[a["image_id"]]["file_name"], true_labels[a["category_id"]]), []).append(a)
    for key, objects in grouped.items():
        rows = found_boxes.get(key, np.zeros((0, 5)))
        order = np.argsort(-rows[:, 4]) if len(rows) else np.zeros(0, int)
        true_rows = np.asarray([[*a["bbox"], 1.0] for a in objects], dtype=float)
        matched = {c for _, c in greedy_match(iou_matrix(rows, true_rows), 0.5, order)}
        for i, a in enumerate(objects):
            for group in condition(images[a["image_id"]], a):
                counts.setdefault(group, [0, 0])
                counts[group][0] += i in matched
                counts[group][1] += 1
    return {f"recall {group}": f"{hit}/{total}" for group, (hit, total) in sorted(counts.items())}


def false_boxes(truth: dict, found: dict) -> dict:
    """Boxes on images with nothing to find (by the held-out set's ``kind``), and boxes matching no true
    box (same class, IoU ≥ 0.5) on images with distractors."""
    by_name = {im["file_name"]: im for im in truth["images"]}
    names = {im["id"]: im["file_name"] for im in found["images"]}
    labels = {c["id"]: c["name"] for c in found["categories"]}
    true = boxes_from_coco(truth)
    counts = {"on_empty": 0, "on_flat": 0, "false_on_distractor_images": 0}
    if not any("kind" in im for im in truth["images"]):
        return {}
    for a in found["annotations"]:
        image = by_name.get(names[a["image_id"]], {})
        if image.get("kind") in ("empty", "flat"):
            counts[f"on_{image['kind']}"] += 1
        elif image.get("distractors"):
            rows = true.get((image["file_name"], labels[a["category_id"]]), np.zeros((0, 5)))
            if not (iou_matrix(np.asarray([[*a["bbox"], 1.0]], dtype=float), rows) >= 0.5).any():
                counts["false_on_distractor_images"] += 1
    kinds = [im.get("kind") for im in truth["images"]]
    return {**counts, "empty_images": kinds.count("empty"), "flat_images": kinds.count("flat")}


def detectors(work: Path, before: str | None, files: int, seed: int) -> None:
    """Before (the detector of git revision ``before``) and after, on the tuning and the held-out set."""
    from make_heldout_detection_set import generate

    versions = {"after": ASSETS / "detect.py"}
    if before:
        old = work / "before_detect.py"
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{before}:assets/data_annotator/detect.py"],
                               capture_output=True)
        if shown.returncode:
            raise SystemExit(f"--before {before}: no assets/data_annotator/detect.py at that git revision "
                             "(give a commit of this repository, e.g. cc8f160)")
        old.write_bytes(shown.stdout)
        versions = {"before": old, **versions}
    heldout = work / "heldout"
    sets = {"tuning": (ASSETS / "annotation_files", json.loads(TRUTH.read_text())),
            "held-out": (heldout / "images", generate(heldout, files, seed))}
    for set_name, (images, truth) in sets.items():
        for version, path in versions.items():
            row = {"set": set_name, "detector": version if version == "after" else f"before ({before})",
                   **detector_run(work, path, images, truth)}
            print("detector", json.dumps(row), flush=True)


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
    parser.add_argument("--before", metavar="REV", help="also run the detector of this git revision")
    parser.add_argument("--heldout-files", type=int, default=36)
    parser.add_argument("--heldout-seed", type=int, default=2111)
    parser.add_argument("--skip-detector", action="store_true")
    parser.add_argument("--skip-validators", action="store_true")
    args = parser.parse_args()
    truth = json.loads(TRUTH.read_text())
    task = Task(0, TaskStatus.IN_PROGRESS, TaskType.DATA_ANNOTATORS, "creator", 1, 3, 100, 1,
                ValidationStrategy.CUSTOM_ACCEPT, "q", annotation_class_labels="circle,square,triangle",
                annotation_files=[f"annotation_files/{im['file_name']}" for im in truth["images"]])
    print(f"# {platform.python_implementation()} {platform.python_version()}, {platform.machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_detector:
            detectors(work, args.before, args.heldout_files, args.heldout_seed)
        if args.skip_validators:
            return
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
