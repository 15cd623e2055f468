"""The example data: scikit-learn's ``load_digits`` (1,797 real 8×8 handwritten digits, shipped inside
the wheel: nothing downloaded), pixels scaled to [0, 1], split into the creator's held-out sets and
non-IID shares for the contributors (a Dirichlet draw of each class over contributors, as the
federated-learning literature does; α = 1 gives each contributor every class in unequal amounts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FEATURES, CLASSES = 64, 10


@dataclass(frozen=True)
class Split:
    validation: tuple[np.ndarray, np.ndarray]  # the creator's, to judge updates
    test: tuple[np.ndarray, np.ndarray]  # the creator's, to report the global model's accuracy
    shares: list[tuple[np.ndarray, np.ndarray]]  # one per contributor, private


def load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


def split(contributors: int, alpha: float = 1.0, seed: int = 0, validation: int = 200, test: int = 300) -> Split:
    x, y = load()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    held = validation + test
    rest_x, rest_y = x[held:], y[held:]
    owner = np.empty(len(rest_y), np.int64)
    for label in range(CLASSES):
        where = np.flatnonzero(rest_y == label)
        cuts = (np.cumsum(rng.dirichlet([alpha] * contributors)) * len(where)).astype(int)[:-1]
        for who, part in enumerate(np.split(where, cuts)):
            owner[part] = who
    shares = [(rest_x[owner == c], rest_y[owner == c]) for c in range(contributors)]
    return Split((x[:validation], y[:validation]), (x[validation:held], y[validation:held]), shares)


def save_xy(path: str | Path, xy: tuple[np.ndarray, np.ndarray]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=xy[0], y=xy[1])


def load_xy(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return data["x"], data["y"]


def write_example(folder: str | Path, contributors: int = 4, alpha: float = 1.0, seed: int = 0,
                  flipped: tuple[int, ...] = ()) -> dict[str, Path]:
    """The example campaign's files: ``creator/validation.npz`` and ``creator/test.npz`` (the creator's
    private sets) and ``contributor-N/train.npz`` (each contributor's private share); the shares in
    ``flipped`` get labels 9 − y, a label-flipping contributor for demos and tests."""
    folder = Path(folder)
    parts = split(contributors, alpha, seed)
    paths = {"validation": folder / "creator" / "validation.npz", "test": folder / "creator" / "test.npz"}
    save_xy(paths["validation"], parts.validation)
    save_xy(paths["test"], parts.test)
    for i, (x, y) in enumerate(parts.shares):
        paths[f"contributor-{i}"] = folder / f"contributor-{i}"
        save_xy(folder / f"contributor-{i}" / "train.npz", (x, (CLASSES - 1 - y) if i in flipped else y))
    return paths
