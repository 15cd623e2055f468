"""CustomAccept validators on real outputs folders: the example detection's COCO and broken variants."""

from __future__ import annotations

import json
from pathlib import Path

from agents.validators import coco_schema, load_validator
from decentralml_core.chain.model import Submission, SubmissionStatus, Task, TaskStatus, TaskType, ValidationStrategy

SUBMISSION = Submission(0, 0, "worker", 1, SubmissionStatus.PENDING_VALIDATION)


def task(labels: str = "circle,square", files=("annotation_files/a.jpg", "annotation_files/b.jpg")) -> Task:
    return Task(0, TaskStatus.IN_PROGRESS, TaskType.DATA_ANNOTATORS, "creator", 1000, 1, 100, 1,
                ValidationStrategy.CUSTOM_ACCEPT, "q", annotation_files=list(files), annotation_class_labels=labels)


def outputs(tmp_path: Path, **changes) -> Path:
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                       {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}],
            "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]}
    coco.update(changes)
    (tmp_path / "annotations_coco.json").write_text(json.dumps(coco))
    return tmp_path


def test_coco_schema_accepts_a_complete_result(tmp_path):
    ok, reason = coco_schema(SUBMISSION, outputs(tmp_path), task())
    assert ok and reason == "coco_schema: 2 images, 1 boxes"


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
        ok, why = coco_schema(SUBMISSION, outputs(tmp_path, **changes), task())
        assert not ok and reason in why, (changes, why)
        assert len(why) <= 200
    (tmp_path / "annotations_coco.json").unlink()
    assert coco_schema(SUBMISSION, tmp_path, task()) == (False, "coco_schema: no annotations_coco.json")


def test_module_validators_get_the_task_if_they_take_it(tmp_path):
    two = load_validator("agents.validators:outputs_present")
    assert two(SUBMISSION, outputs(tmp_path), task()) == (True, "")
    assert load_validator("coco_schema") is coco_schema


def test_model_task_assets_are_any_cid_but_not_a_plain_path():
    from decentralml_core.storage.cid import cid_of
    from decentralml_core.work import assets_of

    def engineer(path):
        return Task(0, TaskStatus.CREATED, TaskType.MODEL_ENGINEER, "c", 1000, 1, 100, 1,
                    ValidationStrategy.AUTO_ACCEPT, "q", model_engineer_path=path)

    dag = cid_of(b"node", codec="dag-pb")
    assert dag.startswith("bafybei") and assets_of(engineer(dag)) == (dag, "start_task.sh")
    assert assets_of(engineer("models/model.pt")) is None
