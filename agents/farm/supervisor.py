"""``decentralml farm run``: start the farm's processes, restart a crashed one with backoff, and on
SIGTERM/SIGINT stop them all, letting each finish the work it has in flight.

The processes: one engine per node for all the farm's worker accounts (``farm engine``: one chain
connection, one follower, see :mod:`agents.engine`), and each creator as its own ``agent run``.

One agent's life is a readable chain — :meth:`Supervisor.supervise`: start → watch → (crashed)
wait the backoff → start again …; a stop request ends the chain after the current process exits.
Everything an operator asks about (pid, state, restarts, last error) goes to ``<state_root>/farm.json``
on each change, which ``decentralml farm status`` reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import structlog
import yaml

from .config import AgentSpec, Farm, RestartPolicy

log = structlog.get_logger("farm")
STATE_FILE = "farm.json"
PR_SET_PDEATHSIG = 1


def _die_with_supervisor() -> None:
    """In the child: get SIGTERM if the supervisor dies (even by kill -9), so no agent is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def last_error_line(log_path: Path) -> str | None:
    """The last error an agent logged (its JSON log lines), or its last line if none says error."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
            return " ".join(str(entry[k]) for k in ("event", "error") if entry.get(k))[:300]
    return lines[-1][:300] if lines else None


@dataclass
class AgentState:
    """What farm.json says about one agent."""

    name: str
    group: str
    role: str
    state_dir: str
    metrics_port: int | None
    log: str
    state: str = "starting"  # starting | running | backoff | stopping | stopped
    pid: int | None = None
    restarts: int = 0
    exit_code: int | None = None
    last_error: str | None = None
    started_at: float | None = None
    workers: list[str] = field(default_factory=list)  # an engine's worker accounts


@dataclass(frozen=True)
class Unit:
    """One supervised process: a creator's ``agent run``, or the engine of a node's workers."""

    name: str
    group: str
    role: str
    state_dir: str
    metrics_port: int | None
    argv: tuple[str, ...]
    workers: tuple[str, ...] = ()  # an engine's worker accounts, by agent name


def engine_name(index: int, nodes: int) -> str:
    return "engine" if nodes == 1 else f"engine-{index}"


def units_of(farm: Farm, config_path, python: str = sys.executable) -> list[Unit]:
    """Creators one process each; workers one engine process per node (their configs' ``node``)."""
    cli = (python, "-m", "agents.cli", "--log-json")
    units = [Unit(s.name, s.group, s.config.role, str(s.config.state_dir), s.config.metrics_port,
                  (*cli, "agent", "run", str(config_path(s)))) for s in farm.agents if s.config.role == "creator"]
    nodes = list(dict.fromkeys(s.config.node for s in farm.agents if s.config.role != "creator"))
    for i, node in enumerate(nodes):
        specs = [s for s in farm.agents if s.config.role != "creator" and s.config.node == node]
        name = engine_name(i, len(nodes))
        units.append(Unit(name, name, "engine", str(farm.state_root / name), specs[0].config.metrics_port,
                          (*cli, "farm", "engine", str(farm.path), "--node", node), tuple(s.name for s in specs)))
    return units


class Supervisor:
    def __init__(self, farm: Farm, python: str = sys.executable) -> None:
        self.farm, self.python = farm, python
        self.policy: RestartPolicy = farm.restart
        self.stopping = asyncio.Event()
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.units = units_of(farm, self._config_path, python)
        self.states = {u.name: AgentState(u.name, u.group, u.role, u.state_dir, u.metrics_port,
                                          str(self._log_path(u)), workers=list(u.workers))
                       for u in self.units}
        self.started = time.time()

    # -- the whole farm ------------------------------------------------------------------------------
    async def run(self) -> int:
        """Until SIGTERM/SIGINT: supervise every agent; then stop them all. 0 if all exited cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self.farm.state_root.mkdir(parents=True, exist_ok=True)
        for spec in self.farm.agents:
            for folder in (self._config_path(spec).parent, self._log_path(spec).parent):
                folder.mkdir(parents=True, exist_ok=True)
            self._config_path(spec).write_text(yaml.safe_dump(spec.raw, sort_keys=False))
        log.info("farm_started", farm=str(self.farm.path), agents=len(self.farm.agents), processes=len(self.units))
        chains = [asyncio.create_task(self.supervise(unit)) for unit in self.units]
        await self.stopping.wait()
        log.info("farm_stopping", agents=len(self.procs))
        await self.stop_all()
        await asyncio.gather(*chains, return_exceptions=True)
        codes = {s.name: s.exit_code for s in self.states.values()}
        self._save()
        log.info("farm_stopped", exit_codes=codes)
        return 0 if all(code == 0 for code in codes.values()) else 1

    async def stop_all(self) -> None:
        """SIGTERM to every agent; each finishes its step in flight. SIGKILL only past stop_timeout_s."""
        for name, proc in self.procs.items():
            if proc.returncode is None:
                self.states[name].state = "stopping"
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        self._save()
        waits = [proc.wait() for proc in self.procs.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self.policy.stop_timeout_s)
        except TimeoutError:
            for name, proc in self.procs.items():
                if proc.returncode is None:
                    log.error("agent_kill_after_timeout", agent=name, timeout_s=self.policy.stop_timeout_s)
                    proc.kill()
            await asyncio.gather(*[proc.wait() for proc in self.procs.values()])

    # -- one agent: start → watch → backoff → start … ------------------------------------------------
    async def supervise(self, spec: Unit) -> None:
        state = self.states[spec.name]
        delay = self.policy.backoff_initial_s
        while not self.stopping.is_set():
            began = time.monotonic()
            proc = await self.start(spec)
            code = await proc.wait()
            state.exit_code, state.pid = code, None
            if self.stopping.is_set():
                break
            state.restarts += 1
            state.last_error = f"exited with {code}: {last_error_line(Path(state.log)) or 'no log'}"
            if time.monotonic() - began >= self.policy.reset_after_s:
                delay = self.policy.backoff_initial_s  # it had been healthy: a fresh series of crashes
            log.warning("agent_crashed", agent=spec.name, exit_code=code, restart_in_s=delay, restarts=state.restarts)
            state.state = "backoff"
            self._save()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay = min(delay * 2, self.policy.backoff_max_s)
        state.state = "stopped"
        self._save()

    async def start(self, spec: Unit) -> asyncio.subprocess.Process:
        state = self.states[spec.name]
        with open(state.log, "ab") as out:  # the child keeps its own descriptor
            proc = await asyncio.create_subprocess_exec(
                *spec.argv, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_supervisor)
        self.procs[spec.name] = proc
        state.pid, state.state, state.started_at, state.exit_code = proc.pid, "running", time.time(), None
        if self.stopping.is_set():  # the stop came while it was starting: it stops like the others
            state.state = "stopping"
            proc.send_signal(signal.SIGTERM)
        log.info("agent_started", agent=spec.name, role=spec.role, pid=proc.pid)
        self._save()
        return proc

    # -- files ---------------------------------------------------------------------------------------
    def _config_path(self, spec: AgentSpec) -> Path:
        return self.farm.state_root / ".configs" / f"{spec.name}.yaml"

    def _log_path(self, spec: AgentSpec | Unit) -> Path:
        return self.farm.state_root / ".logs" / f"{spec.name}.log"

    def _save(self) -> None:
        """farm.json, replaced atomically: a reader never sees half of it."""
        path = self.farm.state_root / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"supervisor_pid": os.getpid(), "farm": str(self.farm.path),
                                   "started_at": self.started, "stopping": self.stopping.is_set(),
                                   "agents": [asdict(s) for s in self.states.values()]}, indent=1))
        tmp.replace(path)
