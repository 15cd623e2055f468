"""frame_system's user calls: remarks (the upstream-node fallback records verdicts with them)."""

from __future__ import annotations

from ..hashing import blake2_256
from .base import signed


def remark(env, origin, *, remark: bytes) -> None:
    signed(origin)


def remark_with_event(env, origin, *, remark: bytes) -> None:
    env.deposit_event("System", "Remarked", {"sender": signed(origin), "hash": blake2_256(remark)})


CALLS = {("System", "remark"): remark, ("System", "remark_with_event"): remark_with_event}
