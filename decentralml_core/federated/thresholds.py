"""The model_update judge's thresholds, apart from the judge: the creator's config declares them as
defaults, and loading a config (every agent does at start) must not import numpy (~15 MB of an idle
annotator's RSS) for a role that never judges an update."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    max_drop: float = 0.6
    max_norm_ratio: float = 3.0
    max_cosine_distance: float = 0.7
    free_rider_ratio: float = 0.05  # change norm below this share of the median change's: no work done
    copy_distance: float = 1e-3  # relative distance between two changes below which one is a copy
    min_peers: int = 2
