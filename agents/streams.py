"""Following the chain's event stream: where an agent is in it (checkpointed), closing it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from decentralml_core.chain import Event

from .journal import Journal

CHECKPOINT_EVERY_S = 2.0


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
        if self.pending is not None:
            self.journal.set_meta("checkpoint", self.pending)
            self.journal.set_meta("anchor", self.anchor)  # which chain: see journal.claim_chain
            self.pending, self.written = None, time.monotonic()


async def close_stream(pending: asyncio.Future | None, events: AsyncIterator) -> None:
    """Cancel a pending ``anext`` and let it unwind before closing the generator (else: 'already running')."""
    if pending is not None and not pending.done():
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
            await pending
    await events.aclose()
