"""Agents as an operator runs them: real devnet, real agent processes, real sandbox — for what needs a
process: kill -9 mid-task, signals, a full disk, the CLI and metrics port of a running agent.

Each test writes YAML configs, starts `decentralml agent run` processes, and watches the chain and
the agents' journals until the market settles — then stops every agent with SIGTERM (exit 0). The
creator's and worker's logic is tested in process: tests/test_agents_inprocess.py.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from agent_process import CLI, GOOD_SCRIPT, PAYS, Agent, decided, free, make_assets, settle, stop_all, task_decl
from cli_runner import decentralml
from devnet_process import free_port

from decentralml_core.chain.model import SubmissionStatus
from decentralml_core.sandbox import bubblewrap_works

pytestmark = pytest.mark.skipif(not bubblewrap_works(), reason="agents run task scripts in bubblewrap")


@pytest.fixture
def market_setup(devnet, tmp_path):
    """Builders for assets, a creator and workers on this test's scratch dir; stops them all at the end."""
    started: list[Agent] = []
    store = str(tmp_path / "store")

    def assets(script: str = GOOD_SCRIPT) -> Path:
        return make_assets(tmp_path, script)

    def creator(tasks: list[dict], **extra) -> Agent:
        agent = Agent(tmp_path, "creator", {"role": "creator", "node": devnet.url, "key": {"dev": "Alice"},
                                             "storage": {"root": store}, "tasks": tasks, **extra})
        started.append(agent.start())
        return agent

    def worker(name: str, sandbox: dict | None = None, **policy) -> Agent:
        config = {"role": "annotator", "node": devnet.url, "key": {"dev": name}, "storage": {"root": store},
                  "policy": {"min_blocks_left": 0, **policy}, "sandbox": {"timeout_s": 5, **(sandbox or {})}}
        agent = Agent(tmp_path, name.lower(), config)
        started.append(agent.start())
        return agent.wait_ready()

    yield assets, creator, worker
    codes = stop_all([a for a in started if a.proc.poll() is None])
    assert all(code == 0 for code in codes.values()), codes


def test_kill_9_mid_task_resumes_and_is_paid_once(devnet, market_setup):
    assets, creator, worker = market_setup
    # the first run marks its work dir and waits to be killed; the run after the restart finds the mark and works
    script = "if [ ! -e started ]; then touch started; sleep 300; fi\n" + GOOD_SCRIPT
    creator([task_decl("crash", assets(script))])
    ferdie = worker("Ferdie", sandbox={"timeout_s": 600})
    before = free(devnet.url, "Ferdie")
    deadline = time.monotonic() + 180  # a loaded machine: the mark, not a moment, says the script is running
    while not list(ferdie.state.glob("work/task-*/submission-*/started")):
        assert time.monotonic() < deadline, ferdie.journal()
        time.sleep(0.05)
    assert ferdie.stop(signal.SIGKILL) == -signal.SIGKILL
    ferdie.start()  # same state dir: resumes from the journal
    task, subs = asyncio.run(settle(devnet.url, "crash", decided(1)))
    assert len(subs) == 1 and subs[0].status == SubmissionStatus.ACCEPTED
    assert ferdie.journal()[("task", str(task.task_id))] == "submitted"
    assert PAYS - 10**9 < free(devnet.url, "Ferdie") - before < PAYS


def test_config_errors_stop_start_up_with_the_key_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("role: annotator\nkey: {dev: Bob}\nstate_dir: s\npolicy: {max_concurrent: 0}\n")
    out = subprocess.run([CLI, "agent", "run", str(bad)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "policy.max_concurrent" in out.stderr
    bad.write_text("role: annotator\nkey: {dev: Bob}\nstate_dir: s\nsandbox: {timeout: 5}\n")
    out = subprocess.run([CLI, "agent", "check", str(bad)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "sandbox.timeout" in out.stderr and "Extra inputs" in out.stderr


def test_review_queue_metrics_and_status(devnet, market_setup, tmp_path):
    assets, creator, worker = market_setup
    boss = creator([task_decl("review", assets(), strategy="ManualAccept")], metrics_port=free_port())
    worker("Dave")
    task, subs = asyncio.run(settle(devnet.url, "review", lambda t, s: s and s[0].status == "PendingValidation"))
    sid = subs[0].submission_id
    deadline = time.monotonic() + 20
    while boss.journal().get(("submission", str(sid))) != "review":
        assert time.monotonic() < deadline, boss.journal()
        time.sleep(0.2)
    listed = json.loads(decentralml("review", "list", "--config", str(boss.path), "--json").stdout)
    assert [r["submission_id"] for r in listed] == [sid]
    out = decentralml("review", "accept", str(sid), "--config", str(boss.path), "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == {"accepted": [sid]}, out.stderr
    asyncio.run(settle(devnet.url, "review", decided(1)))
    while boss.journal().get(("submission", str(sid))) != "paid":  # the agent notices on its next sweep
        assert time.monotonic() < deadline + 20
        time.sleep(0.2)
    port = yaml.safe_load(boss.path.read_text())["metrics_port"]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'decentralml_tasks_published_total{role="creator",worker="creator"} 1.0' in metrics
    assert 'decentralml_results_seen_total{role="creator",worker="creator"} 1.0' in metrics
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read())
    assert health["ok"] is True and health["role"] == "creator"
    status = json.loads(decentralml("status", str(boss.state), "--json").stdout)
    assert {"kind": "submission", "step": "paid"}.items() <= next(r for r in status if r["kind"] == "submission").items()


def test_an_agent_waiting_for_its_node_stops_on_sigterm(tmp_path):
    agent = Agent(tmp_path, "waiting", {"role": "annotator", "node": f"ws://127.0.0.1:{free_port()}",
                                        "key": {"dev": "Bob"}, "storage": {"root": str(tmp_path / "store")}}).start()
    assert agent.wait_log("node_unreachable").stop() == 0, agent.log.read_text()[-2000:]


def test_a_full_disk_under_the_state_dir_is_one_clear_line(devnet, tmp_path):
    """Nothing can be journaled, so nothing is done: the agent exits 1 with one line naming the journal
    (its supervisor restarts it once there is room; make faults fills a worker's disk mid-run)."""
    agent = Agent(tmp_path, "full", {"role": "annotator", "node": devnet.url, "key": {"dev": "Bob"},
                                     "storage": {"root": str(tmp_path / "store")}})
    agent.state.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(agent.state)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={agent.state / 'filler'}", "bs=4k"], capture_output=True)
        assert agent.start().proc.wait(timeout=90) == 1
        log = agent.log.read_text()
        assert f"decentralml agent run: the journal in {agent.state}" in log and "Traceback" not in log, log[-2000:]
    finally:
        subprocess.run(["umount", "-l", str(agent.state)])
