"""A model is its weights: a list of numpy arrays in pairs (W, b) per dense layer, ReLU between layers,
softmax at the end — softmax regression is one pair, a small MLP two. Stored as ``.npz`` (``arr_0``,
``arr_1``, …), read with ``allow_pickle=False`` so a hostile file cannot run code.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

Weights = list[np.ndarray]
MAX_ARRAYS = 64  # far more layers than a model shipped in a task has; bounds what a hostile file makes us read


class BadModel(ValueError):
    """A weights file that is not a model (unreadable, pickled objects, not in (W, b) pairs)."""


def save(path: str | Path, weights: Weights) -> None:
    """Write ``weights`` (deterministically: the same weights give the same bytes, so the same CID)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i, array in enumerate(weights):
            info = zipfile.ZipInfo(f"arr_{i}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(info, data.getvalue())
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


def load(path: str | Path) -> Weights:
    try:
        with np.load(path, allow_pickle=False) as data:
            names = sorted(data.files, key=lambda n: int(n.removeprefix("arr_")) if n[4:].isdigit() else -1)
            if not names or len(names) > MAX_ARRAYS or any(not n.startswith("arr_") for n in names):
                raise BadModel(f"expected arr_0 … arr_N (at most {MAX_ARRAYS}), found {sorted(data.files)[:5]}")
            return [data[n] for n in names]
    except BadModel:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BadModel(f"not a weights file: {type(exc).__name__}: {exc}"[:200]) from None


def forward(weights: Weights, x: np.ndarray) -> np.ndarray:
    """Logits of ``x`` (n × features)."""
    out = x
    for i in range(0, len(weights), 2):
        out = out @ weights[i] + weights[i + 1]
        if i + 2 < len(weights):
            out = np.maximum(out, 0)
    return out


def accuracy(weights: Weights, x: np.ndarray, y: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        return float(np.mean(np.argmax(forward(weights, x), axis=1) == y))


def softmax_regression(features: int, classes: int) -> Weights:
    """The initial model of the example campaign: zeros (every class equally likely, 10 % on digits)."""
    return [np.zeros((features, classes), np.float32), np.zeros(classes, np.float32)]


def size_bytes(weights: Weights) -> int:
    return int(sum(np.asarray(a).nbytes for a in weights))


def flat(weights: Weights) -> np.ndarray:
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in weights]) if weights else np.zeros(0)
