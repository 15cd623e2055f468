"""CustomAccept validators: a result's outputs (and the task, and other results of the same task) in, a
:class:`Verdict` out — accept, reject, or not yet decidable — with a short reason and scores that go
on chain with a rejection and into the journal.

Built-ins are named in the creator's YAML, with their parameters::

    validator: coco_schema
    validator: {name: iou_consensus, iou: 0.5, min_f1: 0.8, min_submissions: 2, wait_s: 600}
    validator: {name: gold_standard, truth: truth.json, min_precision: 0.9, min_recall: 0.9}
    validator: {name: model_update, validation: val.npz, global_model: global.npz, max_drop: 0.3}
    validator: {name: model_restructure, reference: model.npz, test: test.npz, max_bytes: 2000}

Any other validator is ``package.module:function`` taking ``(submission, folder)`` or ``(submission,
folder, task)`` and returning ``(accept, reason)``, a bool, or a :class:`Verdict`.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from decentralml_core.chain.model import Submission, Task
from decentralml_core.federated.thresholds import Thresholds

if TYPE_CHECKING:
    from .box_agreement import Boxes

COCO_FILE = "annotations_coco.json"
REASON_LIMIT = 1024  # the pallet's bound on a rejection reason


@dataclass(frozen=True)
class Verdict:
    accept: bool | None  # None: not decidable yet (e.g. waiting for more submissions)
    reason: str = ""
    scores: dict = field(default_factory=dict)
    reference: dict | None = None  # boxes judged against (consensus or ground truth), as COCO, for reviewers

    def for_chain(self) -> str:
        """The reason with its scores, as a rejection's on-chain text."""
        text = self.reason + (" " + json.dumps(self.scores, sort_keys=True, separators=(",", ":")) if self.scores else "")
        return text[:REASON_LIMIT]

    def record(self) -> dict:
        """What the journal keeps (and the review page shows)."""
        return {"accept": self.accept, "reason": self.reason, "scores": self.scores}


@dataclass(frozen=True)
class Evidence:
    submission: Submission
    folder: Path
    task: Task | None = None
    peers: tuple[tuple[Submission, Path], ...] = ()  # the task's other results, fetched (validators that ask)
    image_sizes: dict[str, tuple[int, int]] | None = None  # file name -> (width, height) of the creator's images


@dataclass(frozen=True)
class Validator:
    name: str
    check: Callable[[Evidence], Verdict]  # may also return an awaitable Verdict
    needs_peers: bool = False
    wait_s: float | None = None  # how long an undecidable result may wait
    on_timeout: str = "review"


# -- parameters, as the creator's YAML gives them ---------------------------------------------------------
class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CocoSchemaParams(_Params):
    """The COCO output parses, covers every file, keeps boxes inside their images, uses known labels."""

    name: Literal["coco_schema"] = Field(description="the validator")


class IouConsensusParams(_Params):
    """Accept a result when it agrees with the majority of the task's results (needs max_assignments ≥ 2)."""

    name: Literal["iou_consensus"] = Field(description="the validator")
    iou: float = Field(0.5, gt=0, le=1, description="IoU at which two boxes are the same object")
    min_f1: float = Field(0.8, ge=0, le=1, description="F1 against the consensus needed to accept")
    min_submissions: int = Field(2, ge=2, description="results needed before any decision")
    wait_s: float = Field(600, gt=0, description="seconds a result waits for enough agreeing results")
    on_timeout: Literal["review", "accept", "reject"] = Field(
        "review", description="after wait_s: leave it to a person (the review queue), accept, or reject")


class GoldStandardParams(_Params):
    """Accept a result when it finds the creator's hidden ground-truth boxes (some files suffice)."""

    name: Literal["gold_standard"] = Field(description="the validator")
    truth: Path = Field(..., description="COCO file with the true boxes of some annotation files (kept by the creator)")
    iou: float = Field(0.5, gt=0, le=1, description="IoU at which a box finds a true box")
    min_precision: float = Field(0.9, ge=0, le=1, description="share of the result's boxes that are true, to accept")
    min_recall: float = Field(0.9, ge=0, le=1, description="share of the true boxes the result finds, to accept")


