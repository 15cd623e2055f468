"""The market across hosts: a devnet, a creator with its asset gateway, and two annotator hosts each
running a farm, in network namespaces on one machine (10.77.0.0/24), every server exposed with a
token and an allow-list. One host's link is cut mid-task and restored: every task is still done
once and paid once (results travel back to the creator through the annotators' gateways).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from agent_process import PAYS

from agents.journal import Journal
from decentralml_core.sandbox import bubblewrap_works
from decentralml_core.testing.testnet import TestNetwork, unavailable

REASON = unavailable()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"test hosts need network namespaces: {REASON}"),
              pytest.mark.skipif(not bubblewrap_works(), reason="agents run task scripts in bubblewrap")]
CLI = [sys.executable, "-m", "agents.cli", "--log-level", "info"]
SCRIPT = "sleep 2\nmkdir -p outputs\necho '{\"boxes\": []}' > outputs/file_1.json\n"
TASKS, SLOTS = 3, 2
ENV = {"DEVNET_TOKEN": "devnet-token-0123456789abcdef", "GATEWAY_TOKEN": "gateway-token-0123456789abcdef"}
ENV |= {"DECENTRALML_NODE_TOKEN": ENV["DEVNET_TOKEN"], "DECENTRALML_GATEWAY_TOKEN": ENV["GATEWAY_TOKEN"]}
EXPOSE = ["--allow", "10.77.0.0/24"]


def journal_steps(state_dir: Path, kind: str) -> dict[str, str]:
    if not (state_dir / "journal.sqlite").exists():
        return {}
    journal = Journal(state_dir / "journal.sqlite")
    try:
        return {e.id: e.step for e in journal.entries(kind)}
    finally:
        journal.close()


def wait_for(what: str, check, timeout: float, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"{proc.args[3:8]} exited with {proc.returncode} while waiting for {what}"
        if value := check():
            return value
        time.sleep(0.3)
    raise TimeoutError(what)


def test_tasks_are_done_and_paid_once_across_hosts_through_a_cut_link(tmp_path):
    folder = tmp_path / "assets"
    (folder / "annotation_files").mkdir(parents=True)
    (folder / "annotation_files" / "file_1.jpg").write_bytes(b"\xff\xd8 an image" * 100)
    (folder / "start_task.sh").write_text(SCRIPT)
    with TestNetwork() as net:
        chain, creator, hosts = net.host("chain"), net.host("creator"), [net.host("ann1"), net.host("ann2")]
        node, gateway = f"ws://{chain.address}:9944", f"http://{creator.address}:8080"
        devnet = chain.popen([*CLI, "devnet", "--host", chain.address, "--tmp", "--token-env", "DEVNET_TOKEN",
                              *EXPOSE], log=tmp_path / "devnet.log", env=ENV)
        creator.wait_listening(chain.address, 9944, proc=devnet)
        servers = [devnet]
        for host in (creator, *hosts):  # each host shares its store: assets out, results back
            servers.append(host.popen([*CLI, "storage", "serve", "--host", host.address, "--root",
                                       str(tmp_path / host.name / "store"), "--token-env", "GATEWAY_TOKEN", *EXPOSE],
                                      log=tmp_path / f"{host.name}-gateway.log", env=ENV))
            host.wait_listening(host.address, 8080, proc=servers[-1])

        farms, workers = [], {}
        for host, names in zip(hosts, (["bob", "charlie"], ["dave", "eve"]), strict=True):
            farm = tmp_path / host.name / "farm.yaml"
            farm.write_text(yaml.safe_dump({
                "state_root": "state", "defaults": {
                    "role": "annotator", "node": node, "storage": {"root": "store", "gateways": [gateway]},
                    "policy": {"min_blocks_left": 0, "max_concurrent": 2}, "sandbox": {"timeout_s": 30}},
                "agents": {name: {"overrides": {"key": {"dev": name}}} for name in names}}))
            farms.append(host.popen([*CLI, "farm", "run", str(farm)], log=tmp_path / f"{host.name}-farm.log", env=ENV))
            workers |= {name: (host, tmp_path / host.name / "state" / name) for name in names}
        wait_for("every annotator following the chain", lambda: all(
            (s / "journal.sqlite").exists() and Journal(s / "journal.sqlite").meta("checkpoint") is not None
            for _, s in workers.values()), 90, [*servers, *farms])

        boss_state = tmp_path / "creator" / "state"
        (tmp_path / "creator" / "creator.yaml").write_text(yaml.safe_dump({
            "role": "creator", "node": node, "key": {"dev": "Alice"}, "state_dir": str(boss_state),
            "storage": {"root": str(tmp_path / "creator" / "store"),
                        "gateways": [f"http://{h.address}:8080" for h in hosts]},
            "tasks": [{"name": f"net-{i}", "assets": str(folder), "question": "Label", "pays": PAYS,
                       "max_assignments": SLOTS, "expires_in": 10_000, "strategy": "CustomAccept",
                       "validator": "json_outputs"} for i in range(TASKS)]}))
        boss = creator.popen([*CLI, "agent", "run", str(tmp_path / "creator" / "creator.yaml")],
                             log=tmp_path / "creator.log", env=ENV)

        def in_flight():  # a host's tasks claimed but not yet submitted
            for host, state in workers.values():
                busy = [(state, t) for t, step in journal_steps(state, "task").items()
                        if step in ("claimed", "fetched", "ran", "uploaded")]
                if busy:
                    return host, busy
        victim, busy = wait_for("a task in progress", in_flight, 90, [*servers, *farms, boss])
        net.cut(victim)
        time.sleep(8)
        net.restore(victim)
        restored = time.time()

        wait_for(f"{TASKS * SLOTS} results paid", lambda: list(journal_steps(boss_state, "submission").values())
                 == ["paid"] * (TASKS * SLOTS), 150, [*servers, *farms, boss])
        listed = creator.run([*CLI, "result", "list", "--url", node, "--json"], env=ENV)
        assert listed.returncode == 0, listed.stderr
        results = json.loads(listed.stdout)
        assert len(results) == TASKS * SLOTS
        assert {r["status"] for r in results} == {"Accepted"} and {r["paid_amount"] for r in results} == {PAYS}
        assert len({(r["task_id"], r["worker"]) for r in results}) == TASKS * SLOTS  # nobody twice on a task
        submitted = [t for _, s in workers.values() for t, step in journal_steps(s, "task").items()
                     if step == "submitted"]
        assert sorted(submitted) == sorted(str(r["task_id"]) for r in results)  # each claim done once
        assert not [step for _, s in workers.values() for step in journal_steps(s, "task").values()
                    if step == "failed"]
        finished = []  # the work cut off mid-task went on once the link was back
        for state, task_id in busy:
            journal = Journal(state / "journal.sqlite")
            finished.append(journal.get("task", task_id))
            journal.close()
        assert {e.step for e in finished} == {"submitted"} and max(e.updated for e in finished) > restored
