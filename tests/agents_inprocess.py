"""Agents run by the test's event loop on the devnet's node in process: the same YAML, the same
``run_agent`` as ``decentralml agent run``, real journals and real sandboxes, but no processes to start
(each took 5–10 s of imports and runtime loading on 2 loaded cores) and their log events asserted with
``structlog.testing.capture_logs``. Nothing here is global: a devnet, its agents and their state
directories belong to one test (safe under parallel test workers)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from agent_process import GOOD_SCRIPT, Agent, make_assets, settle_on

from agents.config import load_config
from agents.journal import writes_settled
from agents.runtime import run_agent
from decentralml_core.chain import ChainClient
from decentralml_core.devnet.inprocess import InProcessDevnet


class InProcessAgent(Agent):
    """An :class:`Agent` (YAML, journal readers) run as a task of this event loop instead of a process."""

    def __init__(self, tmp: Path, name: str, config: dict, devnet: InProcessDevnet) -> None:
        super().__init__(tmp, name, {**config, "node": devnet.url})
        self.devnet = devnet
        self.task: asyncio.Task | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> InProcessAgent:
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(run_agent(load_config(self.path), self._stop, self.devnet.dial),
                                        name=self.name)
        return self

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def _check_alive(self) -> None:
        if self.task is not None and self.task.done():
            self.task.result()  # its exception, if it failed
            raise AssertionError(f"{self.name} stopped")

    async def wait_until(self, check, timeout: float = 30, what: str = "condition"):
        """``check()``'s first truthy value, polled every 0.05 s while the agent runs; by then the agents
        have done what follows the journal writes it saw (their log lines), as in one process before
        an engine's workers committed through the journal's thread (a run at -n 4 saw a step, then
        no ``task_script_failed`` yet)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := check():
                await writes_settled()
                return value
            self._check_alive()
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.name}: {what}")

    async def wait_ready(self, timeout: float = 30) -> InProcessAgent:
        """Until the agent has looked at the chain once (its journal holds an event checkpoint)."""
        await self.wait_until(lambda: (self.state / "journal.sqlite").exists() and self.meta("checkpoint"),
                              timeout, "did not start")
        return self

    async def wait_step(self, kind: str, key, step: str, timeout: float = 30) -> None:
        await self.wait_until(lambda: self.journal().get((kind, str(key))) == step, timeout,
                              f"{kind} {key} never reached {step}: {self.journal()}")

    def meta(self, name: str):
        from agents.journal import Journal

        journal = Journal(self.state / "journal.sqlite")
        try:
            return journal.meta(name)
        finally:
            journal.close()

    async def stop(self, timeout: float = 30) -> None:  # type: ignore[override]
        """As SIGTERM does: stop taking work, finish the step in flight; the agent's own failure is raised."""
        if self.task is None:
            return
        self._stop.set()
        await asyncio.wait_for(self.task, timeout)


class InProcessMarket:
    """A devnet in process, a client of it for the test's own reads, and builders for its agents."""

    def __init__(self, tmp: Path, devnet: InProcessDevnet, client: ChainClient) -> None:
        self.tmp, self.devnet, self.client = tmp, devnet, client
        self.store = str(tmp / "store")
        self.agents: list[InProcessAgent] = []

    def assets(self, script: str = GOOD_SCRIPT) -> Path:
        return make_assets(self.tmp, script)

    def agent(self, name: str, config: dict) -> InProcessAgent:
        agent = InProcessAgent(self.tmp, name, {"storage": {"root": self.store}, **config}, self.devnet)
        self.agents.append(agent)
        return agent

    def creator(self, tasks: list[dict], **extra) -> InProcessAgent:
        return self.agent("creator", {"role": "creator", "key": {"dev": "Alice"}, "tasks": tasks, **extra}).start()

    async def worker(self, name: str, sandbox: dict | None = None, **policy) -> InProcessAgent:
        agent = self.agent(name.lower(), {"role": "annotator", "key": {"dev": name},
                                          "policy": {"min_blocks_left": 0, **policy},
                                          "sandbox": sandbox or {"timeout_s": 5}})
        return await agent.start().wait_ready()

    async def settle(self, name: str, until, timeout: float = 60):
        """:func:`settle_on`, failing at once with its own error if an agent has stopped meanwhile (an
        agent ends only when the test stops it: one that died would otherwise look like a slow chain)."""
        def alive_and(task, subs):
            for agent in self.agents:
                agent._check_alive()
            return until(task, subs)

        return await settle_on(self.client, name, alive_and, timeout)

    async def free(self, name: str) -> int:
        from substrateinterface import Keypair

        return await self.client.free_balance(Keypair.create_from_uri(f"//{name}").ss58_address)

    async def close(self) -> None:
        """Stop every agent still running (each must stop cleanly), then the client."""
        try:
            for agent in self.agents:
                if agent.running:
                    await agent.stop()
                elif agent.task is not None and not agent._stop.is_set():
                    agent.task.result()  # it ended before the test stopped it: its error, if it had one
        finally:
            await self.client.close()


def market_fixture(block_time: float = 0.0):
    """A function-scoped pytest fixture yielding an :class:`InProcessMarket` on a fresh devnet."""

    @pytest.fixture
    async def market(tmp_path):
        async with InProcessDevnet(block_time=block_time) as devnet:
            market = InProcessMarket(tmp_path, devnet, await devnet.client())
            try:
                yield market
            finally:
                await market.close()

    return market


def events(logs: list[dict], event: str, /, **fields) -> list[dict]:
    """The captured log events called ``event`` whose fields include ``fields``."""
    return [e for e in logs if e["event"] == event and fields.items() <= e.items()]