class ModelUpdateParams(_Params):
    """A federated round's update: well formed, not a free rider or a copy, not worse than the global
    model on the creator's private validation set, not an outlier against the round's other updates."""

    name: Literal["model_update"] = Field(description="the validator")
    validation: Path = Field(..., description="the creator's private validation set (.npz with x and y)")
    global_model: Path | None = Field(None, description="the weights the round started from (.npz); a campaign "
                                                        "fills it in for each round")
    max_drop: float = Field(Thresholds.max_drop, ge=0, le=1,
                            description="reject below the global model's validation accuracy minus this")
    max_norm_ratio: float = Field(Thresholds.max_norm_ratio, gt=1,
                                  description="reject a change this many times the round's median norm (boosted)")
    max_cosine_distance: float = Field(Thresholds.max_cosine_distance, gt=0, le=2,
                                       description="reject a change this far from the round's median direction")
    free_rider_ratio: float = Field(Thresholds.free_rider_ratio, ge=0, lt=1,
                                    description="reject a change smaller than this share of the round's median")
    min_peers: int = Field(Thresholds.min_peers, ge=0, description="other updates needed for the "
                                                                         "robustness checks")
    wait_s: float = Field(120, gt=0, description="seconds an update waits for min_peers other updates")
    on_timeout: Literal["review", "accept", "reject"] = Field(
        "accept", description="after wait_s without enough peers: decide without the robustness checks "
                              "(accept), or leave it to a person, or reject")
    update_file: str = Field("update.npz", description="the result's weights file")

    def thresholds(self) -> Thresholds:
        return Thresholds(self.max_drop, self.max_norm_ratio, self.max_cosine_distance, self.free_rider_ratio,
                                min_peers=self.min_peers)


class ModelRestructureParams(_Params):
    """A model engineer's restructured model: within the size target, accuracy kept on the creator's test set."""

    name: Literal["model_restructure"] = Field(description="the validator")
    reference: Path = Field(..., description="the model the engineer was given (.npz weights)")
    test: Path = Field(..., description="the creator's private test set (.npz with x and y)")
    max_bytes: int = Field(..., gt=0, description="largest accepted model file, in bytes")
    max_drop: float = Field(0.02, ge=0, le=1, description="largest accepted loss of test accuracy")
    model_file: str = Field("model_int8.npz", description="the result's model file (int8 q_i/scale_i or arr_i)")


ValidatorParams = Annotated[CocoSchemaParams | IouConsensusParams | GoldStandardParams | ModelUpdateParams
                            | ModelRestructureParams, Field(discriminator="name")]


# -- the checks -----------------------------------------------------------------------------------------
def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def outputs_present(ev: Evidence) -> Verdict:
    return Verdict(True) if _files(ev.folder) else Verdict(False, "the result has no output files")


def json_outputs(ev: Evidence) -> Verdict:
    files = _files(ev.folder)
    if not files:
        return Verdict(False, "the result has no output files")
    for path in files:
        try:
            json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError, RecursionError):
            return Verdict(False, f"{path.relative_to(ev.folder)} is not JSON")
    return Verdict(True)


def read_coco(folder: Path, task: Task | None, sizes: dict[str, tuple[int, int]] | None = None) -> tuple[dict | None, str]:
    """``annotations_coco.json`` if it parses as COCO, covers every annotation file, declares the real
    size of each image in ``sizes`` (a result claiming 640×480 for a 320×240 image, its boxes doubled,
    would look aligned when drawn against its claim), keeps boxes inside their images and uses only the
    task's class labels; else None and why."""
    try:
        coco = json.loads((folder / COCO_FILE).read_text())
        images = {im["id"]: im for im in coco["images"]}
        categories = {c["id"]: c["name"] for c in coco["categories"]}
        annotations = coco["annotations"]
    except FileNotFoundError:
        return None, f"no {COCO_FILE}"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        return None, f"not COCO ({type(exc).__name__}: {exc})"[:200]
    labels = task.class_labels if task else []
    unknown = sorted(set(categories.values()) - set(labels)) if labels else []
    if unknown:
        return None, f"unknown categories {unknown}"
    if task is not None:
        expected = {Path(name).name for name in task.annotation_files}
        missing = sorted(expected - {im.get("file_name") for im in images.values()})
        if missing:
            return None, f"{len(missing)} files not annotated, e.g. {missing[0]}"
    for image in images.values():
        real = (sizes or {}).get(image.get("file_name"))
        if real is not None and (image.get("width"), image.get("height")) != real:
            return None, (f"{image['file_name']} declared {image.get('width')}x{image.get('height')}, "
                          f"the image is {real[0]}x{real[1]}")[:200]
    for a in annotations:
        image = images.get(a.get("image_id"))
        if image is None or a.get("category_id") not in categories:
            return None, f"annotation {a.get('id')} names an unknown image or category"
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            inside = w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= image["width"] and y + h <= image["height"]
        except (KeyError, TypeError, ValueError):
            return None, f"annotation {a.get('id')} has no [x, y, w, h] bbox in a sized image"
        if not inside:
            return None, f"annotation {a.get('id')} box outside {image['file_name']}"
    return coco, ""


