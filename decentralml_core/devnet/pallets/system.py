"""frame_system's user calls: remarks (the upstream-node fallback records verdicts with them)."""

from __future__ import annotations

from ..hashing import blake2_256
from .base import Env, Origin, PalletCall, signed


def remark(env: Env, origin: Origin, *, remark: bytes) -> None:
    signed(origin)


def remark_with_event(env: Env, origin: Origin, *, remark: bytes) -> None:
    env.deposit_event("System", "Remarked", {"sender": signed(origin), "hash": blake2_256(remark)})


CALLS: dict[tuple[str, str], PalletCall] = {("System", "remark"): remark, ("System", "remark_with_event"): remark_with_event}
