"""Agents ride out a node that dies with their extrinsics in its pool: real devnet (blocks every 3 s, so
a call waits in the pool), real agent processes, kill -9 of the node at the worst moments.

Before: the worker's send vanished with the pool, its next extrinsic waited behind the lost nonce until
the task expired (the work lost), and a creator whose close timed out exited. Now: the client resends
what the node lost, agents stay up, SIGTERM is honoured within a bound, and the result is paid once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
from agent_process import PAYS, Agent, decided, make_assets, settle, task_decl
from devnet_process import DevnetProcess, free_port
from substrateinterface import Keypair

from decentralml_core.chain import ChainClient
from decentralml_core.chain.model import SubmissionStatus
from decentralml_core.sandbox import bubblewrap_works

pytestmark = pytest.mark.skipif(not bubblewrap_works(), reason="agents run task scripts in bubblewrap")
SCRIPT = "mkdir -p outputs\necho '{\"ok\": true}' > outputs/result.json\n"


# After SIGTERM the steps in flight get this long (stop_grace_s; 10 s by default, which the tests waited out):
# the same bound, the same interrupted steps, sooner.
GRACE_S = 2.0


def alice_and_bob(tmp_path, url: str, task: dict, script_timeout_s: float) -> tuple[Agent, Agent]:
    """Alice's creator publishing ``task`` and Bob's annotator taking it, as processes sharing one local store."""
    store = {"root": str(tmp_path / "store")}
    creator = Agent(tmp_path, "creator", {"role": "creator", "node": url, "key": {"dev": "Alice"},
                                          "storage": store, "tasks": [task], "stop_grace_s": GRACE_S})
    bob = Agent(tmp_path, "bob", {"role": "annotator", "node": url, "key": {"dev": "Bob"}, "storage": store,
                                  "policy": {"min_blocks_left": 0}, "sandbox": {"timeout_s": script_timeout_s},
                                  "stop_grace_s": GRACE_S})
    return creator, bob


def logged(agent: Agent, event: str) -> list[dict]:
    """The agent's JSON log lines of ``event``."""
    lines = [json.loads(line) for line in agent.log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def wait_step(agent: Agent, kind: str, step: str, timeout: float = 120) -> None:
    """Until ``agent``'s journal has an entry of ``kind`` at ``step`` (polled fast: the call follows at once)."""
    deadline, reached = time.monotonic() + timeout, at_step(agent, kind, step)
    while time.monotonic() < deadline:
        if reached():
            return
        assert agent.proc.poll() is None, agent.log.read_text()[-3000:]
        time.sleep(0.02)
    raise TimeoutError(f"{agent.name} never journaled {kind} at {step}")


async def kill_in_pool(node: DevnetProcess, who: str, ready, timeout: float = 180) -> None:
    """kill -9 ``node`` while its pool holds an extrinsic of ``who`` sent once ``ready()``. Connected before
    the moment comes and polling every 20 ms: the extrinsic waits up to one 3 s block, which a connection
    made only then (seconds on a loaded machine) would miss."""
    address = Keypair.create_from_uri(f"//{who}").ss58_address
    async with await ChainClient.connect(node.url) as client:
        deadline = time.monotonic() + timeout
        while not (ready() and await client.pool_backlog(address)):
            assert time.monotonic() < deadline, f"no extrinsic of {who} reached the pool"
            await asyncio.sleep(0.02)
        node.stop(kill=True)


def at_step(agent: Agent, kind: str, step: str):
    """A ``ready`` for :func:`kill_in_pool`: ``agent``'s journal has an entry of ``kind`` at ``step``."""
    def ready() -> bool:
        return (agent.state / "journal.sqlite").exists() and step in {s for (k, _), s in agent.journal().items() if k == kind}
    return ready


async def payments(url: str) -> list[int]:
    async with await ChainClient.connect(url) as client:
        paid = []
        for number in range(1, await client.block_number() + 1):
            paid += [e.attributes["submission_id"] for e in await client.events_at(number)
                     if e.name in ("TaskResultAccepted", "PaymentClaimed")]
        return paid


def test_a_node_killed_with_the_workers_send_and_the_creators_accept_in_its_pool(tmp_path):
    port = free_port()
    node = DevnetProcess("--block-time", "3", db=str(tmp_path / "chain.sqlite"), port=port,
                         log_path=tmp_path / "devnet.log").start(timeout=90)
    creator, bob = alice_and_bob(tmp_path, node.url, task_decl("kill", make_assets(tmp_path, SCRIPT), expires_in=400),
                                 script_timeout_s=20)
    try:
        creator.start()
        bob.start()
        asyncio.run(kill_in_pool(node, "Bob", at_step(bob, "task", "uploaded")))  # the send, in the pool
        time.sleep(1)
        node.start(timeout=90)
        asyncio.run(kill_in_pool(node, "Alice", at_step(creator, "submission", "paying")))  # the accept
        assert creator.stop(signal.SIGTERM) == 0  # waiting for an inclusion that cannot come: bounded
        node.start(timeout=90)
        creator.start()
        task, subs = asyncio.run(settle(node.url, "kill", decided(1), timeout=120))
        assert [s.status for s in subs] == [SubmissionStatus.ACCEPTED] and subs[0].paid_amount == PAYS
        assert asyncio.run(payments(node.url)) == [subs[0].submission_id], "paid other than exactly once"
        assert bob.proc.poll() is None, "the worker exited because its node restarted"
        bob_log = bob.log.read_text()
        assert '"extrinsics_recovered"' in bob_log and '"reason": "reconnected"' in bob_log, bob_log[-3000:]
        assert [e["after_s"] for e in logged(creator, "steps_interrupted")] == [GRACE_S]
        wait_step(bob, "task", "submitted")
    finally:
        for agent in (creator, bob):
            if agent.proc is not None and agent.proc.poll() is None:
                agent.stop()
        node.stop()


def test_sigterm_while_a_task_script_runs_stops_the_worker_within_the_grace(devnet, tmp_path):
    """A long script (a detector on a loaded host) is killed once the grace is over, its step kept
    where it stands for the next start: a farm's SIGTERM never waits out the script (CI once saw an
    annotator outlive the farm's 120 s stop timeout)."""
    creator, bob = alice_and_bob(tmp_path, devnet.url, task_decl("long", make_assets(tmp_path, "touch started\nsleep 300\n"
                                                                                     + SCRIPT)), script_timeout_s=600)
    try:
        creator.start()
        bob.start()
        wait_step(bob, "task", "fetched")
        deadline = time.monotonic() + 60  # the script is running: it marks its work dir as it starts
        while not list(bob.state.glob("work/task-*/submission-*/started")):
            assert time.monotonic() < deadline, "the script never started"
            time.sleep(0.05)
        assert bob.stop(signal.SIGTERM) == 0  # within Agent.stop's 30 s: the grace, then the exit
        assert '"agent_stop_overdue"' not in bob.log.read_text()
        assert [e["after_s"] for e in logged(bob, "steps_interrupted")] == [GRACE_S]
        assert bob.journal()[("task", next(i for (k, i) in bob.journal() if k == "task"))] == "fetched"
    finally:
        for agent in (creator, bob):
            if agent.proc is not None and agent.proc.poll() is None:
                agent.stop()