def coco_schema(ev: Evidence) -> Verdict:
    coco, problem = read_coco(ev.folder, ev.task, ev.image_sizes)
    if coco is None:
        return Verdict(False, f"coco_schema: {problem}")
    return Verdict(True, "coco_schema: ok", {"images": len(coco["images"]), "boxes": len(coco["annotations"])})


def iou_consensus(params: IouConsensusParams) -> Validator:
    from .box_agreement import agreement, boxes_from_coco, boxes_to_coco, consensus, count_boxes

    def check(ev: Evidence) -> Verdict:
        mine, problem = read_coco(ev.folder, ev.task, ev.image_sizes)
        if mine is None:
            return Verdict(False, f"iou_consensus: {problem}")
        others = [coco for coco, _ in (read_coco(folder, ev.task, ev.image_sizes) for _, folder in ev.peers)
                  if coco is not None]
        results = [boxes_from_coco(mine)] + [boxes_from_coco(coco) for coco in others]
        n = len(results)
        if n < params.min_submissions:
            return Verdict(None, f"iou_consensus: {n} of {params.min_submissions} results so far", {"results": n})
        agreed = consensus(results, params.iou)
        f1s = [agreement(agreed, boxes, params.iou).f1 for boxes in results]
        agreeing = sum(f >= params.min_f1 for f in f1s)
        scores = {"f1": round(f1s[0], 3), "results": n, "agreeing": agreeing, "consensus_boxes": count_boxes(agreed)}
        reference = boxes_to_coco(agreed)
        if agreeing < 2:  # nobody corroborates anybody yet: a tie, wait for another result
            return Verdict(None, f"iou_consensus: no two of {n} results agree yet", scores, reference)
        verb = "reaches" if f1s[0] >= params.min_f1 else "is below"
        return Verdict(f1s[0] >= params.min_f1, f"iou_consensus: F1 {f1s[0]:.2f} {verb} {params.min_f1} "
                       f"against the consensus of {n}", scores, reference)

    return Validator("iou_consensus", check, needs_peers=True, wait_s=params.wait_s, on_timeout=params.on_timeout)


@lru_cache(maxsize=8)
def _truth(path: Path, mtime: float) -> Boxes:
    from .box_agreement import boxes_from_coco

    return boxes_from_coco(json.loads(path.read_text()))


def gold_standard(params: GoldStandardParams) -> Validator:
    from .box_agreement import agreement, boxes_from_coco, boxes_to_coco

    json.loads(params.truth.read_text())["images"]  # fail at start-up, not at the first result

    def check(ev: Evidence) -> Verdict:
        mine, problem = read_coco(ev.folder, ev.task, ev.image_sizes)
        if mine is None:
            return Verdict(False, f"gold_standard: {problem}")
        submitted = {im["file_name"] for im in mine["images"]}
        truth = {key: rows for key, rows in _truth(params.truth, params.truth.stat().st_mtime).items()
                 if key[0] in submitted}
        checked = {file for file, _ in truth}
        if not checked:
            return Verdict(None, "gold_standard: none of the result's files has ground truth")
        found = agreement(truth, boxes_from_coco(mine, files=checked), params.iou)
        scores = {"precision": round(found.precision, 3), "recall": round(found.recall, 3), "files": len(checked)}
        ok = found.precision >= params.min_precision and found.recall >= params.min_recall
        verb = "reach" if ok else "miss"
        return Verdict(ok, f"gold_standard: precision {found.precision:.2f} recall {found.recall:.2f} {verb} "
                       f"{params.min_precision}/{params.min_recall} on {len(checked)} files", scores,
                       boxes_to_coco(truth))

    return Validator("gold_standard", check)


