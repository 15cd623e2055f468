"""A per-run cgroup (v1 pids + memory controllers, where this machine delegates them) as a backstop:
it caps processes and memory for the whole tree and lets us kill whatever a script left behind.

A group is named after the agent that made it (``decentralml-<pid>-<random>``). An agent killed during a
run (SIGKILL, OOM, a node reboot of the container) cannot remove its groups; the next agent to make one on
this host removes the empty groups of agents that are gone (101 had piled up on our CI machine after a day
of fault-injection runs). A live agent's groups are never touched, even the moment between making one and
moving its script in."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ..processes import pid_alive

ROOT = Path("/sys/fs/cgroup")
PREFIX = "decentralml-"
_swept = False


def sweep_stale_groups(root: Path = ROOT, legacy_age_s: float = 3600.0) -> int:
    """Remove the empty run groups of agents no longer alive; how many were removed. A group still
    holding a process is left alone (``rmdir`` refuses it). One named before groups carried their agent's
    pid is removed once empty and older than ``legacy_age_s``: a run's group is empty only for the
    milliseconds before its script joins it."""
    removed = 0
    now = time.time()
    for controller in ("pids", "memory"):
        try:
            groups = list((root / controller).glob(PREFIX + "*"))
        except OSError:
            continue
        for group in groups:
            owner, named_by_pid, _ = group.name.removeprefix(PREFIX).partition("-")
            try:
                if named_by_pid and owner.isdigit():
                    if pid_alive(int(owner)):
                        continue
                elif now - group.stat().st_mtime < legacy_age_s:
                    continue
                group.rmdir()
                removed += 1
            except OSError:
                pass
    return removed


class RunCgroup:
    def __init__(self, max_procs: int, memory_mb: int) -> None:
        global _swept
        if not _swept:
            _swept = True
            sweep_stale_groups()
        self.dirs: list[Path] = []
        name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
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
        return self._count("memory.oom_control", "oom_kill") > 0

    def process_limit_reached(self) -> bool:
        """Whether a fork in the group was refused for reaching ``pids.max`` (``pids.events``: max N)."""
        return self._count("pids.events", "max") > 0

    def _count(self, name: str, key: str) -> int:
        """``key``'s number in the group's ``name`` file of ``key value`` lines (0 where there is none)."""
        for path in self.dirs:
            counters = path / name
            if counters.exists():
                fields = dict(line.split() for line in counters.read_text().splitlines() if line.strip())
                return int(fields.get(key, 0))
        return 0

    def remove_if_empty(self) -> bool:
        """Remove the group at once if no process is left in it (a run's usual end); False if one is, or a
        directory would not go: then :meth:`kill_all_and_remove`, which may wait, off the event loop."""
        return not self.pids() and self._remove_dirs()

    def _remove_dirs(self) -> bool:
        """Remove the group's directories that will go (the kernel refuses one while a process, even one
        being killed, is still in it); whether none is left."""
        for path in list(self.dirs):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass  # already gone
            except OSError:
                continue
            self.dirs.remove(path)
        return not self.dirs

    def kill_all_and_remove(self, wait_s: float = 5.0, machinery: Callable[[int], bool] | None = None) -> int:
        """Kill every process still in the group and wait (up to ``wait_s``) until the group is empty
        and removed, so that nothing of the run is alive when this returns; how many were left running,
        not counting those ``machinery`` names the sandbox's own (still exiting after the script's end)."""
        left: set[int] = set()
        deadline = time.monotonic() + wait_s
        while self.dirs and time.monotonic() < deadline:
            running = self.pids()
            left |= {pid for pid in running - left if machinery is None or not machinery(pid)}
            for pid in running:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not self._remove_dirs():
                time.sleep(0.01)
        return len(left)
