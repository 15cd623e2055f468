"""What came of one run of a task script, decided from what was observed of it — pure, no processes.

The spawning edge (:mod:`.runner`) records an :class:`Observed`: the exit status, whether the clock or
the disk watchdog stopped the run, whether the memory cgroup hit its limit, the tail of stderr. Here
that becomes a status (``ok | failed | timeout | killed``) and the error lines a worker reports, and the
files the script left in ``outputs/`` are judged; so every rule is tested without bubblewrap.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass

from .limits import SandboxLimits

OUTPUTS = "outputs"


@dataclass(frozen=True)
class Observed:
    """One run as the spawning edge saw it."""

    exit_code: int | None
    isolated: bool  # under bubblewrap: a signal arrives as exit status 128 + its number
    stopped: str | None = None  # "timeout" (the clock) or "killed" (the watchdog) when the run was stopped
    stop_reason: str = ""  # the clock's or the watchdog's words
    out_of_memory: bool = False  # the run's memory cgroup reached its limit
    process_limit: bool = False  # the run's pids cgroup refused a fork
    stderr_tail: str = ""


def signal_of(code: int | None, isolated: bool) -> signal.Signals | None:
    """The signal that ended the script: a negative status, or bwrap's 128 + signal number."""
    number = -code if code is not None and code < 0 else (code - 128 if isolated and code and code > 128 else None)
    try:
        return None if number is None else signal.Signals(number)
    except ValueError:
        return None


def classify(script: str, limits: SandboxLimits, run: Observed) -> tuple[str, list[str]]:
    """(status, errors) of a run: stopped by the clock or the watchdog, ended by a signal, a non-zero exit,
    or ok; a run that failed at its memory limit says so first, and one that failed for want of the agent's
    python3 says how to allow it."""
    status, errors = "ok", []
    if run.stopped is not None:
        status = run.stopped
        errors.append(run.stop_reason)
    signum = signal_of(run.exit_code, run.isolated)
    if status == "ok" and signum is not None:
        status = "killed"
        errors.append(f"killed by signal {signum.name}")
        if signum == signal.SIGXFSZ:
            errors.append(f"a write passed the file-size limit ({limits.max_file_mb} MB, max_file_mb)")
    elif status == "ok" and run.exit_code:
        status = "failed"
        errors.append(f"{script} exited with {run.exit_code}")
    if status in ("killed", "failed") and run.out_of_memory:
        errors.insert(0, f"memory limit reached ({limits.memory_mb} MB, memory_mb)")
    if status != "ok" and run.process_limit:  # a fork storm ends as a timeout or as a shell that could not fork
        errors.append(f"process limit reached ({limits.max_procs} processes, max_procs)")
    tail = run.stderr_tail
    if status != "ok" and not limits.share_python and ("python3: not found" in tail or "No module named" in tail):
        errors.append("the script needs the agent's python3 and packages: allow them with --share-python "
                      "(sandbox.share_python: true)")
    return status, errors


def cut_short(outputs: Sequence[tuple[str, int]], limits: SandboxLimits) -> str | None:
    """Why the outputs (name, size) of a run that exited 0 are no result, or None.

    A write stopped by RLIMIT_FSIZE leaves a file exactly at the limit, and the script may go on to exit 0:
    that file is cut short, never a result."""
    cap = limits.max_file_mb * 1024 * 1024
    cut = [name for name, size in outputs if size >= cap]
    if not cut:
        return None
    return f"{OUTPUTS}/{cut[0]} reached the file-size limit ({limits.max_file_mb} MB, max_file_mb): it was cut short"
