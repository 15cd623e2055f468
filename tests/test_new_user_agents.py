"""A new user's agents and farm on a real devnet, as in tests/test_new_user.py (which holds the command's
mistakes; split so two test workers share the two): a config mistake or a journal from another chain is one
line, and the example farm runs as docs/operations.md says (an unfunded worker saying so once and waiting is
tests/test_agents_inprocess.py's)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.request

import yaml
from agent_process import Agent, wait_for
from cli_runner import CLI, decentralml
from devnet_process import DevnetProcess, free_port
from test_new_user import ALICE, ROOT, UNIT, js, one_line


def healthz(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        return json.loads(response.read())


def test_an_agent_follows_a_quiet_chain_and_refuses_a_restarted_one(tmp_path):
    """/healthz's chain_block moves on blocks without events; a journal from a forgotten --tmp devnet is refused
    with one line, and --fresh starts over (keeping the old journal)."""
    port = free_port()
    config = {"role": "annotator", "key": {"dev": "Dave"}, "metrics_port": port,
              "storage": {"root": str(tmp_path / "store")}}
    with DevnetProcess("--block-time", "0.3", log_path=tmp_path / "first.log") as first:
        agent = Agent(tmp_path, "annotator", {**config, "node": first.url}).start()
        try:
            seen = wait_for(lambda: (healthz_or_none(port) or {}).get("chain_block"), 90, "no chain_block")
            assert wait_for(lambda: (healthz_or_none(port) or {}).get("chain_block", 0) > seen, 30,
                            "chain_block did not advance on a quiet chain")
            sent = decentralml("account", "transfer", ALICE, "1", "--dev-key", "eve", env={"DECENTRALML_URL": first.url})
            assert sent.returncode == 0, sent.stderr  # one event: the agent's checkpoint names a block
            agent.wait_ready()
        finally:
            assert agent.stop() == 0
    with DevnetProcess("--block-time", "0.3", log_path=tmp_path / "second.log") as second:
        path = tmp_path / "restarted.yaml"
        path.write_text(yaml.safe_dump({"state_dir": str(agent.state), **config, "node": second.url}))
        out = subprocess.run([CLI, "--log-level", "error", "agent", "run", str(path)], capture_output=True,
                             text=True, timeout=120)
        one_line(out, "agent run", "holds the journal of another chain", "--tmp", "agent run --fresh")
        fresh = subprocess.Popen([CLI, "agent", "run", str(path), "--fresh"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: (healthz_or_none(port) or {}).get("chain_block") is not None, 90, "--fresh did not run")
        finally:
            fresh.send_signal(signal.SIGTERM)
            assert fresh.wait(timeout=60) == 0
        assert list(agent.state.glob("old-*/journal.sqlite"))  # the old journal kept aside


def healthz_or_none(port: int) -> dict | None:
    try:
        return healthz(port)
    except OSError:
        return None


EXAMPLE_FILES = ("file_1.jpg", "file_2.jpg", "file_3.jpg")


def example_assets(folder) -> None:
    """The example assets with the detection task cut to three of its 24 images: each of the example task's
    three annotators runs the detector on every image (~8 s of CPU for all 24), and what this test checks is
    the farm's path from publishing to a consensus paid, not the detector (tests/test_detection_task.py
    checks that on all 24). Three identical results agree on three images as they do on 24."""
    folder.mkdir()
    for part in (ROOT / "assets").iterdir():
        (folder / part.name).symlink_to(part)
    task = folder / "data_annotator"
    task.unlink()
    shutil.copytree(ROOT / "assets" / "data_annotator", task)
    for image in (task / "annotation_files").iterdir():
        if image.name not in EXAMPLE_FILES:
            image.unlink()


def test_the_example_farm_runs_on_a_devnet_as_the_docs_say(tmp_path):
    """docs/operations.md: set FARM_SEED, `farm fund`, `farm check --online`, `farm run` — and each missing
    step is one line, with nothing started (no escrow locked by a creator whose annotators cannot run)."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    example_assets(tmp_path / "assets")
    with DevnetProcess(log_path=tmp_path / "devnet.log") as node:
        for path in (tmp_path / "configs").glob("*.yaml"):
            text = path.read_text().replace("ws://127.0.0.1:9944", node.url)
            path.write_text(text.replace("metrics_base_port: 9700", f"metrics_base_port: {free_port()}"))
        farm = str(tmp_path / "configs" / "farm.yaml")
        env = {**os.environ, "DECENTRALML_URL": node.url, "COLUMNS": "200"}
        env.pop("FARM_SEED", None)

        def farm_cli(*args: str, process: bool = False, **kw) -> subprocess.CompletedProcess:
            return decentralml("--log-level", "error", "farm", *args, timeout=180, process=process,
                               env={"DECENTRALML_URL": node.url, "COLUMNS": "200", "FARM_SEED": None, **kw})

        out = farm_cli("check", farm)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert out.stderr.count("key.env: $FARM_SEED is not set") == 4  # one line per annotator
        out = farm_cli("run", farm, process=True)  # the supervisor's own process refuses to start
        assert out.returncode == 2 and "annotator-0: key.env: $FARM_SEED is not set" in out.stderr
        assert js(node, "task", "list") == []  # the creator was not started: nothing published or escrowed

        seed = {"FARM_SEED": "//farm-test"}
        out = farm_cli("check", farm, "--online", **seed)
        assert out.returncode == 1 and out.stderr.count("needs at least 0.01 UNIT for fees") == 4
        funded = json.loads(farm_cli("fund", farm, "--dev-key", "alice", "--json", **seed).stdout)
        assert [r["sent"] for r in funded] == [0] + [10 * UNIT] * 4  # the creator is Alice: already rich
        out = farm_cli("check", farm, "--online", **seed)
        assert out.returncode == 0 and "node reachable, fees covered" in out.stdout, out.stderr

        with open(tmp_path / "farm.log", "wb") as farm_log:
            proc = subprocess.Popen([CLI, "--log-level", "warning", "farm", "run", farm], env={**env, **seed},
                                    stdout=subprocess.DEVNULL, stderr=farm_log)
            try:
                paid = wait_for(lambda: [r for r in js(node, "result", "list") if r["paid_amount"]], 900,
                                "no annotator of the example farm was paid")
                assert paid[0]["paid_amount"] == UNIT
            finally:
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=180)
                assert code == 0, "\n".join([(tmp_path / "farm.log").read_text()[-2000:]] + [
                    f"--- {log.name}:\n{log.read_text()[-1500:]}" for log in (tmp_path / ".state" / "farm" / ".logs").glob("*.log")])


