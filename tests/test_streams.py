"""The agents' loop pieces without I/O: a stop bounds what a sweep or a handler may still take."""

from __future__ import annotations

import asyncio
import time

import pytest

from agents import streams
from agents.metrics import Metrics
from agents.streams import Interrupted, follow_events, within_stop
from decentralml_core.chain import Checkpoint, ConnectionLost, Event


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


class CutStream:
    """A chain's event stream (the I/O boundary of ``follow_events``) that ends once with the node, as a
    block decoded while the runtime loads over its own socket does when that socket is cut."""

    def __init__(self, events: list[Event], cut_after: int, health: str = "degraded") -> None:
        self.all, self.cut_after, self.opened = events, cut_after, []
        self.health = {"chain": health}

    async def events(self, since: Checkpoint):
        self.opened.append(since)
        for n, event in enumerate(e for e in self.all if e.position > (since.block_number, since.index)):
            if len(self.opened) == 1 and n == self.cut_after:
                raise ConnectionLost("node connection of the runtime: Connection to remote host was lost.")
            yield event
        await asyncio.Event().wait()  # then no new block


def blocks(n: int) -> list[Event]:
    return [Event(b, f"0x{b:02x}", i, None, "DecentralMLModule", "TaskCreated", {"taskid": b * 10 + i})
            for b in range(1, n + 1) for i in range(2)]


async def follow(stream: CutStream, until: int, reads=None, given: list | None = None) -> list[Event]:
    handled, stop = [], asyncio.Event()

    async def handle(event: Event) -> bool:
        if given is not None:
            given.append(event)
        return True

    def done(event: Event) -> None:
        handled.append(event)
        if len(handled) == until:
            stop.set()

    async def sweep() -> None:
        pass

    await asyncio.wait_for(follow_events(stream, Checkpoint(1), stop, handle=handle, handled=done, sweep=sweep,
                                         metrics=Metrics("annotator"), reads=reads), 10)
    return handled


async def test_a_stream_that_ends_with_the_node_is_followed_on_from_the_last_handled_event(monkeypatch):
    """make faults: an engine whose connections were cut as tasks came exited (every worker down); now
    it opens the stream again where it stood: every event handled once, in order."""
    monkeypatch.setattr(streams, "RETRY_FIRST_S", 0.01)
    events = blocks(4)
    stream = CutStream(events, cut_after=3)
    assert await follow(stream, len(events)) == events
    assert stream.opened == [Checkpoint(1), Checkpoint.after(events[2])]


async def test_a_client_failed_for_good_ends_the_loop():
    """Closed, or another chain: no retrying forever; the agent ends and says why."""
    with pytest.raises(ConnectionLost):
        await follow(CutStream(blocks(2), cut_after=1, health="failed"), 4)


async def test_a_wake_runs_the_sweep_at_once_and_each_wake_once():
    """A creator's verdict on chain wakes its sweep (a campaign round may close) instead of it waiting out
    SWEEP_S; a wake that comes during a sweep gets a sweep of its own, and without one the timer rules."""
    stop, wake, swept = asyncio.Event(), asyncio.Event(), []

    async def sweep() -> None:
        swept.append(time.monotonic())
        if len(swept) == 2:
            wake.set()  # during the woken sweep: one more
        if len(swept) == 3:
            stop.set()

    async def handle(event: Event) -> bool:
        return True

    loop = asyncio.get_running_loop()
    loop.call_later(0.1, wake.set)
    began = time.monotonic()
    await asyncio.wait_for(follow_events(CutStream([], cut_after=-1), Checkpoint(1), stop, handle=handle,
                                         handled=lambda e: None, sweep=sweep, metrics=Metrics("creator"),
                                         wake=wake), 10)
    assert len(swept) == 3 and swept[2] - began < streams.SWEEP_S  # the first at start, then two woken
    assert not wake.is_set()


async def test_events_the_agent_does_not_read_are_checkpointed_without_being_handled():
    """Fees and system records pass by the handler (no retry loop, no stop watch for each) and are still
    checkpointed in order, so a restart resumes after them as before."""
    events = [Event(b, f"0x{b:02x}", i, 0, pallet, name, {})
              for b in range(1, 4) for i, (pallet, name) in enumerate(
                  [("Balances", "Withdraw"), ("DecentralMLModule", "TaskCreated"), ("System", "ExtrinsicSuccess")])]
    given: list[Event] = []
    handled = await follow(CutStream(events, cut_after=99), len(events), reads=lambda e: e.name == "TaskCreated",
                           given=given)
    assert handled == events
    assert given == [e for e in events if e.name == "TaskCreated"]
