"""Run a task's script as untrusted code and report what came of it.

Isolation (bubblewrap): no network (own namespaces), read-only ``/usr``, nothing else of the host,
only the task dir writable, a size-limited ``/tmp``, scrubbed environment, an unprivileged uid with no
capabilities, its own pid namespace (the whole tree dies with it). Around it: rlimits (CPU, file
size, open files, no core), a per-run cgroup for processes and memory where delegated, a wall-clock
timeout that kills the process group, and a disk watchdog (the task dir's growth in bytes and
entries, the file system's free space) that kills a run filling the disk. Outputs count only as regular
files in ``outputs/``.

A worker's private data (a model contributor's training set) is bound read-only at ``/data``
(``$DECENTRALML_DATA``): the script reads it where it runs, nothing copies it into the task dir.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from ..storage.errors import StorageError
from ..storage.safety import safe_name, walk_folder
from .cgroup import RunCgroup
from .limits import SandboxLimits
from .outcome import OUTPUTS, Observed, classify, cut_short

log = structlog.get_logger(__name__)
INNER = "/task"
DATA = "/data"
DISK_CHECK_S = 0.5
STDERR_TAIL = 2048
"""Bytes of the script's stderr kept in its report: the last traceback or error line fits; a flood does not."""


class SandboxUnavailable(RuntimeError):
    """No isolation on this machine, and running untrusted scripts without it was not allowed."""


