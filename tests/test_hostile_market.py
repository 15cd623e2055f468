"""Hostile tasks, chain data and peers against real agents on a real devnet: whatever a creator puts on
chain or a worker submits, the agents contain it, say why in their journal, and keep serving."""

from __future__ import annotations

import asyncio
import time

from agent_process import Agent, decided, settle, task_decl
from test_agents import market_setup  # noqa: F401 (the fixture)

from decentralml_core.chain.model import SubmissionStatus


def wait_step(agent: Agent, kind: str, key, steps: tuple[str, ...], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while (step := agent.journal().get((kind, str(key)))) not in steps:
        assert time.monotonic() < deadline, (key, step, agent.journal())
        assert agent.proc.poll() is None, agent.log.read_text()[-3000:]
        time.sleep(0.2)
    return step


def test_a_worker_keeps_serving_while_a_hostile_task_runs(devnet, market_setup, tmp_path):  # noqa: F811
    assets, creator, _ = market_setup
    hostile = "kill -9 -1 2>/dev/null; f() { f | f & }; f & while true; do :; done"
    creator([task_decl("hostile", assets(hostile)), task_decl("good", assets())])
    worker = Agent(tmp_path, "bob", {"role": "annotator", "node": devnet.url, "key": {"dev": "Bob"},
                                     "storage": {"root": str(tmp_path / "store")},
                                     "policy": {"min_blocks_left": 0, "max_concurrent": 2},
                                     "sandbox": {"timeout_s": 12, "max_procs": 64}})
    worker.start().wait_ready()
    try:
        bad, _ = asyncio.run(settle(devnet.url, "hostile", lambda t, s: len(s) == 1))
        good, subs = asyncio.run(settle(devnet.url, "good", decided(1), timeout=40))
        assert subs[0].status == SubmissionStatus.ACCEPTED
        assert worker.journal()[("task", str(bad.task_id))] == "fetched"  # still running: served alongside
        wait_step(worker, "task", bad.task_id, ("failed",))
        error = worker.entry("task", bad.task_id).data["error"]
        assert "timed out after 12 s" in error, error
        _, subs = asyncio.run(settle(devnet.url, "hostile", lambda t, s: True))
        assert subs[0].status == SubmissionStatus.ASSIGNED  # nothing submitted for it
    finally:
        assert worker.stop() == 0
