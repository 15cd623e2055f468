"""CustomAccept validators on real outputs folders: COCO from the example task's ground truth, perturbed
the way real annotators err (jitter, missed objects, invented boxes, nothing at all)."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import numpy as np
import pytest
from simulated_annotators import perturbed

from agents.box_agreement import agreement, boxes_from_coco, consensus
from agents.config import ConfigError, load_config
from agents.validators import (
    Evidence,
    GoldStandardParams,
    IouConsensusParams,
    Verdict,
    coco_schema,
    load_validator,
)
from decentralml_core.chain.model import Submission, SubmissionStatus, Task, TaskStatus, TaskType, ValidationStrategy

ROOT = Path(__file__).resolve().parents[1]
TRUTH = ROOT / "assets" / "data_annotator_truth" / "ground_truth.json"


def submission(sid: int = 0) -> Submission:
    return Submission(sid, 0, f"worker{sid}", 1, SubmissionStatus.PENDING_VALIDATION)


def task(labels: str = "circle,square", files=("annotation_files/a.jpg", "annotation_files/b.jpg")) -> Task:
    return Task(0, TaskStatus.IN_PROGRESS, TaskType.DATA_ANNOTATORS, "creator", 1000, 1, 100, 1,
                ValidationStrategy.CUSTOM_ACCEPT, "q", annotation_files=list(files), annotation_class_labels=labels)


def outputs(folder: Path, **changes) -> Path:
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                       {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}],
            "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]}
    coco.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "annotations_coco.json").write_text(json.dumps(coco))
    return folder


def test_coco_schema_accepts_a_complete_result(tmp_path):
    verdict = coco_schema(Evidence(submission(), outputs(tmp_path), task()))
    assert verdict == Verdict(True, "coco_schema: ok", {"images": 2, "boxes": 1})



def test_coco_schema_rejects_declared_sizes_that_are_not_the_images(tmp_path):
    """A worker claims 200x160 for its 100x80 images and doubles every box: drawn against the claim the
    boxes look aligned. The sizes come from the creator's own image files, and the lie is refused."""
    import cv2

    from agents.images import asset_image_sizes

    assets = tmp_path / "assets"
    (assets / "annotation_files").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(assets / "annotation_files" / name), np.full((80, 100, 3), 128, np.uint8))
    sizes = asset_image_sizes(assets, task().annotation_files)
    assert sizes == {"a.jpg": (100, 80), "b.jpg": (100, 80)}
    honest = coco_schema(Evidence(submission(), outputs(tmp_path / "honest"), task(), image_sizes=sizes))
    assert honest.accept is True
    doubled = outputs(tmp_path / "liar", images=[{"id": 1, "file_name": "a.jpg", "width": 200, "height": 160},
                                                 {"id": 2, "file_name": "b.jpg", "width": 200, "height": 160}],
                      annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 20, 40, 40]}])
    assert coco_schema(Evidence(submission(), doubled, task())).accept is True  # what it passed before
    verdict = coco_schema(Evidence(submission(), doubled, task(), image_sizes=sizes))
    assert verdict == Verdict(False, "coco_schema: a.jpg declared 200x160, the image is 100x80")

