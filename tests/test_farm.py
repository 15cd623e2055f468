"""A farm as an operator runs it: `decentralml farm run` supervising real agent processes on a real devnet.

One scenario: an agent killed with -9 comes back (and the farm's tasks are all paid once), `farm
status` shows the table, and SIGTERM stops every agent only after the script in flight has finished.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import get_args

import pytest
import yaml
from agent_process import CLI, PAYS, decided, settle, task_decl
from cli_runner import decentralml
from devnet_process import free_port
from substrateinterface import Keypair

from agents.config import ConfigError
from agents.farm.config import load_farm
from agents.journal import Journal
from decentralml_core.chain import ChainClient
from decentralml_core.chain.model import SubmissionStatus
from decentralml_core.sandbox import bubblewrap_works

SLOW_SCRIPT = "sleep 3\nmkdir -p outputs\necho '{}' > outputs/result.json\n"


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_farm_file_errors_name_the_key_path(tmp_path):
    write(tmp_path / "annotator.yaml", {"role": "annotator", "key": {"dev": "Bob"}, "state_dir": "x"})
    farm = {"state_root": "state", "agents": {"annotator": {"count": 2, "config": "annotator.yaml",
                                                             "overrides": {"policy": {"min_pay": -1}}}}}
    with pytest.raises(ConfigError, match=r"agents\.annotator\[0\]\.policy\.min_pay: Input should be greater"):
        load_farm(write(tmp_path / "farm.yaml", farm))
    farm["agents"]["annotator"]["overrides"] = {}
    with pytest.raises(ConfigError, match="annotator-0 and annotator-1 sign with the same key"):
        load_farm(write(tmp_path / "farm.yaml", farm))
    farm["agents"]["annotator"]["overrides"] = {"key": {"dev": "Bob", "derive": "//farm/{index}"}}
    farm["agents"]["creator"] = {"overrides": {"role": "creator", "key": {"dev": "Alice"}}, "restart": 1}
    with pytest.raises(ConfigError, match=r"agents\.creator\.restart: Extra inputs are not permitted"):
        load_farm(write(tmp_path / "farm.yaml", farm))
    del farm["agents"]["creator"]["restart"]
    loaded = load_farm(write(tmp_path / "farm.yaml", farm))
    assert [s.name for s in loaded.agents] == ["annotator-0", "annotator-1", "creator"]
    addresses = {s.config.key.load().ss58_address for s in loaded.agents}
    assert Keypair.create_from_uri("//Bob//farm/1").ss58_address in addresses and len(addresses) == 3
    assert loaded.agents[1].config.state_dir == (tmp_path / "state" / "annotator-1").resolve()
    assert len({s.config.metrics_port for s in loaded.agents}) == 3
    assert load_farm(Path(__file__).parents[1] / "configs" / "farm.yaml").agents  # the example validates


def test_rendezvous_peers_are_addresses_or_addresses_with_their_capacity(tmp_path):
    farm = {"state_root": "state", "rendezvous": {"grace_s": 1, "peers": ["5Peer", {"address": "5Big", "max_concurrent": 8}]},
            "agents": {"annotator": {"overrides": {"role": "annotator", "key": {"dev": "Bob"}}}}}
    assert load_farm(write(tmp_path / "farm.yaml", farm)).rendezvous.capacities() == {"5Peer": None, "5Big": 8}
    farm["rendezvous"]["peers"][1]["max_concurrent"] = 0
    with pytest.raises(ConfigError, match=r"rendezvous\.peers\.1\.max_concurrent: Input should be greater"):
        load_farm(write(tmp_path / "farm.yaml", farm))


def test_a_peer_says_its_role_or_takes_this_hosts_one_role(tmp_path):
    """A peer's role fixes the one task type it is ranked for; unset, it is this host's workers' role
    (one role: as before) — with several, the file is refused with one line saying which peer to fix."""
    from agents.config import ROLE_TASK_TYPES
    from agents.farm.config import Peer

    roles, _ = get_args(Peer.model_fields["role"].annotation)  # Literal[...] | None
    assert set(get_args(roles)) == set(ROLE_TASK_TYPES)  # the worker roles of agent configs
    peers = ["5Peer", {"address": "5Big", "max_concurrent": 8, "role": "contributor"}]
    farm = {"state_root": "state", "rendezvous": {"grace_s": 1, "peers": peers},
            "agents": {"annotator": {"count": 2, "overrides": {"role": "annotator", "key": {"dev": "Bob", "derive": "//{index}"}}},
                       "creator": {"overrides": {"role": "creator", "key": {"dev": "Alice"}}}}}  # a creator: no role
    loaded = load_farm(write(tmp_path / "farm.yaml", farm))
    assert loaded.rendezvous.roles() == {"5Peer": "annotator", "5Big": "contributor"}
    assert loaded.rendezvous.capacities() == {"5Peer": None, "5Big": 8}
    farm["rendezvous"]["peers"][1]["role"] = "labeller"
    with pytest.raises(ConfigError) as bad:
        load_farm(write(tmp_path / "farm.yaml", farm))
    assert str(bad.value).endswith("rendezvous.peers.1.role: Input should be 'annotator', 'engineer' or 'contributor'")
    farm["rendezvous"]["peers"][1]["role"] = "contributor"
    farm["agents"]["contributor"] = {"overrides": {"role": "contributor", "key": {"dev": "Charlie"}}}
    with pytest.raises(ConfigError) as mixed:
        load_farm(path := write(tmp_path / "farm.yaml", farm))
    assert str(mixed.value) == (f"{path}: rendezvous.peers.0: this host's workers have several roles (annotator, "
                                "contributor): set role on this peer ({address: 5Peer, role: annotator|engineer|contributor})")
    out = decentralml("farm", "check", str(path), timeout=60)  # the operator's view: one line, no traceback
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "set role on this peer" in out.stderr, out.stderr
    farm["rendezvous"]["peers"][0] = {"address": "5Peer", "role": "engineer"}
    assert load_farm(write(tmp_path / "farm.yaml", farm)).rendezvous.roles() == {"5Peer": "engineer", "5Big": "contributor"}


def farm_status(farm: Path, *extra: str) -> list[dict]:
    out = decentralml("farm", "status", str(farm), "--json", *extra, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_for(what: str, check, timeout: float = 60, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            assert proc.poll() is None, f"the supervisor exited with {proc.returncode} while waiting for {what}"
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise TimeoutError(what)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.skipif(not bubblewrap_works(), reason="agents run task scripts in bubblewrap")
def test_farm_restarts_a_killed_agent_and_stops_all_after_work_in_flight(devnet, tmp_path):
    folder = tmp_path / "assets"
    (folder / "annotation_files").mkdir(parents=True)
    (folder / "annotation_files" / "file_1.jpg").write_bytes(os.urandom(1000))
    (folder / "start_task.sh").write_text(SLOW_SCRIPT)
    workers = [Keypair.create_from_uri(f"//Charlie//farm/{i}") for i in range(2)]

    async def fund():
        async with await ChainClient.connect(devnet.url) as client:
            await asyncio.gather(*[client.submit(Keypair.create_from_uri("//Charlie"), "Balances",
                                                 "transfer_keep_alive", {"dest": k.ss58_address, "value": 10**15})
                                   for k in workers])
    asyncio.run(fund())
    store = str(tmp_path / "store")
    write(tmp_path / "creator.yaml", {"role": "creator", "key": {"dev": "Alice"}, "state_dir": "ignored",
                                      "tasks": [task_decl(f"farm-{i}", folder) for i in range(3)]})
    farm = write(tmp_path / "farm.yaml", {
        "state_root": "state", "metrics_base_port": free_port(),
        "defaults": {"node": devnet.url, "storage": {"root": store}},
        "restart": {"backoff_initial_s": 0.5, "stop_timeout_s": 60},
        "agents": {"creator": {"config": "creator.yaml"},
                   "annotator": {"count": 2, "overrides": {
                       "role": "annotator", "key": {"dev": "Charlie", "derive": "//farm/{index}"},
                       "policy": {"min_blocks_left": 0, "max_concurrent": 2}, "sandbox": {"timeout_s": 20}}}}})
    with open(tmp_path / "farm.log", "wb") as log:
        supervisor = subprocess.Popen([CLI, "farm", "run", str(farm)], stdout=subprocess.DEVNULL, stderr=log)
    try:
        rows = wait_for("every agent healthy", lambda: (r := farm_status(farm, "--no-chain")) and all(
            x["state"] == "running" and x["health"] == "ok" for x in r) and r, proc=supervisor)
        victim = next(r for r in rows if r["agent"] == "annotator-0")
        os.kill(victim["pid"], signal.SIGKILL)
        back = wait_for("annotator-0 restarted", lambda: next(
            (r for r in farm_status(farm, "--no-chain") if r["agent"] == "annotator-0" and r["restarts"] == 1
             and r["state"] == "running" and r["health"] == "ok"), None), proc=supervisor)
        assert back["pid"] != victim["pid"] and "exited with -9" in back["last_error"]

        for i in range(3):
            _, subs = asyncio.run(settle(devnet.url, f"farm-{i}", decided(1), timeout=90))
            assert [s.status for s in subs] == [SubmissionStatus.ACCEPTED]
        rows = wait_for("the creator's journal has every payment", lambda: (r := farm_status(farm)) and next(
            x for x in r if x["agent"] == "creator")["done"] == 3 and r)
        by_name = {r["agent"]: r for r in rows}
        assert by_name["creator"]["earnings"] == -3 * PAYS
        annotators = [by_name["annotator-0"], by_name["annotator-1"]]
        assert sum(r["done"] for r in annotators) == 3 and sum(r["earnings"] for r in annotators) == 3 * PAYS
        assert all(r["failed"] == 0 for r in rows)

        # a fourth task: SIGTERM the farm while its script runs; the agent finishes that step first. The script
        # marks its work dir as it starts (a loaded machine: the mark, not a 3 s window of the journal, says it runs)
        marked = tmp_path / "marked"
        shutil.copytree(folder, marked)
        (marked / "start_task.sh").write_text("touch started\n" + SLOW_SCRIPT)
        created = decentralml("task", "create", "--url", devnet.url, "--dev-key", "alice", "--question", "slow",
                              "--pays", f"{PAYS}planck", "--strategy", "AutoAccept", "--annotation-type", "Image",
                              "--assets", str(marked), "--store-root", store, timeout=60)
        assert created.returncode == 0, created.stderr

        def running_script():
            for name in ("annotator-0", "annotator-1"):
                for mark in (tmp_path / "state" / name).glob("work/task-*/submission-*/started"):
                    return tmp_path / "state" / name / "journal.sqlite", mark.parts[-3].removeprefix("task-")
        journal_path, task_id = wait_for("a script running", running_script, timeout=180, proc=supervisor)
        pids = [r["pid"] for r in farm_status(farm, "--no-chain")]
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=90) == 0
        assert not any(alive(pid) for pid in pids)
        journal = Journal(journal_path)
        try:
            assert journal.get("task", task_id).step in ("ran", "uploaded", "submitted")  # not cut short
        finally:
            journal.close()
        assert {r["state"] for r in farm_status(farm, "--no-chain")} == {"down"}
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
