"""Untrusted task scripts, run isolated with limits; see :mod:`.runner` (loaded on first use, PEP 562)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .limits import SandboxLimits

__all__ = ["PreparedRun", "SandboxLimits", "SandboxReport", "SandboxUnavailable", "bubblewrap_works", "prepare_task_run",
           "run_task_script"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(".runner", __name__), name)


if TYPE_CHECKING:
    from .runner import (
        PreparedRun,
        SandboxReport,
        SandboxUnavailable,
        bubblewrap_works,
        prepare_task_run,
        run_task_script,
    )
