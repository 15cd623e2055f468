"""The example campaign's pieces for tests and benchmarks: digits split non-IID, the example training
script (imported from its asset folder, the code contributors run), and the attacks a validator must
meet — label flipping, a boosted update, noise, a free rider, a copy, NaN weights, a wrong shape."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from decentralml_core.federated import digits, model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "assets" / "federated_digits" / "script"
ENGINEER = ROOT / "assets" / "model_engineer"


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_script = load_module(SCRIPT / "train.py", "federated_train")
quantize_script = load_module(ENGINEER / "quantize.py", "engineer_quantize")


def train(weights, xy, epochs=2, lr=0.5, seed=0):
    return train_script.train(weights, xy[0], xy[1], epochs, lr, 32, seed)[0]


def attack(kind: str, global_weights, share, honest, rng_seed: int = 7):
    """One malicious contributor's update of kind ``kind`` (``honest``: another's honest update)."""
    rng = np.random.default_rng(rng_seed)
    if kind == "label_flipping":
        return train(global_weights, (share[0], 9 - share[1]))
    if kind == "boosted":
        return [g + 10 * (u - g) for u, g in zip(train(global_weights, share), global_weights, strict=True)]
    if kind == "noise":
        return [g + rng.normal(0, 0.3, g.shape).astype(np.float32) for g in global_weights]
    if kind == "free_rider":
        return [g.copy() for g in global_weights]
    if kind == "copy":
        return [h.copy() for h in honest]
    if kind == "nan":
        bad = train(global_weights, share)
        bad[0][3, 4] = np.nan
        return bad
    if kind == "wrong_shape":
        return [np.zeros((64, 9), np.float32), np.zeros(9, np.float32)]
    raise ValueError(kind)


ATTACKS = ("label_flipping", "boosted", "noise", "free_rider", "copy", "nan", "wrong_shape")


def initial():
    return model.softmax_regression(digits.FEATURES, digits.CLASSES)