@lru_cache(maxsize=16)
def _arrays(path: Path, mtime: float, kind: str):
    """A data set (x, y) or a model's weights from the creator's own files, read once per version."""
    from decentralml_core.federated import digits, model

    return digits.load_xy(path) if kind == "xy" else model.load(path)


def _own(path: Path, kind: str):
    return _arrays(path, path.stat().st_mtime, kind)


def _num_examples(folder: Path) -> int | str:
    """The example count a contributor reports, or why it is unusable."""
    try:
        count = json.loads((folder / "metrics.json").read_text())["num_examples"]
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        return f"metrics.json has no num_examples ({type(exc).__name__})"
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return f"metrics.json: num_examples {count!r} is not a positive integer"
    return count


def _sent_order(submission: Submission) -> tuple[int, int]:
    return (submission.submitted_block or 0, submission.submission_id)


def model_update(params: ModelUpdateParams) -> Validator:
    from decentralml_core.federated import judge, model

    if params.global_model is None:
        raise ValueError("model_update needs global_model (campaigns set it for each round)")
    _own(params.validation, "xy"), _own(params.global_model, "weights")  # fail at start-up, not at a result

    def check(ev: Evidence) -> Verdict:
        try:
            update = model.load(ev.folder / params.update_file)
        except model.BadModel as exc:
            return Verdict(False, f"model_update: {params.update_file}: {exc}"[:300])
        examples = _num_examples(ev.folder)
        if isinstance(examples, str):
            return Verdict(False, f"model_update: {examples}")
        peers = []
        for sub, folder in ev.peers:
            try:
                weights = model.load(folder / params.update_file)
            except model.BadModel:
                continue
            peers.append(judge.Peer(f"submission {sub.submission_id}", weights,
                                    _sent_order(sub) < _sent_order(ev.submission)))
        found = judge.judge(update, _own(params.global_model, "weights"), _own(params.validation, "xy"), peers,
                            params.thresholds())
        return Verdict(found.accept, f"model_update: {found.reason}", {**found.scores, "examples": examples})

    return Validator("model_update", check, needs_peers=True, wait_s=params.wait_s, on_timeout=params.on_timeout)


def model_restructure(params: ModelRestructureParams) -> Validator:
    from decentralml_core.federated import model, restructure

    _own(params.reference, "weights"), _own(params.test, "xy")

    def check(ev: Evidence) -> Verdict:
        path = ev.folder / params.model_file
        try:
            candidate, size = restructure.load_restructured(path), path.stat().st_size
        except (model.BadModel, OSError) as exc:
            return Verdict(False, f"model_restructure: {params.model_file}: {exc}"[:300])
        found = restructure.check(candidate, size, _own(params.reference, "weights"), _own(params.test, "xy"),
                                  params.max_drop, params.max_bytes)
        return Verdict(found.accept, f"model_restructure: {found.reason}", found.scores)

    return Validator("model_restructure", check)


SIMPLE = {"outputs_present": outputs_present, "json_outputs": json_outputs, "coco_schema": coco_schema}
BUILDERS = {"iou_consensus": iou_consensus, "gold_standard": gold_standard, "model_update": model_update,
            "model_restructure": model_restructure}


def load_validator(spec: str | BaseModel) -> Validator:
    """A built-in (by name, or its parameters) or ``package.module:function``."""
    if isinstance(spec, BaseModel):
        name = spec.name
        return BUILDERS[name](spec) if name in BUILDERS else Validator(name, SIMPLE[name])
    if spec in SIMPLE:
        return Validator(spec, SIMPLE[spec])
    if spec in BUILDERS:
        raise ValueError(f"validator {spec!r} takes parameters: validator: {{name: {spec}, ...}}")
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"validator {spec!r}: use a built-in ({', '.join([*SIMPLE, *BUILDERS])}) "
                         "or package.module:function")
    fn = getattr(importlib.import_module(module), attr)
    takes_task = len(inspect.signature(fn).parameters) >= 3

    async def check(ev: Evidence) -> Verdict:
        verdict = fn(ev.submission, ev.folder, ev.task) if takes_task else fn(ev.submission, ev.folder)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if isinstance(verdict, Verdict):
            return verdict
        return Verdict(*verdict) if isinstance(verdict, tuple) else Verdict(bool(verdict))

    return Validator(spec, check)
