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
    share_python: bool = False
    """Bind the agent's Python and its packages read-only, first on PATH: scripts may use numpy etc."""