def test_agent_check_finds_what_agent_run_would_trip_on(devnet, tmp_path):
    config = tmp_path / "creator.yaml"
    config.write_text(yaml.safe_dump({
        "role": "creator", "node": devnet.url, "key": {"env": "CREATOR_KEY_NOT_SET"}, "state_dir": str(tmp_path / "s"),
        "tasks": [{"name": "t", "assets": str(tmp_path / "nope"), "question": "q", "pays": UNIT}]}))
    out = decentralml("agent", "check", str(config))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "key.env: $CREATOR_KEY_NOT_SET is not set" in out.stderr and "nope is not a folder" in out.stderr
    # a real process: the agent's own start-up refuses, one line
    out = subprocess.run([CLI, "--log-level", "error", "agent", "run", str(config)], capture_output=True, text=True,
                         timeout=90)
    one_line(out, "agent run", "key.env: $CREATOR_KEY_NOT_SET is not set", status=2)


def test_a_fresh_start_sets_aside_everything_bound_to_the_old_chain(tmp_path):
    """A new chain numbers tasks and submissions from 0 again: an old work/task-0/submission-0 left in
    place would be taken for the new task 0's verified assets. The login token is not the chain's."""
    from agents.commands.agent import start_fresh

    state = tmp_path / "state"
    for name in ("work/task-0/submission-0/start_task.sh", "results/submission-0/a.json", "campaigns/c/round-0.npz",
                 "journal.sqlite", "journal.sqlite-wal", "campaign-c.png", "review.token"):
        (state / name).parent.mkdir(parents=True, exist_ok=True)
        (state / name).write_text(name)
    aside = start_fresh(state)
    assert sorted(p.name for p in state.iterdir()) == sorted(["review.token", aside.name])
    assert (aside / "work/task-0/submission-0/start_task.sh").read_text() == "work/task-0/submission-0/start_task.sh"
    assert {p.name for p in aside.iterdir()} == {"work", "results", "campaigns", "journal.sqlite", "journal.sqlite-wal",
                                                 "campaign-c.png"}