@dataclass
class SandboxReport:
    status: str  # ok | failed | timeout | killed | rejected
    exit_code: int | None
    outputs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    peak_memory_mb: float | None = None
    leftover_processes: int = 0
    isolation: str = "bubblewrap"
    stderr_tail: str = ""  # the last STDERR_TAIL bytes the script wrote to stderr: why it failed, in its words

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def bubblewrap_works() -> bool:
    """Whether bwrap exists and may create namespaces here (some container hosts refuse)."""
    if shutil.which("bwrap") is None:
        return False
    try:
        probe = subprocess.run(["bwrap", "--unshare-all", "--unshare-user", "--die-with-parent", "--ro-bind", "/usr",
                                "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
                                "--symlink", "usr/lib64", "/lib64", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def is_bubblewrap(pid: int) -> bool:
    """Whether ``pid`` is bubblewrap itself, not the script: the process bubblewrap forks into the new pid
    namespace can still be exiting in the run's cgroup when the outer one has returned (2 runs of 60, a
    clean script on 2 busy cores, were reported with ``leftover_processes: 1``, that process, in state R).
    It is killed with the group all the same; only the count passes it over. A script that names itself
    ``bwrap`` only hides from this count, never from the kill."""
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip() == "bwrap"
    except OSError:
        return False  # gone already, or unreadable: counted, as any process of the run


WAIT_FOR_GO = 'printf r >&0 && read -r go <&0 && [ "$go" = go ] || exit 125; exec sh "$0" </dev/null'
"""A prepared sandbox's first command (``sh -c``, the script's name as ``$0``): tell the host the sandbox is set
up (``r`` on the socket that is its stdin), wait for ``go``, then become ``sh script`` with stdin from
``/dev/null`` — the socket is gone before the script runs, so the script cannot write back to the host. Without
``go`` (the host discarded the run) it ends with 125 and the script never starts."""


def bwrap_argv(task_dir: Path, script: str, limits: SandboxLimits, data_dir: Path | None = None,
               waits: bool = False) -> list[str]:
    """bubblewrap's command line running ``sh script`` in ``task_dir``; ``waits``: behind :data:`WAIT_FOR_GO`."""
    path = "/usr/local/bin:/usr/bin:/bin"
    shared: list[str] = []
    if limits.share_python:
        for prefix in dict.fromkeys((sys.base_prefix, sys.prefix)):
            if not prefix.startswith("/usr"):
                shared += ["--ro-bind", prefix, prefix]
        path = f"{sys.prefix}/bin:{path}"
    argv = ["bwrap", "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
            "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL", "--clearenv",
            "--setenv", "PATH", path, "--setenv", "HOME", INNER,
            "--setenv", "LANG", "C.UTF-8", "--setenv", "TMPDIR", "/tmp",
            "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if Path("/usr", link).exists():
            argv += ["--symlink", f"usr/{link}", f"/{link}"]
    for etc in ("/etc/alternatives", "/etc/ld.so.cache", "/etc/ssl/certs", "/etc/localtime"):
        if Path(etc).exists():
            argv += ["--ro-bind", etc, etc]
    argv += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.tmp_mb * 1024 * 1024), "--tmpfs", "/tmp"]
    argv += shared  # after /tmp's tmpfs, which would hide a Python that lives under /tmp
    if data_dir is not None:
        argv += ["--ro-bind", str(data_dir), DATA, "--setenv", "DECENTRALML_DATA", DATA]
    argv += ["--bind", str(task_dir), INNER, "--chdir", INNER, "--remount-ro", "/", "--disable-userns"]
    return argv + (["sh", "-c", WAIT_FOR_GO, script] if waits else ["sh", script])


def limited(argv: list[str], limits: SandboxLimits, cgroup: RunCgroup | None) -> list[str]:
    """``argv`` started by ``sh`` after it joined the run's cgroup and set the rlimits, then exec'd.

    Before, a Python ``preexec_fn`` did this in the child, which makes ``subprocess`` fork the whole agent
    (its page tables, then copy-on-write faults while the child runs Python) instead of vfork-ing it:
    a sandboxed run from a 100 MB process took 159 ms median, 84 ms through ``sh`` (tiny script, 30 runs
    each, alternating, loaded machine). ``set -e``: a limit that cannot be set stops the run before
    the script starts. ``ulimit -f`` counts 512-byte blocks, ``-v`` KiB.

    The script runs at ``nice`` (10 by default): on 2 cores a script that keeps every core busy (a
    training run, a hostile busy loop) otherwise takes an equal share from the agent, whose heartbeats,
    chain following and other tasks must go on; at nice 10 the kernel gives the agent ~9 parts in 10 of
    a contended core."""
    steps = ["set -e"]
    steps += [f"echo $$ > {shlex.quote(str(path / 'cgroup.procs'))}" for path in (cgroup.dirs if cgroup else [])]
    steps += [f"ulimit -S -t {limits.cpu_s}", f"ulimit -H -t {limits.cpu_s + 5}",
              f"ulimit -f {limits.max_file_mb * 2048}", "ulimit -n 1024", "ulimit -c 0"]
    if cgroup is None or not cgroup.active:  # no memory cgroup: cap the address space instead
        steps.append(f"ulimit -v {limits.memory_mb * 1024}")
    program = argv[0] if os.path.isabs(argv[0]) else shutil.which(argv[0]) or argv[0]
    nice = shutil.which("nice") if limits.nice else None
    lowered = [nice, "-n", str(limits.nice)] if nice else []  # a busy script leaves the agent its CPU share
    return ["/bin/sh", "-c", "; ".join(steps) + '; exec "$@"', "sh", *lowered, program, *argv[1:]]


async def run_task_script(task_dir: str | Path, script: str = "start_task.sh", limits: SandboxLimits = SandboxLimits(),
                          allow_unsandboxed: bool = False, data_dir: str | Path | None = None) -> SandboxReport:
    """Run ``sh script`` in ``task_dir`` under the sandbox; never raises for what the script does.
    ``data_dir``: a folder the script may read (only) at ``/data``. A sandbox started and run at once: a caller
    with other work to do first starts it earlier with :func:`prepare_task_run`."""
    return await PreparedRun(task_dir, script, limits, allow_unsandboxed, data_dir, ahead=False).run()


async def prepare_task_run(task_dir: str | Path, script: str = "start_task.sh", limits: SandboxLimits = SandboxLimits(),
                           allow_unsandboxed: bool = False, data_dir: str | Path | None = None) -> PreparedRun:
    """The sandbox for ``sh script`` in ``task_dir``, started now and waiting: :meth:`PreparedRun.run` runs the
    script in it, :meth:`PreparedRun.discard` ends it unused. Raises :class:`SandboxUnavailable` as
    :func:`run_task_script` does; the script itself is checked when it is run, not here."""
    prepared = PreparedRun(task_dir, script, limits, allow_unsandboxed, data_dir)
    await prepared.start()
    return prepared


def _refusal(task_dir: Path, script: str) -> SandboxReport | None:
    """A report refusing the run if ``script`` or ``outputs`` is not what a run may use; None if they are."""
    path = task_dir / script
    if path.is_symlink() or not path.is_file():
        return SandboxReport("rejected", None, errors=[f"{script} is not a regular file in the task dir"])
    if (task_dir / OUTPUTS).is_symlink():
        return SandboxReport("rejected", None, errors=["outputs is a symlink"])
    return None


class PreparedRun:
    """A sandbox started ahead of its script: bubblewrap's namespaces and mounts set up, its first process
    waiting (:data:`WAIT_FOR_GO`) to become ``sh script``.

    Why: a sandbox's start is work the script does not need to wait for. On a quiet machine it is 12-22 ms
    over a bare ``sh``; while a farm keeps the 2 cores busy, 24-35 ms (``bench/farm.py``, issue 18), every
    step of it (our ``sh`` and ``nice``, bubblewrap's clone, namespaces and mounts) waiting for a core.
    Started while the worker still has its own steps to take (the ``fetched`` journal row, the deadline's
    read, the task's parameters), what is left on the task's path is a byte on a socket, the exec of
    ``sh`` and the end of the run: 1.4-1.9 ms over a bare ``sh`` on a quiet machine and 0.1-3.8 ms while
    the farm runs (medians, 17 farm runs, ``docs/benchmarks.md``).

    What a run measures and limits (its wall clock, timeout, disk watchdog) starts at :meth:`run`; the
    run's cgroup and rlimits are in force from the start, while the sandbox waits using no CPU. A
    prepared run never used is ended by :meth:`discard`; if the agent dies, ``--die-with-parent`` ends
    it, and its cgroup is swept at the next start (``cgroup.sweep_stale_groups``). Without bubblewrap
    (``allow_unsandboxed``), or not ``ahead`` (:func:`run_task_script`), nothing is started before :meth:`run`."""

    def __init__(self, task_dir: str | Path, script: str, limits: SandboxLimits, allow_unsandboxed: bool,
                 data_dir: str | Path | None, ahead: bool = True) -> None:
        self.task_dir, self.script, self.limits = Path(task_dir).resolve(), safe_name(script), limits
        self.data_dir = None if data_dir is None else Path(data_dir).resolve()
        self.isolated = bubblewrap_works()
        self.allow_unsandboxed = allow_unsandboxed
        # started ahead: behind WAIT_FOR_GO. Not ahead (run_task_script): bubblewrap runs ``sh script`` itself, one
        # exec and one round trip fewer (1-3 ms of a cold start's 16-19 ms, 40 runs each, three times alternating)
        self.ahead = ahead and self.isolated
        self.logs = self.task_dir.parent / f".{self.task_dir.name}.logs"
        self.cgroup: RunCgroup | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self._host: socket.socket | None = None  # our end of the waiting sandbox's stdin
        self.used = False
        # of a run's wall_s, its start: what was left of setting up a sandbox started ahead (~0 when it was ready
        # at the run), else the spawn
        self.start_wait_s = 0.0
        self._ready: bool | None = None  # None: not known yet

    def _check_isolation(self) -> None:
        if not self.isolated and not self.allow_unsandboxed:
            raise SandboxUnavailable("bubblewrap cannot isolate task scripts here; refusing to run untrusted code "
                                     "(sandbox.allow_unsandboxed: true overrides, at your risk)")

    async def start(self) -> None:
        """Start the sandbox (bubblewrap only); it waits for :meth:`run`. Raises :class:`SandboxUnavailable`."""
        self._check_isolation()
        self.logs.mkdir(exist_ok=True)
        if not self.ahead:
            return
        self._host, theirs = socket.socketpair()
        try:
            self.cgroup = RunCgroup(self.limits.max_procs, self.limits.memory_mb)
            self.proc = await self._exec(bwrap_argv(self.task_dir, self.script, self.limits, self.data_dir, waits=True),
                                         {}, theirs)
        except BaseException:
            await self.discard()
            raise
        finally:
            theirs.close()
        self._host.setblocking(False)

    async def _exec(self, argv: list[str], env: dict[str, str], stdin: Any) -> asyncio.subprocess.Process:
        assert self.cgroup is not None
        with open(self.logs / "stdout.log", "wb") as out, open(self.logs / "stderr.log", "wb") as err:
            return await asyncio.create_subprocess_exec(*limited(argv, self.limits, self.cgroup), cwd=self.task_dir,
                                                        env=env, stdin=stdin, stdout=out, stderr=err,
                                                        start_new_session=True)

    async def discard(self) -> None:
        """End the sandbox unused (or whatever is left of it); idempotent."""
        self.used = True
        if self._host is not None:
            self._host.close()
            self._host = None
        if self.proc is not None and self.proc.returncode is None:
            _kill_group(self.proc.pid)
            await self.proc.wait()
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.kill_all_and_remove)

    async def run(self) -> SandboxReport:
        """Run the script in the prepared sandbox (at most once); never raises for what the script does."""
        if self.used:
            raise RuntimeError("a prepared sandbox runs one script, once")
        refused = _refusal(self.task_dir, self.script)  # checked before the isolation, as it always was
        if refused is not None:
            await self.discard()
            return refused
        self._check_isolation()
        self.used = True
        outputs = self.task_dir / OUTPUTS
        outputs.mkdir(exist_ok=True)
        for folder in (self.task_dir, outputs):
            folder.chmod(0o777)  # the unprivileged uid inside must write here
        started = time.monotonic()
        try:
            if self.ahead:
                try:  # bubblewrap stuck setting up (never seen): the clock runs out here as it would for the script
                    await asyncio.wait_for(self._go(), self.limits.timeout_s)
                except TimeoutError:
                    pass  # its stdin is closed: it ends (125) without running the script, or the clock kills it
            else:
                self.logs.mkdir(exist_ok=True)
                self.cgroup = RunCgroup(self.limits.max_procs, self.limits.memory_mb)
                if self.isolated:
                    argv, env = bwrap_argv(self.task_dir, self.script, self.limits, self.data_dir), {}
                else:
                    argv, env = ["sh", self.script], {
                        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.task_dir), "LANG": "C.UTF-8",
                        **({"DECENTRALML_DATA": str(self.data_dir)} if self.data_dir else {})}
                self.proc = await self._exec(argv, env, subprocess.DEVNULL)
        except BaseException:
            await self.discard()
            raise
        self.start_wait_s = time.monotonic() - started
        assert self.proc is not None and self.cgroup is not None
        code, stopped, stop_reason = await _supervise(self.proc, self.task_dir, self.limits, self.cgroup)
        return await self._report(code, stopped, stop_reason, started)

    async def ready(self) -> bool:
        """Wait until the sandbox is set up and waiting: True; False if it is gone (bubblewrap failed: its exit
        status and stderr tell why when it is run) or was not started ahead. :meth:`run` waits for this itself."""
        if self._ready is None:
            self._ready = False
            if self._host is not None:
                try:
                    self._ready = await asyncio.get_running_loop().sock_recv(self._host, 1) == b"r"
                except OSError:
                    pass
        return self._ready

    async def _go(self) -> None:
        """Once the sandbox is set up, tell it to run the script."""
        host = self._host
        assert host is not None
        try:
            if await self.ready():
                await asyncio.get_running_loop().sock_sendall(host, b"go\n")
        except OSError:
            pass  # gone before it was told: reported from its exit status
        finally:
            host.close()
            self._host = None

    async def _report(self, code: int | None, stopped: str | None, stop_reason: str, started: float) -> SandboxReport:
        assert self.cgroup is not None
        limits, cgroup, outputs = self.limits, self.cgroup, self.task_dir / OUTPUTS
        peak = cgroup.peak_memory()
        out_of_memory, process_limit = cgroup.out_of_memory(), cgroup.process_limit_reached()
        # empty already (the usual end): removed here; else killed and waited for, off the loop (a hop through
        # a thread is a wait for a busy loop's turn, ~1-5 ms while a farm runs, on every task's path)
        leftover = 0 if cgroup.remove_if_empty() else await asyncio.to_thread(
            cgroup.kill_all_and_remove, machinery=is_bubblewrap if self.isolated else None)
        wall = time.monotonic() - started
        tail = _tail(self.logs / "stderr.log", STDERR_TAIL)
        status, errors = classify(self.script, limits, Observed(
            code, self.isolated, stopped, stop_reason, out_of_memory=out_of_memory, process_limit=process_limit,
            stderr_tail=tail))
        report = SandboxReport(status, code, errors=errors, wall_s=round(wall, 3),
                               peak_memory_mb=None if peak is None else round(peak / 2**20, 1),
                               leftover_processes=leftover, isolation="bubblewrap" if self.isolated else "none",
                               stderr_tail=tail)
        if status == "ok":
            try:
                found = walk_folder(outputs, limits.max_output_files, limits.max_output_mb * 1024 * 1024)
                report.outputs = [name for name, _, _ in found]
            except (StorageError, OSError) as exc:
                report.status = "rejected"
                report.errors.append(f"outputs refused: {exc}")
            else:
                cut = cut_short([(name, size) for name, _, size in found], limits)
                if cut is not None:
                    report.status, report.outputs = "failed", []
                    report.errors.append(cut)
        log.info("sandbox_run", task_dir=str(self.task_dir), status=report.status, exit_code=code,
                 wall_s=report.wall_s, start_wait_s=round(self.start_wait_s, 4), outputs=len(report.outputs), leftover=leftover,
                 isolation=report.isolation, ahead=self.ahead)
        return report


