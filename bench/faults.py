"""Fault injection: a small farm under crashes, cut connections, a full disk and a bad storage server,
then the market's invariants checked on chain and in the agents' journals.

Each run: a devnet (SQLite, so it survives ``kill -9``), a creator (Alice) publishing four tasks, one
per strategy and outcome (AutoAccept ×2, ManualAccept with auto-approval, CustomAccept accepting ×2,
CustomAccept rejecting), three annotators (Bob, Charlie, Dave; Dave's state dir is a small tmpfs).
Agents reach the node through a TCP proxy and fetch assets through a storage gateway behind another;
results go back to the creator through a second gateway. During the first seconds, faults drawn from
the run's seed: ``kill -9`` of the devnet or of any agent (restarted like a supervisor would), every
WebSocket cut (mid-subscription, mid-submit), Dave's disk filled for a while, the asset gateway
stalling or corrupting bytes. Then the run settles (every task closed, nothing pending) and is checked:

- every task ends Completed (decided or expired) with its escrow refunded to 0, and its escrow adds up:
  reserved − paid − refunded (``TaskClosed`` and, for a verdict after the close, ``EscrowRefunded``)
  = what the account holds = 0 once nothing is pending;
- each accepted submission paid exactly once (one TaskResultAccepted, the task's pay), nothing else paid;
- issuance conserved: TotalIssuance = start − fees − dust, and = the sum of every account;
- no submission lost: each result a worker journaled as submitted is on chain, decided;
- no work lost: each result a worker had ready (uploaded) well before its task expired reached the
  chain (before: a node killed with the worker's send in its pool lost it, and the send resigned
  after it waited behind the lost nonce until the task expired);
- no duplicate on-chain call: one task per declared name, ≤ 1 assignment per worker and task, ≤ 1
  result per submission, and no extrinsic refused as already done (AlreadyAssigned, AlreadyDecided…).

Engine runs (``--engine``; by default seeds 2, 3, 6, 7, 10, 11 …, half the runs, both block modes): the
three annotators are the workers of one ``farm engine`` process (one chain connection, one follower,
one asset cache, as ``farm run`` runs them), reaching the node through a proxy of their own; the
ManualAccept task sets a review window and the creator never decides it, so the workers claim its pay
(``claim_payment``). Besides the faults above (``kill_agent`` then targets the creator or the engine),
faults aimed at the engine's phases, each waiting for the journal row that shows the engine in it:
``kill_dispatching`` (a task row at ``claiming``: dispatched, its assign_task not yet included),
``kill_uploading`` (at ``ran``: outputs being published), ``kill_claiming`` (a payment claim at
``claiming``), each a ``kill -9`` of the engine, counted as a hit when the row is still at that step
after the kill; and ``cut_catch_up``: the engine killed, blocks left to pile up, the engine restarted
behind a link delaying each chunk 20 ms each way, and its connections cut as soon as it handles its
first event of the catch-up (how many blocks behind the head it was is reported). Tasks expire 40 s
after publication in engine runs, so an engine killed in one phase comes back for the next ones.

Runs alternate between instant seal (odd seeds; the ticker seals a block every 0.2 s) and blocks every
0.5 s (even seeds), where extrinsics wait in the pool and a ``kill_devnet`` waits (up to 10 s) until an
agent's extrinsic is in the pool, so the kill takes it with it. ``--block-time`` forces one mode.

    python bench/faults.py [--runs 50] [--seed 1] [--block-time S] [--engine | --no-engine] [--json]  # make faults
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from substrateinterface import Keypair

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from farm_parts import SCRIPT, assets  # noqa: E402
from proxies import FaultProxy  # noqa: E402

from agents.journal import Journal  # noqa: E402
from decentralml_core import logs  # noqa: E402
from decentralml_core.chain import ChainClient  # noqa: E402
from decentralml_core.chain.rpc import WebSocketRpc  # noqa: E402
from decentralml_core.devnet.pallets.decentralml import escrow_discrepancy, task_account  # noqa: E402
from decentralml_core.testing.devnet_process import DevnetProcess, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAYS = 10**12
WORKERS = ("Bob", "Charlie", "Dave")
TASKS = [  # name, strategy, validator, script, max_assignments
    ("auto", "AutoAccept", None, SCRIPT, 2),
    ("manual", "ManualAccept", None, SCRIPT, 1),
    ("custom-ok", "CustomAccept", "json_outputs", SCRIPT, 2),
    ("custom-no", "CustomAccept", "outputs_present", "mkdir -p outputs\n", 1),
]
EXPIRES_IN = 25  # blocks; a ticker seals one every TICK_S
TICK_S = 0.2
FAULT_WINDOW_S = 8.0
SETTLE_S = 150.0
STOP_S = 30.0  # for every agent to exit after SIGTERM (they finish the step in flight)
DUPLICATES = {"AlreadyAssigned", "AlreadyDecided", "InvalidStatus", "DuplicateClientToken"}
BLOCK_TIME_S = 0.5  # even seeds: blocks on a timer, so extrinsics wait in the pool
LOST_MARGIN_S = 5.0  # a result ready this long before its task expired must reach the chain
FAULTS = ("kill_devnet", "kill_agent", "drop_connections", "disk_full", "storage_stall", "storage_corrupt")
# Engine runs: kill -9 of the engine aimed at a phase — the journal rows that show it there, and how long to
# wait for one (a phase may never come again: every slot claimed, every result decided)
AIMED = {"kill_dispatching": ("task", "claiming", 20.0), "kill_uploading": ("task", "ran", 30.0),
         "kill_claiming": ("payment_claim", "claiming", 40.0)}
ENGINE_FAULTS = (*AIMED, "cut_catch_up")
ENGINE_EXPIRES_S = 40.0  # an engine killed in one phase restarts in time for the next ones (a start took up to 11 s
# on 2 loaded cores: with 120 blocks, 24 s at instant seal, every slot of a run with three kills expired unsubmitted)
REVIEW_WINDOW = 4  # blocks the creator leaves the ManualAccept result undecided before the worker claims its pay
CATCH_UP_DELAY_S = 0.02  # each way, on the engine's link while it catches up: it stays behind long enough to cut
POLL_S = 0.005  # journal rows are read this often while a fault waits for a phase (a claim is in the pool ~10 ms+)


@dataclass
class Agent:
    name: str
    config: Path
    log: Path
    state: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0
    command: tuple[str, ...] = ("agent", "run")  # or ("farm", "engine"): the engine of the farm file ``config``
    started_at: float = 0.0

    def start(self) -> None:
        self.started_at = time.time()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "agents.cli", "--log-level", "info", *self.command,
                                          str(self.config)], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)})

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def last_error(self) -> str:
        """Why an agent that was not killed exited: its last error event, or the last line of a
        traceback or of the CLI's one-line error."""
        for line in reversed(self.log.read_text(errors="replace").splitlines()):
            try:
                record = json.loads(line)
            except ValueError:
                if line.strip() and not line.startswith((" ", "Traceback")):
                    return line[:160]
                continue
            if isinstance(record, dict) and record.get("level") in ("error", "critical"):
                return f"{record.get('event')}: {record.get('error', '')}"[:160]
        return f"exit code {self.proc.returncode}, nothing logged"


