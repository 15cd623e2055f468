"""What a task script may use. Safe defaults; every one configurable per agent (YAML ``sandbox``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import setting


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = setting(600.0, "wall-clock limit; the script is killed after", gt=0)
    cpu_s: int = setting(600, "CPU-time limit (RLIMIT_CPU)", gt=0)
    memory_mb: int = setting(2048, "memory limit (cgroup, else address space)", gt=0)
    max_procs: int = setting(128, "processes and threads the script may run", gt=0)
    max_file_mb: int = setting(512, "largest file the script may write", gt=0)
    max_output_mb: int = setting(1024, "total size of outputs/ accepted", gt=0)
    max_output_files: int = setting(10_000, "files and folders outputs/ may hold", gt=0)
    tmp_mb: int = setting(256, "size of the script's private /tmp (a tmpfs)", gt=0)
    disk_mb: int = setting(2048, "how much a run may grow its task dir, files of any size (watchdog)", gt=0)
    max_entries: int = setting(100_000, "how many files and folders the task dir may gain during a run "
                                        "(an inode fill; watchdog)", gt=0)
    min_free_disk_mb: int = setting(256, "stop a run that leaves less free space on the work dir's disk "
                                         "(the agent's journal lives there too)", ge=0)
    nice: int = setting(10, "CPU priority of the script (nice 0-19): the higher, the more a busy script leaves "
                            "the agent (and the host's other work) their share of the CPU", ge=0, le=19)
    share_python: bool = setting(False, "scripts may run the agent's python3 and its packages (numpy), "
                                        "bound read-only, first on PATH")
