"""Waiting on the chain's event stream and a stop signal at once, and closing the stream cleanly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


async def close_stream(pending: asyncio.Future | None, events: AsyncIterator) -> None:
    """Cancel a pending ``anext`` and let it unwind before closing the generator (else: 'already running')."""
    if pending is not None and not pending.done():
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
            await pending
    await events.aclose()