@dataclass
class Run:
    seed: int
    faults: list[tuple[float, str, str]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0
    block_time: float = 0.0
    engine: bool = False


def engine_run(seed: int) -> bool:
    """The default rotation: seeds 2, 3, 6, 7, … run the engine (half the runs, both block modes)."""
    return (seed // 2) % 2 == 1


def plan(rng: random.Random, engine: bool = False) -> list[tuple[float, str, str]]:
    """Two to five faults at random moments of the fault window, each with its target; an engine run one to
    three of them, and first one to three kills aimed at the engine's phases and (3 runs in 4) a catch-up cut,
    done one after another from the start (each waits for its phase) while the others come at their moments."""
    chosen = []
    for _ in range(rng.randint(1, 3) if engine else rng.randint(2, 5)):
        kind = rng.choice(FAULTS)
        target = rng.choice(("creator", "engine") if engine else ("creator", *WORKERS)) if kind == "kill_agent" else ""
        chosen.append((round(rng.uniform(0.5, FAULT_WINDOW_S), 2), kind, target))
    chosen.sort()
    if engine:  # in the phases' order, the catch-up cut anywhere among them: at 0 s, one after another
        kills = sorted(rng.sample(list(AIMED), rng.randint(1, 3)), key=list(AIMED).index)
        if rng.random() < 0.75:
            kills.insert(rng.randint(0, len(kills)), "cut_catch_up")
        chosen[:0] = [(0.0, kind, "engine") for kind in kills]
    return chosen


def journal_rows(state: Path, kind: str, step: str, since: float) -> list[str]:
    """Ids of the rows of ``kind`` at ``step`` written after ``since``, read-only (the agent writes meanwhile)."""
    try:
        db = sqlite3.connect(f"file:{state / 'journal.sqlite'}?mode=ro", uri=True, timeout=0.05)
        try:
            return [r[0] for r in db.execute("SELECT id FROM work WHERE kind=? AND step=? AND updated>?",
                                             (kind, step, since))]
        finally:
            db.close()
    except sqlite3.Error:  # not created yet, or busy: nothing seen this time
        return []


def journal_step(state: Path, kind: str, key: str) -> str | None:
    try:
        db = sqlite3.connect(f"file:{state / 'journal.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute("SELECT step FROM work WHERE kind=? AND id=?", (kind, key)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return row and row[0]


def checkpoint(state: Path) -> list | None:
    try:
        db = sqlite3.connect(f"file:{state / 'journal.sqlite'}?mode=ro", uri=True, timeout=0.05)
        try:
            row = db.execute("SELECT value FROM meta WHERE key='checkpoint'").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return row and json.loads(row[0])


async def kill(agent: Agent, killed: set[str]) -> None:
    killed.add(agent.name)  # before the signal: the supervisor does not report it as an exit of its own
    if agent.alive():
        agent.proc.kill()
        await asyncio.to_thread(agent.proc.wait)


async def aimed_kill(kind: str, engine: Agent, states: dict[str, Path], killed: set[str], run: Run) -> None:
    """``kill -9`` of the engine as soon as a journal row shows it in the phase (rows written by this process
    of it only: a row left by a killed one is no phase); a hit if the row is still at that step after."""
    row_kind, step, timeout = AIMED[kind]
    deadline = time.monotonic() + timeout
    outcome = "missed (the phase never came)"
    while time.monotonic() < deadline:
        found = [(state, key) for state in states.values()
                 for key in journal_rows(state, row_kind, step, engine.started_at)] if engine.alive() else []
        if found:
            await kill(engine, killed)
            state, key = found[0]
            outcome = "hit" if journal_step(state, row_kind, key) == step else "late (the step had passed)"
            break
        await asyncio.sleep(POLL_S)
    run.counts.setdefault("aimed", []).append(f"{kind}: {outcome}")


async def head_block(url: str) -> int | None:
    with contextlib.suppress(Exception):
        rpc = await WebSocketRpc.connect(url)
        try:
            return int((await rpc.request("chain_getHeader"))["number"], 16)
        finally:
            await rpc.close()
    return None


async def cut_catch_up(rng: random.Random, engine: Agent, states: dict[str, Path], proxy: FaultProxy, url: str,
                       held: set[str], killed: set[str], run: Run) -> None:
    """The engine killed once it follows, blocks left to pile up, restarted behind a slow link, and its
    connections cut as soon as it handles its first event of the catch-up."""
    state = next(iter(states.values()))
    deadline = time.monotonic() + 60
    while not (engine.alive() and checkpoint(state)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    held.add(engine.name)  # the supervisor leaves it down
    await kill(engine, killed)
    before = checkpoint(state)
    await asyncio.sleep(rng.uniform(2.0, 4.0))
    proxy.delay_s = CATCH_UP_DELAY_S
    engine.restarts += 1
    killed.discard(engine.name)
    engine.start()
    held.discard(engine.name)
    outcome = "missed (no event handled in 60 s)"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and engine.alive():
        now = checkpoint(state)
        if now is not None and now != before:
            proxy.drop()
            head = await head_block(url)
            outcome = f"cut {head - now[0]} blocks behind" if head is not None else "cut (head unknown)"
            break
        await asyncio.sleep(POLL_S)
    proxy.delay_s = 0.0  # the reconnect is on a normal link
    run.counts.setdefault("aimed", []).append(f"cut_catch_up: {outcome}")


async def ticker(url: str, stop: asyncio.Event) -> None:
    """Blocks keep coming (so tasks expire) whatever happens to the node: Ferdie remarks, reconnecting."""
    ferdie = Keypair.create_from_uri("//Ferdie")
    i = 0
    while not stop.is_set():
        try:
            async with await ChainClient.connect(url, reconnect_for=2, inclusion_timeout=10) as client:
                while not stop.is_set():
                    i += 1
                    await client.submit(ferdie, "System", "remark", {"remark": f"0x{i:08x}"})
                    await asyncio.sleep(TICK_S)
        except Exception:  # noqa: BLE001 - the node is down or restarting: try again
            await asyncio.sleep(0.5)


async def settled(url: str) -> bool:
    async with await ChainClient.connect(url, reconnect_for=5) as client:
        tasks = await client.storage_map("DecentralMLModule", "Tasks")
        subs = await client.storage_map("DecentralMLModule", "TaskResultSubmissions")
    return len(tasks) == len(TASKS) and all(v["status"] == "Completed" for _, v in tasks) and \
        not any(v["status"] == "PendingValidation" for _, v in subs)


async def agents_in_pool(url: str, timeout: float) -> bool:
    """Until the node's pool holds an extrinsic of an agent (anyone's but the ticker's); False after ``timeout``."""
    ticker_key = Keypair.create_from_uri("//Ferdie").public_key.hex()
    deadline = time.monotonic() + timeout
    with contextlib.suppress(Exception):
        rpc = await WebSocketRpc.connect(url)
        try:
            while time.monotonic() < deadline:
                if any(ticker_key not in xt for xt in await rpc.request("author_pendingExtrinsics")):
                    return True
                await asyncio.sleep(0.02)
        finally:
            await rpc.close()
    return False


async def one_run(seed: int, work: Path, block_time: float | None = None, engine: bool | None = None) -> Run:
    rng = random.Random(seed)
    block_time = (BLOCK_TIME_S if seed % 2 == 0 else 0.0) if block_time is None else block_time
    engine = engine_run(seed) if engine is None else engine
    run = Run(seed, plan(rng, engine), block_time=block_time, engine=engine)
    started = time.monotonic()
    work.mkdir(parents=True)
    devnet = DevnetProcess(*(["--block-time", str(block_time)] if block_time else []), db=str(work / "chain.sqlite"),
                           log_path=work / "devnet.log").start(timeout=90)
    node_proxy = await FaultProxy(devnet.port).start()
    engine_proxy = await FaultProxy(devnet.port).start()  # the engine's own link: slowed and cut while it catches up
    cstore, wstore = work / "creator-store", work / "worker-store"
    gp1, gp2 = free_port(), free_port()
    gateways = [subprocess.Popen([sys.executable, "-m", "agents.cli", "storage", "serve", "--store-root", str(root),
                                  "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
                for root, port in ((cstore, gp1), (wstore, gp2))]
    asset_proxy = await FaultProxy(gp1).start()
    dave_dir = work / "dave"
    dave_dir.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(dave_dir)],
                             capture_output=True).returncode == 0
    node = f"ws://127.0.0.1:{node_proxy.port}"
    declared = []
    for name, strategy, validator, script, slots in TASKS:
        folder = assets(work / f"assets-{name}")
        (folder / "start_task.sh").write_text(script)
        declared.append({"name": name, "assets": str(folder), "question": "Label", "pays": PAYS, "max_assignments": slots,
                         "expires_in": round(ENGINE_EXPIRES_S / (block_time or TICK_S)) if engine else EXPIRES_IN,
                         "strategy": strategy,
                         **({"validator": validator} if validator else {}),
                         **({"review_window": REVIEW_WINDOW} if engine and strategy == "ManualAccept" else {})})
    agents = {"creator": Agent("creator", work / "creator.yaml", work / "creator.log", work / "creator")}
    agents["creator"].config.write_text(yaml.safe_dump({
        "role": "creator", "node": node, "key": {"dev": "Alice"}, "state_dir": str(work / "creator"),
        "storage": {"root": str(cstore), "gateways": [f"http://127.0.0.1:{gp2}"]}, "tasks": declared,
        "review": {} if engine else {"auto_approve_after_s": 2}}))  # engine: the workers claim the manual task's pay
    states = {name: work / name.lower() for name in WORKERS}
    workers = {name: {"role": "annotator", "key": {"dev": name},
                      "storage": {"root": str(wstore), "gateways": [f"http://127.0.0.1:{asset_proxy.port}"]},
                      "policy": {"min_blocks_left": 0, "max_concurrent": 2},
                      "sandbox": {"timeout_s": 20, "min_free_disk_mb": 1}} for name in WORKERS}
    if engine:  # one `farm engine` process: the farm gives each worker <state_root>/<name>, as above
        agents["engine"] = Agent("engine", work / "farm.yaml", work / "engine.log", work, command=("farm", "engine"))
        agents["engine"].config.write_text(yaml.safe_dump({
            "state_root": str(work), "metrics_base_port": free_port(),
            "defaults": {"node": f"ws://127.0.0.1:{engine_proxy.port}"},
            "agents": {name.lower(): {"overrides": config} for name, config in workers.items()}}))
    else:
        for name, config in workers.items():
            agent = agents[name] = Agent(name, work / f"{name.lower()}.yaml", work / f"{name.lower()}.log", states[name])
            agent.config.write_text(yaml.safe_dump({**config, "node": node, "state_dir": str(states[name])}))
    async with await ChainClient.connect(devnet.url) as client:
        issuance_before = await client.storage("Balances", "TotalIssuance")
    stop_ticker = asyncio.Event()
    tick = asyncio.create_task(ticker(devnet.url, stop_ticker))
    for agent in agents.values():
        agent.start()
    if block_time:  # the fault window opens when the agents are at work (their start alone can take seconds)
        await agents_in_pool(devnet.url, 90.0)
    t0 = time.monotonic()
    pending = list(run.faults)
    killed: set[str] = set()  # by a fault since the last restart
    held: set[str] = set()  # left down by a fault for a while
    async def engine_faults() -> None:
        for _, kind, _ in run.faults:
            if kind in AIMED:
                await aimed_kill(kind, agents["engine"], states, killed, run)
            elif kind == "cut_catch_up":
                await cut_catch_up(rng, agents["engine"], states, engine_proxy, devnet.url, held, killed, run)

    watchers = [asyncio.create_task(engine_faults())] if engine else []  # the faults waiting for the engine's phases
    filler = dave_dir / "filler"
    try:
        while time.monotonic() - t0 < SETTLE_S:
            elapsed = time.monotonic() - t0
            while pending and pending[0][0] <= elapsed:
                _, kind, target = pending.pop(0)
                if kind in ENGINE_FAULTS:  # done in turn by the engine's fault sequence
                    continue
                if kind == "kill_devnet":
                    if block_time and await agents_in_pool(devnet.url, 10.0):  # the kill takes their extrinsics
                        run.counts["kills_with_pool"] = run.counts.get("kills_with_pool", 0) + 1
                    devnet.stop(kill=True)
                    await asyncio.sleep(rng.uniform(0.2, 2.0))
                    await asyncio.to_thread(devnet.start, 90)  # a loaded machine: imports alone can take seconds
                elif kind == "kill_agent":
                    if agents[target].alive():
                        await kill(agents[target], killed)
                elif kind == "drop_connections":
                    node_proxy.drop()
                    engine_proxy.drop()
                elif kind == "disk_full" and mounted:
                    await asyncio.to_thread(subprocess.run, ["dd", "if=/dev/zero", f"of={filler}", "bs=1M"],
                                            capture_output=True)
                    asyncio.get_running_loop().call_later(rng.uniform(1, 4), lambda: filler.unlink(missing_ok=True))
                elif kind in ("storage_stall", "storage_corrupt"):
                    asset_proxy.mode = kind.split("_")[1]
                    asyncio.get_running_loop().call_later(rng.uniform(1, 4), setattr, asset_proxy, "mode", "normal")
            for agent in agents.values():  # a supervisor restarts what died
                if not agent.alive() and agent.name not in held:
                    agent.restarts += 1 if agent.proc is not None else 0
                    if agent.proc is not None and agent.name not in killed:  # exited on its own: say why
                        run.counts.setdefault("exits", []).append(f"{agent.name}: {agent.last_error()}")
                    killed.discard(agent.name)
                    agent.start()
            if not pending and all(w.done() for w in watchers) and elapsed > FAULT_WINDOW_S and int(elapsed * 2) % 4 == 0:
                with contextlib.suppress(Exception):
                    if await settled(devnet.url):
                        break
            await asyncio.sleep(0.5)
        else:
            run.violations.append(f"did not settle in {SETTLE_S:g} s")
        for watcher in watchers:
            if not watcher.done():
                watcher.cancel()
                run.counts.setdefault("aimed", []).append("engine faults still waiting at the end (cancelled)")
        await asyncio.gather(*watchers, return_exceptions=True)
        for agent in agents.values():
            if agent.alive():
                agent.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_S  # waited for without blocking: the proxies and the ticker run meanwhile
        while any(a.alive() for a in agents.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        for agent in agents.values():
            if agent.alive():
                agent.proc.send_signal(signal.SIGUSR1)  # its log gets what each task waits on (agent_task_waiting)
                await asyncio.sleep(1)
                agent.proc.kill()
                run.violations.append(f"{agent.name} did not stop in {STOP_S:g} s of SIGTERM (what it waited on: "
                                      "its log, agent_task_waiting)")
        stop_ticker.set()
        await asyncio.wait_for(tick, 15)
        await check(run, devnet.url, issuance_before, agents, states)
        run.counts["restarts"] = {a.name: a.restarts for a in agents.values() if a.restarts}
    finally:
        for watcher in watchers:
            watcher.cancel()
        for agent in agents.values():
            if agent.alive():
                agent.proc.kill()
        stop_ticker.set()
        tick.cancel()
        await node_proxy.close()
        await engine_proxy.close()
        await asset_proxy.close()
        for g in gateways:
            g.terminate()
            g.wait(timeout=10)
        devnet.stop()
        if mounted:
            subprocess.run(["umount", "-l", str(dave_dir)], capture_output=True)
    run.seconds = round(time.monotonic() - started, 1)
    return run


async def check(run: Run, url: str, issuance_before: int, agents: dict[str, Agent], states: dict[str, Path]) -> None:
    """The invariants, from the chain's storage and every block's events, and the agents' journals."""
    bad = run.violations.append
    async with await ChainClient.connect(url) as client:
        head = await client.block_number()
        tasks = dict(await client.storage_map("DecentralMLModule", "Tasks"))
        subs = {v["submission_id"]: v for _, v in await client.storage_map("DecentralMLModule", "TaskResultSubmissions")}
        accounts = await client.storage_map("System", "Account")
        issuance = await client.storage("Balances", "TotalIssuance")
        events = []
        for first in range(1, head + 1, 64):  # pipelined: a run seals a few hundred blocks
            for block in await asyncio.gather(*(client.events_at(n) for n in range(first, min(first + 64, head + 1)))):
                events += block
        failures = []
        for e in events:
            if (e.pallet, e.name) == ("System", "ExtrinsicFailed"):
                failures.append(client._dispatch_error(e.attributes["dispatch_error"], e.block_number).error)
        expired_at = {}  # task id -> when its expiration block was sealed (s), for the lost-work check
        for task_id, task in tasks.items():
            if task["expiration_block"] <= head:
                at = await client.block_hash(task["expiration_block"])
                expired_at[task_id] = (await client.storage("Timestamp", "Now", block_hash=at)) / 1000
        escrows = {}
        for task_id in tasks:
            escrows[task_id] = await client.free_balance(Keypair(public_key=task_account(task_id),
                                                                 ss58_format=42).ss58_address)
    names = [json.loads(t["annotation_json"]).get("name") for t in tasks.values()]
    if sorted(names) != sorted(n for n, *_ in TASKS):
        bad(f"tasks on chain {sorted(names)} are not one per declared name")
    count = lambda name, key: [e.attributes[key] for e in events if (e.pallet, e.name) == ("DecentralMLModule", name)]  # noqa: E731
    refunds = [(e.attributes["task_id"], e.attributes["refunded"]) for e in events
               if (e.pallet, e.name) in (("DecentralMLModule", "TaskClosed"), ("DecentralMLModule", "EscrowRefunded"))]
    for task_id, task in tasks.items():
        if task["status"] != "Completed":
            bad(f"task {task_id} ended {task['status']}")
        if escrows[task_id]:
            bad(f"task {task_id} keeps {escrows[task_id]} in escrow")
        refunded = sum(amount for t, amount in refunds if t == task_id)
        mine = [s for s in subs.values() if s["task_id"] == task_id]
        discrepancy = escrow_discrepancy(task, mine, escrows[task_id], refunded)
        if discrepancy:
            bad(f"task {task_id}: {discrepancy}")
    accepted = count("TaskResultAccepted", "submission_id") + count("PaymentClaimed", "submission_id")
    for sid, sub in subs.items():
        n = accepted.count(sid)
        if sub["status"] == "Accepted" and (n != 1 or sub["paid_amount"] != PAYS):
            bad(f"submission {sid} accepted but paid {n} times ({sub['paid_amount']})")
        if sub["status"] != "Accepted" and n:
            bad(f"submission {sid} is {sub['status']} but was paid {n} times")
        if sub["status"] == "PendingValidation":
            bad(f"submission {sid} still pending")
    submitted = count("TaskResultSubmitted", "submission_id")
    if len(submitted) != len(set(submitted)):
        bad("a submission's result was sent twice")
    pairs = [(s["worker"], s["task_id"]) for s in subs.values()]
    if len(pairs) != len(set(pairs)):
        bad("a worker holds two assignments of one task")
    duplicates = [f for f in failures if f in DUPLICATES]
    if duplicates:
        bad(f"extrinsics refused as already done: {duplicates}")
    fees = sum(e.attributes["actual_fee"] for e in events if e.name == "TransactionFeePaid")
    dust = sum(e.attributes["amount"] for e in events if e.name == "DustLost")
    total = sum(v["data"]["free"] + v["data"]["reserved"] for _, v in accounts)
    if issuance != issuance_before - fees - dust:
        bad(f"issuance {issuance} != start {issuance_before} - fees {fees} - dust {dust}")
    if total != issuance:
        bad(f"accounts hold {total}, issuance says {issuance}")
    for name in WORKERS:
        journal = Journal(states[name] / "journal.sqlite")
        try:
            for entry in journal.entries("task", steps=("submitted",)):
                sub = subs.get(entry.data.get("submission_id"))
                if sub is None or sub["status"] not in ("Accepted", "Rejected"):
                    bad(f"{name}'s submitted task {entry.id} is {sub and sub['status']} on chain")
            for entry in journal.entries("task"):
                ready, sub = entry.data.get("ready_at"), subs.get(entry.data.get("submission_id"))
                expiry = expired_at.get(int(entry.id))
                if ready is not None and expiry is not None and ready < expiry - LOST_MARGIN_S and (
                        sub is None or sub["status"] in ("Assigned", "Abandoned")):
                    bad(f"lost work: {name}'s result for task {entry.id} was ready {expiry - ready:.0f} s before the "
                        f"task expired but never reached the chain ({entry.step})")
        finally:
            journal.close()
    journal = Journal(agents["creator"].state / "journal.sqlite")
    try:
        for entry in journal.entries("submission", steps=("paid",)):
            if subs[int(entry.id)]["status"] != "Accepted":
                bad(f"creator journaled {entry.id} paid; chain says {subs[int(entry.id)]['status']}")
    finally:
        journal.close()
    statuses = [s["status"] for s in subs.values()]
    claimed = count("PaymentClaimed", "submission_id")
    run.counts.update(accepted=statuses.count("Accepted"), rejected=statuses.count("Rejected"),
                      **({"pay_claimed": len(claimed)} if claimed else {}),
                      unsubmitted=statuses.count("Assigned"),
                      refused_calls={f: failures.count(f) for f in sorted(set(failures))})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1, help="run i uses seed + i: any run can be replayed alone")
    parser.add_argument("--keep", action="store_true", help="keep each run's dir (logs, journals, chain)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--block-time", type=float, default=None,
                        help=f"seconds between blocks for every run (default: instant seal on odd seeds, {BLOCK_TIME_S} s "
                             "on even ones)")
    parser.add_argument("--engine", action=argparse.BooleanOptionalAction, default=None,
                        help="the annotators as workers of one engine process in every run (--no-engine: as separate "
                             "agents in every run; default: engine on seeds 2, 3, 6, 7, …)")
    args = parser.parse_args()
    logs.configure("warning")
    base = Path(tempfile.mkdtemp(prefix="decentralml-faults-"))
    results, started = [], time.monotonic()
    for i in range(args.runs):
        try:
            run = asyncio.run(one_run(args.seed + i, base / f"run-{args.seed + i}", args.block_time, args.engine))
        except Exception as exc:  # noqa: BLE001 - the harness itself (a node that never came up): say so, go on
            engine = engine_run(args.seed + i) if args.engine is None else args.engine
            run = Run(args.seed + i, plan(random.Random(args.seed + i), engine), [f"harness: {type(exc).__name__}: {exc}"],
                      engine=engine)
        results.append(run)
        faults = ", ".join(f"{k}{'(' + t + ')' if t else ''}@{at:g}s" for at, k, t in run.faults)
        print(f"run {i + 1}/{args.runs} seed {run.seed} {'engine' if run.engine else 'agents'} "
              f"blocks {run.block_time or 'instant'}: "
              f"{'ok' if not run.violations else 'VIOLATED'} "
              f"{run.seconds:.0f}s [{faults}] {run.counts}" + "".join(f"\n    ! {v}" for v in run.violations),
              flush=True)
        if not args.keep and not run.violations:
            shutil.rmtree(base / f"run-{run.seed}", ignore_errors=True)
    faults = [k for r in results for _, k, _ in r.faults]
    summary = {"runs": len(results), "violated": [r.seed for r in results if r.violations],
               "engine_runs": sum(r.engine for r in results),
               "faults": {k: faults.count(k) for k in (*FAULTS, *ENGINE_FAULTS) if k in faults},
               "aimed": collections.Counter(re.sub(r"\d+ blocks", "N blocks", a) for r in results
                                            for a in r.counts.get("aimed", [])).most_common(),
               "catch_up_cut_behind_blocks": [int(m.group(1)) for r in results for a in r.counts.get("aimed", [])
                                              if (m := re.search(r"cut (-?\d+) blocks", a))],
               "pay_claimed": sum(r.counts.get("pay_claimed", 0) for r in results),
               "seconds": round(time.monotonic() - started),
               "accepted": sum(r.counts.get("accepted", 0) for r in results),
               "rejected": sum(r.counts.get("rejected", 0) for r in results),
               "unsubmitted": sum(r.counts.get("unsubmitted", 0) for r in results),
               "refused_calls": {k: sum(r.counts.get("refused_calls", {}).get(k, 0) for r in results)
                                 for k in sorted({k for r in results for k in r.counts.get("refused_calls", {})})},
               "agent_restarts": sum(sum(r.counts.get("restarts", {}).values()) for r in results),
               "kills_with_pool": sum(r.counts.get("kills_with_pool", 0) for r in results),
               "exits_not_killed": collections.Counter(re.sub(r"/\S*/run-\d+/", "…/", e) for r in results
                                                       for e in r.counts.get("exits", [])).most_common(),
               "run_seconds_max": max((r.seconds for r in results), default=0),
               "kept": str(base)}
    print(json.dumps(summary) if args.json else "\n".join(f"{k}: {v}" for k, v in summary.items()))
    return 1 if summary["violated"] else 0


if __name__ == "__main__":
    sys.exit(main())
