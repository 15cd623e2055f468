"""What a task script may use. Safe defaults; every one configurable per agent (YAML)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 600.0
    cpu_s: int = 600
    memory_mb: int = 2048
    max_procs: int = 128
    max_file_mb: int = 512
    max_output_mb: int = 1024
    max_output_files: int = 10_000
    tmp_mb: int = 256
    disk_mb: int = 2048
    """How much the task dir may grow during a run (files of any size, checked by a watchdog)."""
    max_entries: int = 100_000
    """How many files and folders the task dir may gain during a run (an inode fill)."""
    min_free_disk_mb: int = 256
    """Stop the run if the work dir's file system gets this full: the agent's journal lives there too."""
    share_python: bool = False
    """Bind the agent's Python and its packages read-only, first on PATH: scripts may use numpy etc."""
