"""Run one agent from its config until SIGTERM/SIGINT: connect, serve metrics, run the role's loop,
stop taking work on a signal, finish the step in flight, exit 0."""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
import time

import structlog

from decentralml_core.chain import ChainClient, ConnectionLost
from decentralml_core.chain.client import Dial

from .config import AgentConfig
from .creator import CreatorAgent
from .journal import Journal, WrongChain, claim_chain
from .metrics import Metrics, serve_metrics
from .review_web import review_token, serve_review_page
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


async def run_agent(config: AgentConfig, stop: asyncio.Event | None = None, dial: Dial | None = None) -> None:
    """Run until SIGTERM/SIGINT, or until ``stop`` is set if the caller gives one (it then owns stopping:
    no signal handlers, so several agents can share one event loop, as the in-process tests run them).
    ``dial`` reaches the node another way than a WebSocket to ``config.node`` (the devnet in process)."""
    if stop is None:
        stop = signalled = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stop_requested() -> None:
            if not signalled.is_set():
                signalled.set()
                loop.call_later(STOP_OVERDUE_S, stop_overdue)
                faulthandler.dump_traceback_later(STOP_OVERDUE_S + 1, file=sys.stderr)  # even if the loop is blocked

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested)
        loop.add_signal_handler(signal.SIGUSR1, log_tasks)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    if config.role == "creator" and config.review.web_port is not None:
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
    agent_cls = CreatorAgent if config.role == "creator" else WorkerAgent
    agent = agent_cls(config, client, journal, metrics)
    runner = None
    metrics.watch("chain_block", lambda: client.followed_block if client.followed_block >= 0 else None)
    if config.metrics_port is not None:
        def healthy():
            lag = time.time() - metrics.started if metrics.gauge("chain_block") is None else 0
            chain = client.health  # "degraded" while the node is away or dropped extrinsics are being recovered
            return not client.closed and chain["chain"] != "failed", {
                "role": config.role, "chain_block": metrics.gauge("chain_block"),
                "since_start_s": round(lag, 1), **chain}
        runner = await serve_metrics(metrics, config.metrics_port, healthy)
    review = None
    if config.role == "creator" and config.review.web_port is not None:
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
