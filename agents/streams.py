"""Following the chain's event stream: where an agent is in it (checkpointed), closing it cleanly, riding out
a node that goes away, and stopping within a bound."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import structlog

from decentralml_core.chain import ChainClient, Checkpoint, ConnectionLost, Event, ExtrinsicDropped, InclusionTimeout

from .journal import Journal

log = structlog.get_logger("agent")
T = TypeVar("T")

CHECKPOINT_EVERY_S = 2.0
# How often an agent's periodic work runs while it follows the chain (claims whose review window passed,
# auto-approvals, campaign rounds), and how long the loop waits for an event before doing it anyway.
SWEEP_S = 2.0


class Checkpointer:
    """The last handled event's place, written to the journal at most every ``every_s`` and at stop.

    Not after every event: each write is an fsync (~5 ms), and a busy chain's many events per block
    then outran the agents (a soak's annotators fell 1,000 blocks behind). After a crash the agent
    replays at most ``every_s`` of events, which is harmless: each handler journals its own effects and
    does nothing for an event it has already handled.
    """

    def __init__(self, journal: Journal, every_s: float = CHECKPOINT_EVERY_S) -> None:
        self.journal, self.every_s = journal, every_s
        self.pending: list[int] | None = None
        self.anchor: list | None = None
        self.written = float("-inf")  # the first event is written at once

    def advance(self, event: Event) -> None:
        self.pending = [event.block_number, event.index]
        self.anchor = [event.block_number, event.block_hash]
        if time.monotonic() - self.written >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Queued to the journal's writer, not awaited: nothing waits on a checkpoint, and every event
        handled before it has its rows queued (or committed) first, so it never runs ahead of them."""
        if self.pending is not None:
            self.journal.write_metas_soon({"checkpoint": self.pending, "anchor": self.anchor})  # anchor: journal.claim_chain
            self.pending, self.written = None, time.monotonic()


async def close_stream(pending: asyncio.Future | None, events: AsyncIterator) -> None:
    """Cancel a pending ``anext`` and let it unwind before closing the generator (else: 'already running')."""
    if pending is not None and not pending.done():
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
            await pending
    await events.aclose()


# -- riding out a node that goes away --------------------------------------------------------------------
TRANSIENT = (ConnectionLost, InclusionTimeout, ExtrinsicDropped)  # the node, not the work: do it again later
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0
STOP_GRACE_S = 10.0  # a step in flight when SIGTERM came gets this long to finish (an agent's stop_grace_s); then
# it resumes at the next start
SETTLE_S = 30.0  # at start, how long to let an earlier process's extrinsics still in the pool land first


async def handle_with_retry(handle: Callable[[], Awaitable[T]], stop: asyncio.Event, what: str) -> T | None:
    """``handle()``, again after 1 s, 2 s … 30 s while the node is away (a restart, an inclusion that
    timed out), never raising for it: the agent stays up and says so once per failure. None if ``stop``
    came first (the caller leaves the event unhandled, so the next start handles it)."""
    delay = RETRY_FIRST_S
    while True:
        try:
            return await handle()
        except TRANSIENT as exc:
            log.warning("event_retry", handling=what, error=str(exc), error_type=type(exc).__name__, retry_in_s=delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return None
        except TimeoutError:
            delay = min(delay * 2, RETRY_MAX_S)


async def finish_within(running: set[asyncio.Task] | dict, grace: float = STOP_GRACE_S) -> None:
    """Let the steps in flight finish for ``grace`` seconds, then cancel the rest: each is journaled
    where it stands and resumes at the next start (an inclusion that can never come no longer holds a
    SIGTERM for 30 s or more)."""
    tasks = set(running.values() if isinstance(running, dict) else running)
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=grace)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    if late:
        log.info("steps_interrupted", count=len(late), after_s=grace, action="they resume at the next start")


async def settle_account(client: ChainClient, account: str, stop: asyncio.Event, timeout: float = SETTLE_S) -> bool:
    """At start, let what an earlier process of this account left in the node's pool land before steps
    resume and read the chain (else a resumed step sends its call again, refused as done: a fee and a
    duplicate). False if ``stop`` came first."""
    async def settle() -> int:
        return await client.wait_settled(account, timeout)

    waiting = await handle_with_retry(settle, stop, "settle_account")
    if waiting is None:
        return False
    if waiting:
        log.warning("account_not_settled", account=account, waiting=waiting, after_s=timeout)
    return True


class Interrupted(Exception):
    """A piece of an agent's loop cut short by a stop: it is journaled where it stands and done again
    at the next start, as after a kill -9."""


async def within_stop(work: Awaitable[T], stop: asyncio.Event, grace: float = STOP_GRACE_S) -> T:
    """``work``'s result; if ``stop`` comes first, ``grace`` more seconds for it, then it is cancelled
    (:class:`Interrupted`). A sweep or a handler waiting on a node that is away (a request waits for the
    reconnection) held a creator's SIGTERM for 73 s before."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise Interrupted
        return task.result()
    finally:
        waiter.cancel()
        if not task.done():  # the caller itself was cancelled: the work goes with it
            task.cancel()


async def follow_events(client: ChainClient, since: Checkpoint, stop: asyncio.Event, *,
                        handle: Callable[[Event], Awaitable[object]], handled: Callable[[Event], None],
                        sweep: Callable[[], Awaitable[None]], metrics, grace: float = STOP_GRACE_S,
                        wake: asyncio.Event | None = None, reads: Callable[[Event], bool] | None = None) -> None:
    """The loop every agent runs until ``stop``: its ``sweep`` every SWEEP_S, each event from ``since`` on
    ``handle``d (again while the node is away, never raising for it) and then ``handled`` (checkpointed).
    An event the stop cut short (``grace`` seconds after it) is left unhandled: the next start handles it.
    ``wake`` set: the next sweep runs at once (what it waits on has happened), then the timer starts over.
    An event ``reads`` says the agent does nothing with is only checkpointed: most of a block's events are
    fees and system records (``bench/farm.py``, 60 tasks: 1,175 events, 240 of them the market's), and
    each one handled cost a retry loop, a stop watch and their futures (~0.1 ms of CPU).

    The stream itself may end with the node: a block's events decoded while the runtime loads over its
    own socket, and that socket cut (``make faults``: an engine whose connections were cut as the first
    tasks came exited ``cannot reach the node``, all three workers down until restarted). It is opened
    again after the last handled event, 1 s … 30 s later, as a handler is retried; only a client that
    failed for good (closed, another chain) ends the loop."""
    position = since
    events = client.events(position)
    waiter = asyncio.ensure_future(stop.wait())
    woken = asyncio.ensure_future((wake or asyncio.Event()).wait())
    nxt: asyncio.Future[Event] | None = None
    last_sweep = 0.0
    delay = RETRY_FIRST_S
    try:
        while not stop.is_set():
            if woken.done() or time.monotonic() - last_sweep >= SWEEP_S:
                if woken.done() and wake is not None:  # cleared before the sweep: a wake during it sweeps again
                    wake.clear()
                    woken = asyncio.ensure_future(wake.wait())
                try:
                    await within_stop(sweep(), stop, grace)
                except Interrupted:
                    break
                last_sweep = time.monotonic()
            nxt = nxt if nxt is not None and not nxt.done() else asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({nxt, waiter, woken}, timeout=SWEEP_S, return_when=asyncio.FIRST_COMPLETED)
            if waiter in done:
                break
            if nxt not in done:
                continue
            try:
                event = nxt.result()
            except TRANSIENT as exc:
                if client.health["chain"] == "failed":
                    raise
                log.warning("event_retry", handling="events", error=str(exc), error_type=type(exc).__name__,
                            retry_in_s=delay)
                await close_stream(None, events)
                nxt = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, RETRY_MAX_S)
                events = client.events(position)
                continue
            delay = RETRY_FIRST_S
            metrics.set("chain_block", event.block_number)
            if reads is None or reads(event):  # an event nobody reads is only checkpointed
                try:
                    if await handle_with_retry(lambda e=event: within_stop(handle(e), stop, grace), stop,
                                               event.name) is None:
                        break  # stopped while the node was away: the event is handled again at the next start
                except Interrupted:
                    break
            handled(event)
            position = Checkpoint.after(event)
    finally:
        waiter.cancel()
        woken.cancel()
        await close_stream(nxt, events)
