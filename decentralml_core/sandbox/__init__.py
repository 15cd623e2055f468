"""Untrusted task scripts, run isolated with limits; see :mod:`.runner`."""

from .limits import SandboxLimits
from .runner import SandboxReport, SandboxUnavailable, bubblewrap_works, run_task_script

__all__ = ["SandboxLimits", "SandboxReport", "SandboxUnavailable", "bubblewrap_works", "run_task_script"]
