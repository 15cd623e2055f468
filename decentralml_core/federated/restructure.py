"""Model engineering: a smaller model toward a declared target (int8 weights, or pruned), and the check
a creator runs before paying for one — accuracy drop on its private test set and size in bytes.

An int8 model is stored as, per array, ``q_i`` (int8) and ``scale_i`` (one float32): weight = q × scale
(symmetric per-array quantisation). A pruned or plain float model is stored like any other model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import model
from .model import BadModel, Weights


def load_restructured(path: str | Path) -> Weights:
    """Weights of an int8 file (``q_i``, ``scale_i``) or of a plain weights file (``arr_i``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            names = set(data.files)
            if "q_0" not in names:
                return model.load(path)
            count = sum(1 for n in names if n.startswith("q_"))
            if count > model.MAX_ARRAYS:
                raise BadModel(f"{count} arrays: more than {model.MAX_ARRAYS}")
            return [data[f"q_{i}"].astype(np.float32) * np.float32(data[f"scale_{i}"]) for i in range(count)]
    except BadModel:
        raise
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise BadModel(f"not a restructured model: {type(exc).__name__}: {exc}"[:200]) from None


@dataclass(frozen=True)
class Check:
    accept: bool
    reason: str
    scores: dict[str, Any]


def check(candidate: Weights, size: int, reference: Weights, test: tuple[np.ndarray, np.ndarray],
          max_drop: float, max_bytes: int) -> Check:
    """The candidate against the creator's own model: same shapes, finite, accuracy drop and size."""
    from .judge import form_problem

    problem = form_problem(candidate, reference)
    if problem:
        return Check(False, problem, {})
    x, y = test
    before, after = model.accuracy(reference, x, y), model.accuracy(candidate, x, y)
    scores = {"test_acc": round(after, 4), "reference_acc": round(before, 4), "bytes": size, "max_bytes": max_bytes}
    if size > max_bytes:
        return Check(False, f"too large: {size} bytes > {max_bytes}", scores)
    if after < before - max_drop:
        return Check(False, f"accuracy dropped: {after:.3f} < {before:.3f} - {max_drop}", scores)
    return Check(True, f"within target: {size} bytes ≤ {max_bytes}, accuracy {after:.3f} (was {before:.3f})", scores)
