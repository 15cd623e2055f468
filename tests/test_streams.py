"""The agents' loop pieces without I/O: a stop bounds what a sweep or a handler may still take."""

from __future__ import annotations

import asyncio
import time

import pytest

from agents.streams import Interrupted, within_stop


async def test_work_that_ends_within_the_grace_after_a_stop_keeps_its_result():
    stop = asyncio.Event()

    async def work() -> str:
        stop.set()  # the stop comes while it runs
        await asyncio.sleep(0.05)
        return "done"

    assert await within_stop(work(), stop, grace=1.0) == "done"


async def test_work_still_waiting_past_the_grace_is_cut_short():
    """A sweep waiting on a node that is away: the stop takes the grace, not the reconnection's minute."""
    stop, cancelled = asyncio.Event(), asyncio.Event()

    async def waits_for_the_node() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.get_running_loop().call_later(0.05, stop.set)
    began = time.monotonic()
    with pytest.raises(Interrupted):
        await within_stop(waits_for_the_node(), stop, grace=0.2)
    assert cancelled.is_set() and time.monotonic() - began < 5


async def test_its_errors_are_the_works_own():
    async def fails() -> None:
        raise ValueError("malformed")

    with pytest.raises(ValueError, match="malformed"):
        await within_stop(fails(), asyncio.Event())
