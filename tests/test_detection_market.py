"""The object-detection task through the market, as operators run it, the real detector in the sandbox:
IoU consensus deciding on two annotators' results (agents and devnet in process, tests/agents_inprocess.py),
and a person approving a result on the review page in real headless Chromium (devnet, creator and
annotator processes; screenshot kept in ``build/test-artifacts/``)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from agent_process import PAYS, Agent, decided, free, stop_all, task_decl
from agents_inprocess import events, market_fixture
from devnet_process import free_port
from structlog.testing import capture_logs

from decentralml_core.chain.model import SubmissionStatus
from decentralml_core.sandbox import bubblewrap_works

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "build" / "test-artifacts"
FILES = ("file_1.jpg", "file_2.jpg", "file_3.jpg")
pytestmark = pytest.mark.skipif(not bubblewrap_works(), reason="annotators run the detector in bubblewrap")
LABELS = ["circle", "square", "triangle"]
market = market_fixture()


def detection_assets(tmp_path: Path) -> Path:
    """The example task cut to three images, and its ground truth for two of them (``truth.json``)."""
    assets = tmp_path / "assets"
    shutil.copytree(ROOT / "assets" / "data_annotator", assets)
    for image in (assets / "annotation_files").iterdir():
        if image.name not in FILES:
            image.unlink()
    truth = json.loads((ROOT / "assets" / "data_annotator_truth" / "ground_truth.json").read_text())
    kept = {im["id"] for im in truth["images"] if im["file_name"] in FILES[:2]}
    (tmp_path / "truth.json").write_text(json.dumps({
        **truth, "images": [im for im in truth["images"] if im["id"] in kept],
        "annotations": [a for a in truth["annotations"] if a["image_id"] in kept]}))
    return assets


def annotator_config(name: str) -> dict:
    return {"role": "annotator", "key": {"dev": name}, "policy": {"min_blocks_left": 0, "class_labels": LABELS},
            "sandbox": {"timeout_s": 120, "share_python": True}}


@pytest.fixture
def detection(devnet, tmp_path):
    """The detection assets and agent-process builders."""
    assets = detection_assets(tmp_path)
    store, started = str(tmp_path / "store"), []

    def creator(task: dict, **extra) -> Agent:
        agent = Agent(tmp_path, "creator", {"role": "creator", "node": devnet.url, "key": {"dev": "Alice"},
                                             "storage": {"root": store}, "tasks": [task], **extra})
        started.append(agent.start())
        return agent

    def annotator(name: str) -> Agent:
        agent = Agent(tmp_path, name.lower(), {**annotator_config(name), "node": devnet.url, "storage": {"root": store}})
        started.append(agent.start())
        return agent

    def task(name: str, **terms) -> dict:
        return task_decl(name, assets, class_labels="circle,square,triangle", **terms)

    yield tmp_path, creator, annotator, task
    codes = stop_all([a for a in started if a.proc.poll() is None])
    assert all(code == 0 for code in codes.values()), codes


async def test_iou_consensus_accepts_two_agreeing_detectors(market, tmp_path):
    whole_sample = {label: [0, 0, 40, 40] for label in LABELS}
    with capture_logs() as logs:
        boss = market.creator([task_decl("consensus", detection_assets(tmp_path), class_labels=",".join(LABELS),
                                         max_assignments=2, strategy="CustomAccept", class_coordinates=whole_sample,
                                         validator={"name": "iou_consensus", "min_f1": 0.9})])
        for name in ("Dave", "Eve"):
            market.agent(name.lower(), annotator_config(name)).start()
        published, subs = await market.settle("consensus", decided(2), timeout=180)
        for s in subs:
            await boss.wait_step("submission", s.submission_id, "paid")
    assert json.loads(published.annotation_class_coordinates) == whole_sample  # the detector's crop, on chain
    assert [s.status for s in subs] == [SubmissionStatus.ACCEPTED] * 2
    for s in subs:  # the same detector on the same images: full agreement, scores journaled
        verdict = boss.entry("submission", s.submission_id).data["verdict"]
        assert verdict["accept"] is True and verdict["scores"]["f1"] == 1.0 and verdict["scores"]["results"] == 2
        assert events(logs, "result_accepted", submission_id=s.submission_id, amount=PAYS)
    assert len(events(logs, "sandbox_run", status="ok")) == 2  # each annotator ran the detector once


def fetch(url: str, data: bytes | None = None, headers: dict | None = None) -> int:
    try:
        return urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers or {}), timeout=30).status
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_for_review(boss: Agent, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = [key for key, step in boss.journal().items() if key[0] == "submission" and step == "review"]
        if waiting:
            return int(waiting[0][1])
        assert boss.proc.poll() is None, boss.log.read_text()[-2000:]
        time.sleep(0.3)
    raise TimeoutError("no result reached the review queue")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/ensure-system-packages.sh)")
def test_a_person_reviews_boxes_in_chromium_and_the_payment_lands(devnet, detection):
    from playwright.sync_api import expect, sync_playwright

    tmp, creator, annotator, task = detection
    port = free_port()
    boss = creator(task("review", strategy="ManualAccept",
                        validator={"name": "gold_standard", "truth": str(tmp / "truth.json")}),
                   review={"web_port": port, "auto_approve_after_s": 3600, "token_env": "REVIEW_TOKEN_UNSET_IN_TEST"})
    before = free(devnet.url, "Ferdie")
    annotator("Ferdie")
    sid = wait_for_review(boss)
    token = (boss.state / "review.token").read_text().strip()
    assert (boss.state / "review.token").stat().st_mode & 0o777 == 0o600
    base = f"http://127.0.0.1:{port}"
    submitted = json.loads((boss.state / "results" / f"submission-{sid}" / "annotations_coco.json").read_text())
    assert fetch(f"{base}/submissions/{sid}/accept", data=b"csrf=x") == 403  # no session, no decision

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(base + "/")
            assert page.url == base + "/login"
            page.fill("input[name=token]", "not-the-token")
            page.click("button[type=submit]")
            expect(page.get_by_role("alert")).to_have_text("wrong token")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            expect(page.locator("#queue li")).to_have_count(1)
            expect(page.locator("#queue")).to_contain_text("59 min")  # the auto-approval countdown
            page.click(f"a[href='/submissions/{sid}']")

            # the boxes: every submitted box drawn over its image, the gold boxes dashed beside them
            expect(page.locator("figure")).to_have_count(3)
            expect(page.locator("rect.box.submitted")).to_have_count(len(submitted["annotations"]))
            gold = sum(int(f.get_attribute("data-reference")) for f in page.locator("figure").all())
            assert gold > 0 and page.locator("figure[data-file='file_3.jpg']").get_attribute("data-reference") == "0"
            expect(page.locator("#scores")).to_contain_text("precision")
            expect(page.locator("#scores")).to_contain_text("recall")
            image = page.request.get(f"{base}/submissions/{sid}/images/file_1.jpg")
            assert image.status == 200 and image.headers["content-type"] == "image/jpeg"
            assert page.request.get(f"{base}/submissions/{sid}/images/..%2Fstart_task.sh").status == 404
            rendered = page.evaluate("() => [...document.querySelectorAll('svg image')].every(i => i.getBBox().width > 0)")
            assert rendered
            page.screenshot(path=str(ARTIFACTS / "review-page.png"), full_page=True)

            # forged forms are refused: a wrong CSRF token, and the right one from a foreign origin
            csrf = page.locator("input[name=csrf]").first.get_attribute("value")
            url = f"{base}/submissions/{sid}/reject"
            assert page.request.post(url, form={"csrf": "forged", "reason": "x"}).status == 403
            assert page.request.post(url, form={"csrf": csrf, "reason": "x"},
                                     headers={"Origin": "http://attacker.test"}).status == 403

            page.click("#approve")  # nothing else waits: back to the queue, the server's notice saying what happened
            expect(page.locator("p.empty")).to_be_visible()
            expect(page.locator("#notice")).to_have_text(f"submission {sid}: paid")
            page.goto(f"{base}/submissions/{sid}")
            expect(page.locator("#step")).to_have_text("paid")
            expect(page.locator("#chain-status")).to_contain_text(f"Accepted · paid {PAYS}")
            page.screenshot(path=str(ARTIFACTS / "review-page-approved.png"))
        finally:
            browser.close()
    gained = free(devnet.url, "Ferdie") - before
    assert PAYS - 10**9 < gained < PAYS  # paid once, minus the worker's two fees
