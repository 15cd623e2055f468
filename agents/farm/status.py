"""``decentralml farm status``: one row per process (an engine, a creator) and per worker account — the
supervisor's view (farm.json), the ``/healthz`` of the process, the journal (tasks done and failed,
last error) and the earnings on chain.

Pure assembly (:func:`row`) is apart from the reads, so the table is testable without a farm.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import structlog

from agents.journal import Journal
from decentralml_core.processes import pid_alive

from .config import Farm
from .supervisor import STATE_FILE

log = structlog.get_logger("farm.status")
COLUMNS = ["agent", "role", "state", "health", "pid", "restarts", "done", "failed", "earnings", "last_error"]
UNIT = 10**12


@dataclass(frozen=True)
class JournalSummary:
    done: int
    failed: int
    paid_out: int  # a creator's payments
    last_error: str | None


def summarize_journal(state_dir: Path, role: str) -> JournalSummary | None:
    """A worker's tasks submitted/failed, or a creator's results paid/rejected; the newest error."""
    path = state_dir / "journal.sqlite"
    if not path.exists():
        return None
    journal = Journal(path)
    try:
        kind, good, bad = ("submission", "paid", "rejected") if role == "creator" else ("task", "submitted", "failed")
        entries = journal.entries(kind)
        errors = [e for e in journal.entries() if e.data.get("error")]
    finally:
        journal.close()
    paid = sum(e.data.get("amount") or 0 for e in entries if e.step == "paid")
    return JournalSummary(sum(e.step == good for e in entries), sum(e.step == bad for e in entries), paid,
                          f"{errors[-1].kind} {errors[-1].id}: {errors[-1].data['error']}"[:300] if errors else None)


def supervisor_alive(state: dict) -> bool:
    pid = state.get("supervisor_pid")
    return bool(pid) and pid_alive(pid)


def row(agent: dict, alive: bool, health: dict | None, journal: JournalSummary | None,
        earned: int | None) -> dict:
    """One agent's line of the table (JSON-ready; amounts in the chain's smallest unit)."""
    if agent["role"] == "creator" and journal is not None:
        earned = -journal.paid_out
    return {"agent": agent["name"], "role": agent["role"],
            "state": agent["state"] if alive else "down",
            "health": None if health is None else ("ok" if health.get("ok") else "failing"),
            "pid": agent["pid"] if alive else None, "restarts": agent["restarts"],
            "done": journal.done if journal else 0, "failed": journal.failed if journal else 0,
            "earnings": earned,
            "last_error": agent.get("last_error") or (journal.last_error if journal else None)}


async def _health(session: aiohttp.ClientSession, port: int | None) -> dict | None:
    if port is None:
        return None
    try:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
            return await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def _earnings(farm: Farm) -> dict[str, int]:
    """Each worker's accepted pay on chain, by agent name (empty if the chain cannot be read)."""
    from decentralml_core.chain import ChainClient, ChainError
    from decentralml_core.chain.market import Market
    from decentralml_core.chain.model import SubmissionStatus

    addresses = {}
    for spec in farm.agents:
        try:
            addresses[spec.config.key.load().ss58_address] = spec.name
        except Exception as exc:  # a key variable unset in this shell: no earnings for that agent
            log.debug("earnings_key_unavailable", agent=spec.name, error=str(exc))
    if not addresses or not farm.agents:
        return {}
    try:
        client = await asyncio.wait_for(ChainClient.connect(farm.agents[0].config.node, reconnect_for=5), 15)
    except (ChainError, OSError, TimeoutError) as exc:
        log.warning("earnings_unavailable", node=farm.agents[0].config.node, error=str(exc))
        return {}
    async with client:
        earned: dict[str, int] = {}
        for sub in await Market(client).submissions():
            name = addresses.get(sub.worker)
            if name is not None and sub.status == SubmissionStatus.ACCEPTED:
                earned[name] = earned.get(name, 0) + (sub.paid_amount or 0)
    return {spec.name: earned.get(spec.name, 0) for spec in farm.agents if spec.name in addresses.values()}


def _never_started(farm: Farm) -> dict:
    from .supervisor import units_of

    return {"agents": [{"name": u.name, "role": u.role, "state": "never started", "pid": None, "restarts": 0,
                        "metrics_port": u.metrics_port, "state_dir": u.state_dir, "workers": list(u.workers)}
                       for u in units_of(farm, lambda spec: farm.state_root / ".configs" / f"{spec.name}.yaml")]}


async def collect(farm: Farm, with_chain: bool = True) -> list[dict]:
    """One row per process the supervisor runs (an engine, a creator) and one per worker account, which
    shows its engine's state, pid and restarts beside its own health, work and earnings."""
    try:
        state = json.loads((farm.state_root / STATE_FILE).read_text())
    except (OSError, ValueError):
        state = _never_started(farm)
    alive = supervisor_alive(state)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
        health = await asyncio.gather(*[_health(session, a.get("metrics_port") if alive else None)
                                        for a in state["agents"]])
    earned = await _earnings(farm) if with_chain else {}
    rows = []
    for unit, h in zip(state["agents"], health, strict=True):
        if not unit.get("workers"):
            rows.append(row(unit, alive, h, summarize_journal(Path(unit["state_dir"]), unit["role"]),
                            earned.get(unit["name"])))
            continue
        mine = [s for s in farm.agents if s.name in unit["workers"]]
        summaries = {s.name: summarize_journal(s.config.state_dir, s.config.role) for s in mine}
        rows.append(row(unit, alive, h, JournalSummary(sum(x.done for x in summaries.values() if x),
                                                       sum(x.failed for x in summaries.values() if x), 0, None), None))
        workers = (h or {}).get("workers") or {}
        for spec in mine:
            own = None if h is None else {"ok": bool(h.get("ok")) and spec.name in workers}
            rows.append(row({**unit, "name": spec.name, "role": spec.config.role, "last_error": unit.get("last_error")},
                            alive, own, summaries[spec.name], earned.get(spec.name)))
    return rows


def table(rows: list[dict]):
    """The rows as a rich Table (earnings in units)."""
    from rich.table import Table
    from rich.text import Text

    out = Table(title="farm", title_justify="left")
    for column in COLUMNS:
        out.add_column(column.replace("_", " "), overflow="fold", max_width=60 if column == "last_error" else None)
    colors = {"running": "green", "backoff": "yellow", "stopping": "yellow", "down": "red", "stopped": "dim"}
    for r in rows:
        earned = "" if r["earnings"] is None else f"{r['earnings'] / UNIT:,.3f}"
        out.add_row(r["agent"], r["role"], f"[{colors.get(r['state'], 'white')}]{r['state']}[/]", r["health"] or "",
                    str(r["pid"] or ""), str(r["restarts"]), str(r["done"]), str(r["failed"]), earned,
                    Text(r["last_error"] or ""))
    return out
