"""What a contributor with private data lets leave its host: the trained weights (the shapes of the
task's own global model, so no room for a copy of the data set beside them) and a few numbers.

A task script is the creator's code and could copy ``/data`` into ``outputs/``; the worker checks the
outputs against this rule before publishing anything. Weights themselves can still carry information
about the data (any trained model does); that is what federated learning trades for not sending it.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import model

UPDATE, METRICS = "update.npz", "metrics.json"
GLOBAL = Path("model") / "global.npz"
MAX_METRICS_BYTES = 4096
NPZ_OVERHEAD = 4096  # zip and .npy headers around the arrays' bytes


def contribution_problem(task_dir: Path) -> str | None:
    """Why ``task_dir/outputs`` may not be uploaded from a host holding private data, or None."""
    outputs = task_dir / "outputs"
    names = sorted(p.relative_to(outputs).as_posix() for p in outputs.rglob("*"))
    if names != sorted([METRICS, UPDATE]):
        return f"outputs must be exactly {UPDATE} and {METRICS}, found {names[:6]}"
    try:
        reference = model.load(task_dir / GLOBAL)
    except (model.BadModel, FileNotFoundError):
        return f"the task has no readable {GLOBAL.as_posix()} to compare the update with"
    limit = model.size_bytes(reference) + NPZ_OVERHEAD
    if (outputs / UPDATE).stat().st_size > limit:
        return f"{UPDATE} is larger than the global model ({limit} bytes at most)"
    try:
        update = model.load(outputs / UPDATE)
    except model.BadModel as exc:
        return f"{UPDATE}: {exc}"
    if [a.shape for a in update] != [a.shape for a in reference]:
        return f"{UPDATE} does not have the global model's shapes"
    if (outputs / METRICS).stat().st_size > MAX_METRICS_BYTES:
        return f"{METRICS} is over {MAX_METRICS_BYTES} bytes"
    try:
        metrics = json.loads((outputs / METRICS).read_text())
    except (ValueError, UnicodeDecodeError, RecursionError):
        return f"{METRICS} is not JSON"
    if not isinstance(metrics, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()):
        return f"{METRICS} must map names to numbers"
    return None