async def _supervise(proc: asyncio.subprocess.Process, task_dir: Path, limits: SandboxLimits,
                     cgroup: RunCgroup) -> tuple[int | None, str | None, str]:
    """Wait for a started run under the clock and the disk watchdog: (exit status, ``"timeout"``/``"killed"``
    if the clock or the watchdog stopped it, and why). Whatever is left of its session is killed before this
    returns; a cancelled run is killed with its cgroup."""
    code, stopped, stop_reason = None, None, ""
    ended = asyncio.ensure_future(proc.wait())
    watchdog = asyncio.ensure_future(_watch_disk(task_dir, limits))
    try:
        await asyncio.wait({ended, watchdog}, timeout=limits.timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if not ended.done():
            if watchdog.done():
                stopped, stop_reason = "killed", watchdog.result()
            else:
                stopped, stop_reason = "timeout", f"timed out after {limits.timeout_s:g} s"
            _kill_group(proc.pid)
        code = await ended
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        await proc.wait()
        cgroup.kill_all_and_remove()
        raise
    finally:
        watchdog.cancel()
    _kill_group(proc.pid)  # anything that stayed in the session
    return code, stopped, stop_reason


def _tail(path: Path, size: int) -> str:
    """The last ``size`` bytes of a log, as text (undecodable bytes replaced)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - size, 0))
            return f.read(size).decode(errors="replace").strip()
    except OSError:
        return ""


def _disk_use(folder: Path, max_entries: int) -> tuple[int, int]:
    """(bytes allocated, entries) under ``folder``, links not followed; counting stops past ``max_entries``."""
    used, entries, pending = 0, 0, [str(folder)]
    while pending and entries <= max_entries:
        try:
            with os.scandir(pending.pop()) as found:
                for entry in found:
                    entries += 1
                    info = entry.stat(follow_symlinks=False)
                    used += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
        except OSError:  # vanished or made unreadable meanwhile: counted as far as it could be
            continue
    return used, entries


async def _watch_disk(task_dir: Path, limits: SandboxLimits) -> str:
    """Returns (the reason) once the run grows its task dir past the limits or the disk gets too full."""
    room = limits.disk_mb * 2**20
    base_used, base_entries = await asyncio.to_thread(_disk_use, task_dir, 10**9)
    max_entries = base_entries + limits.max_entries
    while True:
        await asyncio.sleep(DISK_CHECK_S)
        try:
            disk = os.statvfs(task_dir)
        except OSError:
            continue
        if disk.f_bavail * disk.f_frsize < limits.min_free_disk_mb * 2**20:
            return f"disk limit: fewer than {limits.min_free_disk_mb} MB left on the work dir's file system"
        used, entries = await asyncio.to_thread(_disk_use, task_dir, max_entries)
        if used - base_used > room:
            return f"disk limit: the task dir grew by more than {limits.disk_mb} MB (disk_mb)"
        if entries > max_entries:
            return f"disk limit: the task dir gained more than {limits.max_entries} files (max_entries)"


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
