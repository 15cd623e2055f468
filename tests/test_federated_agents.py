"""A federated campaign as an operator runs it: a real devnet, a creator agent and contributor agents
as processes (``decentralml agent run``), real sandboxes, the example configs of ``configs/`` with each
contributor's private share of the digits. One contributor holds label-flipped data. The model
engineer's verdicts are logic: that test runs its agents in process (tests/agents_inprocess.py)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
from agent_process import Agent, free, stop_all
from agents_inprocess import events, market_fixture
from cli_runner import decentralml
from devnet_process import free_port
from structlog.testing import capture_logs
from substrateinterface import Keypair

from agents.demo_federated import configs
from decentralml_core.chain import ChainClient
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import SubmissionStatus, TaskType
from decentralml_core.federated import digits
from decentralml_core.sandbox import bubblewrap_works

pytestmark = pytest.mark.skipif(not bubblewrap_works(), reason="agents run task scripts in bubblewrap")
PAYS = 10**12
market = market_fixture()


def start(tmp_path: Path, raw: dict[str, dict], names) -> dict[str, Agent]:
    agents = {}
    for name in names:
        agents[name] = Agent(tmp_path, name, raw[name]).start()
    return agents


def wait_campaign(creator: Agent, steps=("done",), timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (creator.state / "journal.sqlite").exists():
            entry = creator.entry("campaign", "digits")
            if entry is not None and entry.step in steps:
                return entry
        assert creator.proc.poll() is None, creator.log.read_text()[-3000:]
        time.sleep(0.5)
    raise TimeoutError(creator.log.read_text()[-3000:])


async def task_count(url: str) -> int:
    async with await ChainClient.connect(url) as client:
        return len(await Market(client).tasks())


async def round_submissions(url: str, history: list[dict], since: int):
    """The campaign tasks created since task ``since`` (the devnet is shared by the module's tests)."""
    async with await ChainClient.connect(url) as client:
        market = Market(client)
        ids = {h["task_id"] for h in history if "task_id" in h}
        tasks = [t for t in await market.tasks() if t.task_id >= since and t.task_type == TaskType.MODEL_CONTRIBUTOR]
        return tasks, [s for s in await market.submissions() if s.task_id in ids]


CHROMIUM = Path("/usr/bin/chromium")


def plot_width(base: str, token: str) -> int:
    """Log in to the creator's review page in Chromium; the campaign plot's rendered width in pixels."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(base + "/")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            image = page.locator("img.campaign-plot")
            image.wait_for()
            page.wait_for_function("document.querySelector('img.campaign-plot').complete")
            return page.evaluate("document.querySelector('img.campaign-plot').naturalWidth")
        finally:
            browser.close()


def address(name: str) -> str:
    return Keypair.create_from_uri(f"//{name}").ss58_address


def test_a_campaign_improves_the_model_and_pays_only_useful_updates_once(devnet, tmp_path):
    raw = configs(devnet.url, tmp_path)
    names = ["bob", "charlie", "dave", "eve"]
    before = {n: free(devnet.url, n.capitalize()) for n in names}
    since = asyncio.run(task_count(devnet.url))
    agents = start(tmp_path, raw, names)
    for agent in agents.values():
        agent.wait_ready()
    port = free_port()
    raw["creator"]["review"] = {"web_port": port, "token_env": "REVIEW_TOKEN_UNSET_IN_TEST"}
    agents["creator"] = Agent(tmp_path, "creator", raw["creator"]).start()
    try:
        entry = wait_campaign(agents["creator"])
        history = entry.data["history"]
        accuracy = [h["test_acc"] for h in history]
        assert [h["round"] for h in history] == [0, 1, 2, 3]
        assert accuracy[0] < 0.2 < accuracy[1] < accuracy[3] and accuracy[3] > 0.75, accuracy

        tasks, subs = asyncio.run(round_submissions(devnet.url, history, since))
        assert len(tasks) == 3  # one task per round, none published twice
        by_worker = {n: [s for s in subs if s.worker == address(n.capitalize())] for n in names}
        for name in ("bob", "charlie", "dave"):
            assert [s.status for s in by_worker[name]] == [SubmissionStatus.ACCEPTED] * 3
            assert all(s.paid_amount == PAYS for s in by_worker[name])
            gained = free(devnet.url, name.capitalize()) - before[name]
            assert 3 * PAYS - 10**10 < gained < 3 * PAYS  # paid three times, minus fees
        assert [s.status for s in by_worker["eve"]] == [SubmissionStatus.REJECTED] * 3
        assert free(devnet.url, "Eve") < before["eve"]  # fees only
        reasons = [agents["creator"].entry("submission", s.submission_id).data["verdict"]["reason"]
                   for s in by_worker["eve"]]
        assert all(r.startswith("model_update: ") for r in reasons)
        assert all("outlier" in r or "worse than the global model" in r for r in reasons), reasons

        blocks = [p.read_bytes() for p in (tmp_path / "store" / "blocks").iterdir()]
        for i in range(4):  # no byte run of any contributor's private data in anything published
            x, y = digits.load_xy(tmp_path / "data" / f"contributor-{i}" / "train.npz")
            for probe in (x[:4].tobytes(), x[-4:].tobytes(), y[:32].tobytes()):
                assert not any(probe in block for block in blocks)
        plot = (tmp_path / "creator" / "campaign-digits.png").read_bytes()
        assert plot.startswith(b"\x89PNG")
        status = decentralml("campaign", "status", str(agents["creator"].path), "--json")
        [report] = json.loads(status.stdout)
        assert [(r["round"], r["accepted"], r["rejected"]) for r in report["rounds"]] == [(1, 3, 1), (2, 3, 1), (3, 3, 1)]
        assert [r["test_acc"] for r in report["rounds"]] == accuracy[1:]
        eves = [u for u in report["updates"] if u["worker"] == address("Eve")]
        assert [u["step"] for u in eves] == ["rejected"] * 3 and all(u["reason"] for u in eves)
        if CHROMIUM.exists():  # the review page shows the campaign's plot
            shown = plot_width(f"http://127.0.0.1:{port}", (agents["creator"].state / "review.token").read_text().strip())
            assert shown > 100
    finally:
        codes = stop_all(agents.values())
    assert all(code == 0 for code in codes.values()), codes


def engineer_config(tmp_path) -> dict:
    return {"role": "engineer", "key": {"dev": "Ferdie"}, "storage": {"root": str(tmp_path / "store")},
            "policy": {"min_blocks_left": 0, "max_concurrent": 2}, "sandbox": {"timeout_s": 60, "share_python": True}}


async def test_an_engineering_result_within_target_is_paid_and_one_beyond_it_rejected(market, tmp_path):
    data = digits.write_example(tmp_path / "data", 2)
    folder = Path(__file__).resolve().parents[1] / "assets" / "model_engineer"

    def task(name: str, max_bytes: int) -> dict:
        return {"name": name, "task_type": "ModelEngineer", "assets": str(folder), "question": "int8, please",
                "pays": PAYS, "strategy": "CustomAccept", "expires_in": 500,
                "validator": {"name": "model_restructure", "reference": str(folder / "model" / "model.npz"),
                              "test": str(data["test"]), "max_bytes": max_bytes, "max_drop": 0.02}}

    with capture_logs() as logs:
        await market.agent("engineer", engineer_config(tmp_path)).start().wait_ready()
        creator = market.creator([task("within", 2000), task("beyond", 1000)])
        market_view = Market(market.client)

        async def decided_both():
            subs = await market_view.submissions()
            if len(subs) == 2 and all(s.status in (SubmissionStatus.ACCEPTED, SubmissionStatus.REJECTED) for s in subs):
                return subs
            return None

        deadline = time.monotonic() + 120
        while (subs := await decided_both()) is None:
            assert time.monotonic() < deadline and creator.running, creator.journal()
            await asyncio.sleep(0.5)
        for s in subs:
            await creator.wait_until(lambda s=s: creator.journal().get(("submission", str(s.submission_id)))
                                     in ("paid", "rejected"), 30, "verdict journaled")
    verdicts = {creator.entry("submission", s.submission_id).data["verdict"]["reason"]: s for s in subs}
    [(ok_reason, ok)] = [(r, s) for r, s in verdicts.items() if "within target" in r]
    [(bad_reason, bad)] = [(r, s) for r, s in verdicts.items() if "too large" in r]
    assert ok.status == SubmissionStatus.ACCEPTED and ok.paid_amount == PAYS
    assert bad.status == SubmissionStatus.REJECTED and bad.paid_amount is None
    assert "> 1000" in bad_reason
    assert events(logs, "result_accepted", submission_id=ok.submission_id, amount=PAYS)
    (rejected,) = events(logs, "result_rejected", submission_id=bad.submission_id)
    assert "> 1000" in rejected["reason"]


def test_kill_9_of_the_creator_at_a_rounds_close_and_of_a_contributor_mid_training(devnet, tmp_path):
    raw = configs(devnet.url, tmp_path, contributors=("Bob", "Charlie", "Dave"), malicious=(), rounds=2,
                  engineering=True)
    for config in raw.values():
        if config["role"] == "contributor":
            config["sandbox"] = {**config["sandbox"], "timeout_s": 60}
    names = ["bob", "charlie", "dave"]
    alice = free(devnet.url, "Alice")
    since = asyncio.run(task_count(devnet.url))
    agents = start(tmp_path, raw, names)
    for agent in agents.values():
        agent.wait_ready()
    agents["engineer"] = Agent(tmp_path, "engineer", {**engineer_config(tmp_path), "node": devnet.url}).start().wait_ready()
    creator = agents["creator"] = Agent(tmp_path, "creator", raw["creator"]).start()
    try:
        deadline = time.monotonic() + 120  # Bob mid-round-1: assets fetched, the script running
        while not any(step in ("fetched", "ran") for (kind, _), step in agents["bob"].journal().items()
                      if kind == "task"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        agents["bob"].stop(signal.SIGKILL)
        agents["bob"].start()
        creator.wait_log("campaign_round_closed", timeout=180)  # the round's updates decided: aggregation next
        assert creator.stop(signal.SIGKILL) == -signal.SIGKILL
        creator.start()
        entry = wait_campaign(creator)
        tasks, subs = asyncio.run(round_submissions(devnet.url, entry.data["history"], since))
        assert len(tasks) == 2 and len(subs) == 6
        assert {s.status for s in subs} == {SubmissionStatus.ACCEPTED} and all(s.paid_amount == PAYS for s in subs)
        assert entry.data["history"][-1]["test_acc"] > entry.data["history"][0]["test_acc"]
        deadline = time.monotonic() + 120  # the final model handed to a model engineer: int8, within target
        while (creator.entry("published", "digits/engineering") is None
               or not any(e.data.get("task_id") == creator.entry("published", "digits/engineering").data["task_id"]
                          and e.step == "paid" for e in [creator.entry("submission", i) for i in range(100)] if e)):
            assert time.monotonic() < deadline, creator.log.read_text()[-2000:]
            time.sleep(0.5)
        spent = alice - free(devnet.url, "Alice")
        assert 7 * PAYS <= spent < 7 * PAYS + 10**10  # six updates and the engineering paid once each, plus fees
    finally:
        codes = stop_all(agents.values())
    assert all(code == 0 for code in codes.values()), codes
