"""A per-run cgroup (v1 pids + memory controllers, where this machine delegates them) as a backstop:
it caps processes and memory for the whole tree and lets us kill whatever a script left behind."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


class RunCgroup:
    def __init__(self, max_procs: int, memory_mb: int) -> None:
        self.dirs: list[Path] = []
        name = f"decentralml-{uuid.uuid4().hex[:12]}"
        for controller, settings in (("pids", {"pids.max": str(max_procs)}),
                                     ("memory", {"memory.limit_in_bytes": str(memory_mb * 1024 * 1024)})):
            base = ROOT / controller
            if not (base / "cgroup.procs").exists():
                continue
            path = base / name
            try:
                path.mkdir()
                for key, value in settings.items():
                    (path / key).write_text(value)
            except OSError:
                if path.exists():
                    path.rmdir()
                continue
            self.dirs.append(path)

    @property
    def active(self) -> bool:
        return bool(self.dirs)

    def join(self) -> None:
        """Move the calling process in (called in the child between fork and exec)."""
        for path in self.dirs:
            (path / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.dirs:
            try:
                found |= {int(p) for p in (path / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return found

    def peak_memory(self) -> int | None:
        for path in self.dirs:
            usage = path / "memory.max_usage_in_bytes"
            if usage.exists():
                return int(usage.read_text())
        return None

    def out_of_memory(self) -> bool:
        """Whether the kernel killed something in the group for reaching its memory limit."""
        for path in self.dirs:
            control = path / "memory.oom_control"
            if control.exists():
                fields = dict(line.split() for line in control.read_text().splitlines() if line.strip())
                return int(fields.get("oom_kill", 0)) > 0
        return False

    def kill_all_and_remove(self, wait_s: float = 5.0) -> int:
        """Kill every process still in the group and wait (up to ``wait_s``) until the group is empty
        and removed, so that nothing of the run is alive when this returns; how many were left running."""
        left: set[int] = set()
        deadline = time.monotonic() + wait_s
        while self.dirs and time.monotonic() < deadline:
            running = self.pids()
            left |= running
            for pid in running:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for path in list(self.dirs):
                try:
                    path.rmdir()  # refused while a process, even one being killed, is still in it
                    self.dirs.remove(path)
                except OSError:
                    pass
            if self.dirs:
                time.sleep(0.01)
        return len(left)