def test_coco_schema_refusals(tmp_path):
    cases = [
        ({"annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [90, 10, 20, 20]}]}, "box outside"),
        ({"annotations": [{"id": 7, "image_id": 9, "category_id": 1, "bbox": [1, 1, 2, 2]}]}, "unknown image"),
        ({"annotations": [{"id": 7, "image_id": 1, "category_id": 1}]}, "no [x, y, w, h]"),
        ({"categories": [{"id": 1, "name": "dog"}]}, "unknown categories ['dog']"),
        ({"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}]}, "1 files not annotated"),
        ({"images": "nope"}, "not COCO"),
    ]
    for changes, reason in cases:
        verdict = coco_schema(Evidence(submission(), outputs(tmp_path, **changes), task()))
        assert verdict.accept is False and reason in verdict.reason, (changes, verdict)
        assert len(verdict.reason) <= 200
    (tmp_path / "annotations_coco.json").unlink()
    assert coco_schema(Evidence(submission(), tmp_path, task())).reason == "coco_schema: no annotations_coco.json"


def test_module_validators_get_the_task_if_they_take_it_and_may_return_a_tuple(tmp_path):
    validator = load_validator("decentralml_core.work:assets_of")  # (task) only: wrong shape, still loads
    assert validator.name == "decentralml_core.work:assets_of"
    three = load_validator("tests_validator_module:three_args")
    two = load_validator("tests_validator_module:two_args")
    ev = Evidence(submission(), outputs(tmp_path), task())
    assert asyncio.run(three.check(ev)) == Verdict(False, "labels circle,square")
    assert asyncio.run(two.check(ev)) == Verdict(True)
    assert load_validator("coco_schema").check is coco_schema
    with pytest.raises(ValueError, match="takes parameters"):
        load_validator("iou_consensus")


# -- the detection example's ground truth, as annotators of varying quality would submit it ---------------
def ground_truth() -> dict:
    return json.loads(TRUTH.read_text())


def detection_task(coco: dict) -> Task:
    files = [f"annotation_files/{im['file_name']}" for im in coco["images"]]
    labels = ",".join(c["name"] for c in coco["categories"])
    return task(labels=labels, files=files)


def folders(tmp_path: Path, *docs: dict) -> list[Path]:
    paths = []
    for i, doc in enumerate(docs):
        paths.append(tmp_path / f"result-{i}")
        paths[-1].mkdir(parents=True)
        (paths[-1] / "annotations_coco.json").write_text(json.dumps(doc))
    return paths


def judge(validator, paths: list[Path], the_task: Task, who: int) -> Verdict:
    peers = tuple((submission(i), p) for i, p in enumerate(paths) if i != who)
    return validator.check(Evidence(submission(who), paths[who], the_task, peers))


def test_box_agreement_matches_like_coco():
    truth = boxes_from_coco(ground_truth())
    assert agreement(truth, truth).f1 == 1.0
    shifted = {k: v + np.array([0, 0, 0, 0, 0]) for k, v in truth.items()}
    for rows in shifted.values():
        rows[:, 0] += rows[:, 2] * 0.7  # IoU of a box with itself moved by 70 % of its width: < 0.5
    moved = agreement(truth, shifted)
    assert moved.true_positives == 0 and moved.false_positives == moved.false_negatives > 50
    assert agreement({}, {}).f1 == 1.0
    # two of three agree on every box: the consensus is the truth (within the jitter)
    rng = random.Random(1)
    a, b = (boxes_from_coco(perturbed(ground_truth(), rng)) for _ in range(2))
    garbage = boxes_from_coco(perturbed(ground_truth(), rng, drop=1.0, invent=3))
    agreed = consensus([a, garbage, b])
    assert agreement(truth, agreed).f1 == 1.0


def test_iou_consensus_waits_for_agreement_then_decides_each_result(tmp_path):
    rng = random.Random(7)
    truth = ground_truth()
    the_task = detection_task(truth)
    good1, good2 = perturbed(truth, rng), perturbed(truth, rng)
    empty = {**truth, "annotations": []}
    garbage = perturbed(truth, rng, drop=0.8, invent=2)
    validator = load_validator(IouConsensusParams(name="iou_consensus", min_f1=0.8))
    assert validator.needs_peers and validator.wait_s == 600 and validator.on_timeout == "review"

    alone = judge(validator, folders(tmp_path / "1", good1), the_task, 0)
    assert alone.accept is None and alone.reason == "iou_consensus: 1 of 2 results so far"

    tie = folders(tmp_path / "2", good1, empty)
    for who in (0, 1):  # one found everything, one nothing: nobody can tell who is right yet
        verdict = judge(validator, tie, the_task, who)
        assert verdict.accept is None and "no two of 2 results agree" in verdict.reason

    three = folders(tmp_path / "3", good1, garbage, good2)
    verdicts = [judge(validator, three, the_task, who) for who in range(3)]
    assert [v.accept for v in verdicts] == [True, False, True]
    assert verdicts[0].scores["f1"] == 1.0 and verdicts[0].scores["agreeing"] == 2
    assert verdicts[1].scores["f1"] < 0.5 and "is below 0.8 against the consensus of 3" in verdicts[1].reason
    on_chain = verdicts[1].for_chain()
    assert on_chain.startswith("iou_consensus: F1 ") and json.loads(on_chain[on_chain.index("{"):])["results"] == 3
    assert len(verdicts[0].reference["annotations"]) == len(truth["annotations"])

    broken = folders(tmp_path / "4", {"images": 1}, good1)
    assert judge(validator, broken, the_task, 0).accept is False  # a result that is not COCO is refused at once
    assert judge(validator, broken, the_task, 1).accept is None  # and is no evidence for the others


def test_gold_standard_scores_precision_and_recall_on_the_hidden_files(tmp_path):
    rng = random.Random(3)
    truth = ground_truth()
    hidden = {**truth, "images": truth["images"][:5],
              "annotations": [a for a in truth["annotations"] if a["image_id"] <= 5]}
    (tmp_path / "truth.json").write_text(json.dumps(hidden))
    validator = load_validator(GoldStandardParams(name="gold_standard", truth=tmp_path / "truth.json"))
    the_task = detection_task(truth)
    good, sloppy, inventive = folders(tmp_path, perturbed(truth, rng), perturbed(truth, rng, drop=0.5),
                                      perturbed(truth, rng, invent=2))
    ok = judge(validator, [good], the_task, 0)
    assert ok.accept is True and ok.scores == {"precision": 1.0, "recall": 1.0, "files": 5}
    missed = judge(validator, [sloppy], the_task, 0)
    assert missed.accept is False and missed.scores["recall"] < 0.8 and "miss 0.9/0.9 on 5 files" in missed.reason
    invented = judge(validator, [inventive], the_task, 0)
    assert invented.accept is False and invented.scores["precision"] < 0.7 and invented.scores["recall"] == 1.0
    assert len(ok.reference["images"]) == 5


def test_validator_parameters_from_yaml_name_their_key(tmp_path):
    def config(validator) -> Path:
        path = tmp_path / "creator.yaml"
        path.write_text(json.dumps({"role": "creator", "key": {"dev": "Alice"}, "state_dir": "state", "tasks": [
            {"name": "t", "assets": "assets", "question": "q", "pays": 1, "strategy": "CustomAccept",
             "validator": validator}]}))
        return path

    loaded = load_config(config({"name": "gold_standard", "truth": "truth.json", "min_recall": 0.5}))
    assert loaded.tasks[0].validator.truth == tmp_path / "truth.json"  # relative to the YAML file
    assert loaded.tasks[0].validator.min_recall == 0.5
    assert load_config(config({"name": "iou_consensus"})).tasks[0].validator.min_f1 == 0.8
    with pytest.raises(ConfigError, match=r"tasks\.0\.validator.*min_f1"):
        load_config(config({"name": "iou_consensus", "min_f1": 2}))
    with pytest.raises(ConfigError, match="tasks.0.validator"):
        load_config(config({"name": "iou_consensus", "quorum": 3}))


def test_model_task_assets_are_any_cid_but_not_a_plain_path():
    from decentralml_core.storage.cid import cid_of
    from decentralml_core.work import assets_of

    def engineer(path):
        return Task(0, TaskStatus.CREATED, TaskType.MODEL_ENGINEER, "c", 1000, 1, 100, 1,
                    ValidationStrategy.AUTO_ACCEPT, "q", model_engineer_path=path)

    dag = cid_of(b"node", codec="dag-pb")
    assert dag.startswith("bafybei") and assets_of(engineer(dag)) == (dag, "start_task.sh")
    assert assets_of(engineer("models/model.pt")) is None
