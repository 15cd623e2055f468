"""Federate the accepted updates of a round into the next global model with Flower's aggregation
functions (``flwr.server.strategy.aggregate``): FedAvg weighted by example count, coordinate-wise
median, trimmed mean (Yin et al. 2018), Krum / Multi-Krum (Blanchard et al. 2017).

Flower is imported on first use: its import costs about 0.8 s of CPU, which an agent that never
aggregates (a worker) should not pay.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .model import Weights

Rule = Literal["fedavg", "fedmedian", "trimmed_mean", "krum"]
RULES: tuple[str, ...] = ("fedavg", "fedmedian", "trimmed_mean", "krum")


def aggregate(updates: list[tuple[Weights, int]], rule: Rule = "fedavg", trim: float = 0.2,
              num_malicious: int = 1, to_keep: int = 0) -> Weights:
    """The next global weights from ``(weights, example count)`` pairs (at least one)."""
    from flwr.server.strategy import aggregate as flower

    if not updates:
        raise ValueError("nothing to aggregate")
    dtypes = [np.asarray(a).dtype for a in updates[0][0]]
    updates = [([np.asarray(a, np.float64) for a in w], max(int(n), 1)) for w, n in updates]
    if rule == "fedavg":
        merged = flower.aggregate(updates)
    elif rule == "fedmedian":
        merged = flower.aggregate_median(updates)
    elif rule == "trimmed_mean":
        merged = flower.aggregate_trimmed_avg(updates, trim)
    elif rule == "krum":
        merged = flower.aggregate_krum(updates, num_malicious, to_keep)
    else:
        raise ValueError(f"unknown aggregation {rule!r}: one of {', '.join(RULES)}")
    return [np.asarray(a).astype(d) for a, d in zip(merged, dtypes, strict=True)]
