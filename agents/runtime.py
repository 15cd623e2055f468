"""Run one agent from its config until SIGTERM/SIGINT: connect, serve metrics, run the role's loop,
stop taking work on a signal, finish the step in flight, exit 0."""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import structlog

from decentralml_core.chain import ChainClient, ConnectionLost
from decentralml_core.chain.client import Dial
from decentralml_core.chain.market import Market

from .assets import AssetCache
from .config import AgentConfig
from .engine import Engine
from .journal import Journal, WrongChain, claim_chain
from .metrics import Metrics, serve_metrics
from .worker import WorkerAgent

log = structlog.get_logger("agent")
NODE_RETRY_MAX_S = 30.0
# After SIGTERM, steps in flight get 10 s (streams.STOP_GRACE_S) and the close a few more: an agent still
# running 30 s on is stuck somewhere, and says where (its tasks, then every thread's stack) long before a
# farm's 120 s stop timeout kills it without a word.
STOP_OVERDUE_S = 30.0


def awaiting(task: asyncio.Task) -> list[str]:
    """Where a task is suspended, outermost first: its coroutine and every coroutine it awaits in turn
    (``Task.print_stack`` shows only the outermost frame of a suspended coroutine)."""
    where, coro = [], task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            where.append(f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return where


def stop_overdue() -> None:
    log.error("agent_stop_overdue", after_s=STOP_OVERDUE_S, action="its tasks and threads follow")
    log_tasks()


def log_tasks() -> None:
    """SIGUSR1: one line per asyncio task saying what it waits on — for an agent that will not stop."""
    for task in asyncio.all_tasks():
        log.warning("agent_task_waiting", task=task.get_name(), awaiting=awaiting(task))


async def connect_when_up(node: str, stop: asyncio.Event, dial: Dial | None = None) -> ChainClient | None:
    """The node may come up after the agent (a host's boot order, a node restarting): wait for it,
    saying so, instead of exiting; None if a signal came first."""
    delay = 1.0
    while True:
        try:
            return await ChainClient.connect(node, dial=dial)
        except ConnectionLost as exc:
            log.warning("node_unreachable", node=node, error=str(exc), retry_in_s=delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return None
        except TimeoutError:
            delay = min(delay * 2, NODE_RETRY_MAX_S)


def journal_path(config: AgentConfig):
    return config.state_dir / "journal.sqlite"


def _stop_on_signals() -> asyncio.Event:
    """An event SIGTERM/SIGINT set (then, 30 s on, the overdue report); SIGUSR1 logs the tasks."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop_requested() -> None:
        if not stop.is_set():
            stop.set()
            loop.call_later(STOP_OVERDUE_S, stop_overdue)
            faulthandler.dump_traceback_later(STOP_OVERDUE_S + 1, file=sys.stderr)  # even if the loop is blocked

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested)
    loop.add_signal_handler(signal.SIGUSR1, log_tasks)
    return stop


async def run_agent(config: AgentConfig, stop: asyncio.Event | None = None, dial: Dial | None = None) -> None:
    """``agent run``: a creator, or the engine with this one worker. Runs until SIGTERM/SIGINT, or until
    ``stop`` is set if the caller gives one (it then owns stopping: no signal handlers, so several agents
    can share one event loop, as the in-process tests run them). ``dial`` reaches the node another way
    than a WebSocket to ``config.node`` (the devnet in process)."""
    if config.role != "creator":
        await run_engine([(config.role, config)], config.metrics_port, stop=stop, dial=dial)
        return
    # The creator's modules (validators' numpy and pycocotools, the review page's jinja2 and OpenCV) are
    # imported by the creator only: a worker never runs them, and they were ~45 MB of an idle annotator.
    from .creator import CreatorAgent

    if stop is None:
        stop = _stop_on_signals()
    config.state_dir.mkdir(parents=True, exist_ok=True)
    if config.review.web_port is not None:  # the review page (jinja2, its queries) loads when served only
        from .review_web import review_token

        review_token(config.review.token_env, config.state_dir)  # a weak login token stops start-up here
    journal, metrics = Journal(journal_path(config)), Metrics(config.role)
    client = await connect_when_up(config.node, stop, dial)
    if client is None:  # stopped before the node came up
        return
    try:
        await claim_chain(journal, client.runtime.genesis_hash, client.block_hash)
    except WrongChain:
        await client.close()
        journal.close()
        raise
    agent = CreatorAgent(config, client, journal, metrics)
    runner = None
    metrics.watch("chain_block", lambda: client.followed_block if client.followed_block >= 0 else None)
    if config.metrics_port is not None:
        runner = await serve_metrics(metrics, config.metrics_port, _health(client, metrics, config.role))
    review = None
    if config.review.web_port is not None:
        from .review_web import serve_review_page

        review = await serve_review_page(agent)
    log.info("agent_running", role=config.role, node=config.node, state_dir=str(config.state_dir))
    try:
        await agent.run(stop)
    finally:
        for server in (runner, review):
            if server is not None:
                await server.cleanup()
        await client.close()
        journal.close()
        faulthandler.cancel_dump_traceback_later()
        log.info("agent_exited", role=config.role)


def _health(client: ChainClient, metrics: Metrics, role: str, engine: Engine | None = None):
    def healthy():
        lag = time.time() - metrics.started if metrics.gauge("chain_block") is None else 0
        chain = client.health  # "degraded" while the node is away or dropped extrinsics are being recovered
        detail = {"role": role, "chain_block": metrics.gauge("chain_block"), "since_start_s": round(lag, 1), **chain}
        if engine is not None:
            detail["workers"] = engine.worker_health()
        return not client.closed and chain["chain"] != "failed", detail
    return healthy


async def run_engine(configs: list[tuple[str, AgentConfig]], metrics_port: int | None, *,
                     grace_s: float = 0.0, peers: Mapping[str, int | None] | tuple[str, ...] = (),
                     peer_roles: Mapping[str, str] | None = None, asset_root: Path | None = None,
                     stop: asyncio.Event | None = None, dial: Dial | None = None) -> None:
    """Worker accounts ``(name, config)`` of one node in one process: one connection, one follower,
    one asset cache (``asset_root``, else the first worker's state dir), one /metrics page."""
    if stop is None:
        stop = _stop_on_signals()
    first = configs[0][1]
    for _, config in configs:
        config.state_dir.mkdir(parents=True, exist_ok=True)
    journals = [Journal(journal_path(config)) for _, config in configs]
    client = await connect_when_up(first.node, stop, dial)
    if client is None:
        for journal in journals:
            journal.close()
        return
    runner = None
    try:
        for journal in journals:
            await claim_chain(journal, client.runtime.genesis_hash, client.block_hash)
        engine_role = first.role if len(configs) == 1 else "engine"
        metrics = Metrics(engine_role, configs[0][0] if len(configs) == 1 else "engine")
        assets = AssetCache(asset_root or first.state_dir / "assets")
        market = Market(client)  # one cache of posted tasks for the engine and its workers
        workers = [WorkerAgent(config, client, journal, metrics if len(configs) == 1 else metrics.view(config.role, name),
                               name=name, assets=assets, market=market)
                   for (name, config), journal in zip(configs, journals, strict=True)]
        engine = Engine(client, workers, metrics, grace_s=grace_s, peers=peers, peer_roles=peer_roles, market=market)
        metrics.watch("chain_block", lambda: client.followed_block if client.followed_block >= 0 else None)
        if metrics_port is not None:
            runner = await serve_metrics(metrics, metrics_port, _health(client, metrics, engine_role, engine))
        log.info("agent_running", role=engine_role, node=first.node, state_dir=str(first.state_dir),
                 workers=len(workers))
        await engine.run(stop)
    finally:
        if runner is not None:
            await runner.cleanup()
        await client.close()
        for journal in journals:
            journal.close()
        faulthandler.cancel_dump_traceback_later()
        log.info("agent_exited", role=first.role if len(configs) == 1 else "engine")
