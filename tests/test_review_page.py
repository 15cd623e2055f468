"""The review page as an attacker and as a reviewer find it: a real devnet, a real creator agent process
serving the page, 24 results sent on chain by five workers (one lying about its image sizes, one
incomplete, one with 100,000 boxes) — then headers, hosts, login throttling, a TLS proxy, the size lie,
the big result, bulk approval, and a reviewer going through the queue with the keyboard alone in
headless Chromium at 1400 and 390 px (screenshots kept in ``build/test-artifacts/``)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import cv2
import pytest
from agent_process import CLI, PAYS, Agent, task_decl
from devnet_process import free_port
from substrateinterface import Keypair

from decentralml_core import work
from decentralml_core.chain import ChainClient
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import ResultSpec, StorageType, SubmissionStatus
from decentralml_core.storage import StorageConfig, open_store

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "build" / "test-artifacts"
FILES = ("file_1.jpg", "file_2.jpg", "file_3.jpg")
LABELS = ("circle", "square", "triangle")
TOKEN_ENV, TOKEN = "REVIEW_TOKEN_FOR_TESTS", "review-token-for-tests-0123456789"
PUBLIC = "https://review.test:8443"
WORKERS = ("Bob", "Charlie", "Dave", "Eve", "Ferdie")
# (task, worker) -> what the worker sends; everything else is an honest result
ODD = {("t0", "Bob"): "liar", ("t1", "Charlie"): "incomplete", ("t2", "Dave"): "huge", ("t4", "Eve"): "incomplete"}
RESULTS = [(f"t{t}", w) for t in range(4) for w in WORKERS] + [("t4", w) for w in WORKERS[:4]]
HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cache-Control")


def coco(kind: str, sizes: dict[str, tuple[int, int]]) -> dict:
    """A result: honest boxes on the real sizes, or a lie (double sizes, double boxes), or too few files,
    or 100,000 boxes."""
    scale = 2 if kind == "liar" else 1
    files = FILES[:2] if kind == "incomplete" else FILES
    images = [{"id": i + 1, "file_name": f, "width": sizes[f][0] * scale, "height": sizes[f][1] * scale}
              for i, f in enumerate(files)]
    per_image = 100_000 // len(files) + 1 if kind == "huge" else 3
    annotations = []
    for image in images:
        for n in range(per_image):
            x, y = (n * 7) % 260, (n * 13) % 180
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": n % 3 + 1,
                                "bbox": [x * scale, y * scale, 40 * scale, 40 * scale], "score": round(0.5 + (n % 50) / 100, 2)})
    if kind == "huge":
        annotations = annotations[:100_000]
    return {"images": images, "categories": [{"id": i + 1, "name": c} for i, c in enumerate(LABELS)],
            "annotations": annotations}


async def send_results(url: str, store_root: Path, tmp: Path, sizes) -> dict[tuple[str, str], int]:
    """Each worker takes each of its tasks and sends its result (published to the shared store)."""
    async with await ChainClient.connect(url) as client:
        market = Market(client)
        tasks, deadline = {}, time.monotonic() + 120
        while len(tasks) < 5:
            assert time.monotonic() < deadline, "the creator did not publish its five tasks"
            for task in await market.tasks():
                name = json.loads(task.annotation_json or "{}").get("name")
                if name in {f"t{i}" for i in range(5)}:
                    tasks[name] = task.task_id
            await asyncio.sleep(0.3)
        store = open_store("IPFS", StorageConfig(root=store_root))
        sids = {}

        async def worker(name: str) -> None:
            keypair = Keypair.create_from_uri(f"//{name}")
            for task_name, who in RESULTS:
                if who != name:
                    continue
                folder = tmp / "results" / f"{task_name}-{name}"
                folder.mkdir(parents=True)
                (folder / "annotations_coco.json").write_text(json.dumps(coco(ODD.get((task_name, name), "good"), sizes)))
                ref = await work.publish_outputs(store, folder)
                sid, _ = await market.assign_task(keypair, tasks[task_name])
                await market.send_task_result(keypair, ResultSpec(sid, result_path=ref, result_storage_type=StorageType.IPFS,
                                                                  result_storage_credentials=""))
                sids[(task_name, name)] = sid

        await asyncio.gather(*[worker(name) for name in WORKERS])
        return sids | {("task", name): task_id for name, task_id in tasks.items()}


@pytest.fixture(scope="module")
def review(devnet, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review")
    assets = tmp / "assets"
    shutil.copytree(ROOT / "assets" / "data_annotator", assets)
    for image in (assets / "annotation_files").iterdir():
        if image.name not in FILES:
            image.unlink()
    sizes = {f: cv2.imread(str(assets / "annotation_files" / f)).shape[1::-1] for f in FILES}
    store, port = tmp / "store", free_port()
    tasks = [task_decl(f"t{i}", assets, strategy="ManualAccept", max_assignments=5, validator="coco_schema",
                       class_labels=",".join(LABELS), question=f"Box every shape in set {i}", pays=(i + 1) * PAYS)
             for i in range(5)]
    mp = pytest.MonkeyPatch()
    mp.setenv(TOKEN_ENV, TOKEN)
    boss = Agent(tmp, "creator", {"role": "creator", "node": devnet.url, "key": {"dev": "Alice"},
                                  "storage": {"root": str(store)}, "tasks": tasks,
                                  "review": {"web_port": port, "token_env": TOKEN_ENV, "auto_approve_after_s": 36000,
                                             "public_origin": PUBLIC}}).start()
    try:
        sids = asyncio.run(send_results(devnet.url, store, tmp, sizes))
        deadline = time.monotonic() + 180
        while sum(step == "review" for (kind, _), step in boss.journal().items() if kind == "submission") < len(RESULTS):
            assert boss.proc.poll() is None, boss.log.read_text()[-3000:]
            assert time.monotonic() < deadline, boss.journal()
            time.sleep(0.3)
        yield {"base": f"http://127.0.0.1:{port}", "port": port, "sids": sids, "boss": boss, "sizes": sizes}
    finally:
        code = boss.stop()
        mp.undo()
    assert code == 0, boss.log.read_text()[-3000:]


# -- what the page computes, without I/O ---------------------------------------------------------------
def test_a_big_result_is_reduced_to_its_best_boxes_per_image_and_counted_whole():
    from agents.review_view import Drawable, drawable, pictures

    doc = coco("huge", {f: (320, 240) for f in FILES})
    reduced = drawable(doc, max_per_file=50)
    assert reduced.count == 100_000 and sum(reduced.totals.values()) == 100_000
    assert all(sum(len(r) for (f, _), r in reduced.boxes.items() if f == name) == 50 for name in FILES)
    best = max(a["score"] for a in doc["annotations"])
    assert all((rows[:, 4] == best).all() for rows in reduced.boxes.values())  # the highest scores kept
    again = Drawable.from_json(json.loads(json.dumps(reduced.to_json())))  # what the child process sends
    drawn = pictures(list(FILES), again, None, list(LABELS), {f: (320, 240) for f in FILES})
    assert [p.counts["submitted"] for p in drawn] == [reduced.totals[f] for f in FILES]
    assert [len(p.boxes) for p in drawn] == [50] * 3 and drawn[0].hidden == reduced.totals[FILES[0]] - 50


def test_pictures_use_the_real_size_and_keep_the_claim_apart():
    from agents.review_view import drawable, pictures

    lie = drawable(coco("liar", {f: (320, 240) for f in FILES}))
    drawn = pictures(list(FILES), lie, None, list(LABELS), {"file_1.jpg": (320, 240)})
    assert (drawn[0].width, drawn[0].height, drawn[0].declared, drawn[0].real) == (320, 240, (640, 480), True)
    assert (drawn[1].width, drawn[1].height, drawn[1].declared, drawn[1].real) == (640, 480, None, False)


def test_the_next_result_after_a_decision():
    from agents.review_view import after_decision, neighbours

    order = [4, 2, 9, 7]
    assert after_decision(order, 2) == 9 and after_decision(order, 7) == 4 and after_decision([7], 7) is None
    assert after_decision(order, 5) == 4  # decided elsewhere meanwhile: the first that waits
    assert neighbours(order, 9) == neighbours(order, 9).__class__(2, 7, 3, 4)
    assert neighbours(order, 5).next == 4 and neighbours(order, 5).position is None


# -- plain HTTP, as an attacker sends it ------------------------------------------------------------------
def call(port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None,
         source: str = "127.0.0.1") -> tuple[int, dict, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        data = urllib.parse.urlencode(body).encode() if body is not None else None
        sent = {"Content-Type": "application/x-www-form-urlencoded"} if data is not None else {}
        conn.request(method, path, body=data, headers={**sent, **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode(errors="replace")
    finally:
        conn.close()


def log_in(port: int, host: str | None = None, source: str = "127.0.0.1") -> tuple[str, str]:
    """(cookie, csrf) of a fresh session."""
    extra = {"Host": host} if host else {}
    status, headers, _ = call(port, "POST", "/login", {"token": TOKEN}, extra, source)
    assert status == 303, status
    cookie = headers["set-cookie"].split(";")[0]
    _, _, page = call(port, "GET", "/", headers={"Cookie": cookie, **extra}, source=source)
    return cookie, re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_every_response_carries_the_security_headers_and_only_known_hosts_are_served(review):
    port, sid = review["port"], review["sids"][("t3", "Bob")]
    cookie, _ = log_in(port)
    for method, path, auth, expected in [("GET", "/", False, 303), ("GET", "/login", False, 200),
                                         ("POST", f"/submissions/{sid}/accept", False, 403),
                                         ("GET", "/no-such-page", True, 404), ("GET", "/submissions/999999", True, 404),
                                         ("GET", "/review.css", False, 200), ("GET", "/review.js", False, 200),
                                         ("GET", f"/submissions/{sid}", True, 200)]:
        status, headers, _ = call(port, method, path, {} if method == "POST" else None,
                                  {"Cookie": cookie} if auth else {})
        assert status == expected, (method, path, status)
        missing = [h for h in HEADERS if h.lower() not in headers]
        assert not missing, (path, status, missing)
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    for host in ("attacker.test", f"attacker.test:{port}", "127.0.0.1.attacker.test"):  # DNS rebinding
        status, headers, _ = call(port, "GET", "/login", headers={"Host": host})
        assert status == 421 and "content-security-policy" in headers, host
    assert call(port, "GET", "/login", headers={"Host": f"localhost:{port}"})[0] == 200


def test_notices_come_from_the_session_never_from_the_url(review):
    port, sid = review["port"], review["sids"][("t3", "Charlie")]
    cookie, csrf = log_in(port)
    _, _, page = call(port, "GET", f"/submissions/{sid}?notice=Approved%3A+send+your+token+to+evil.test",
                      headers={"Cookie": cookie})
    assert "evil.test" not in page and 'id="notice"' not in page
    status, headers, _ = call(port, "POST", f"/submissions/{sid}/reject", {"csrf": csrf, "reason": ""},
                              {"Cookie": cookie})
    assert status == 303 and headers["location"] == f"/submissions/{sid}"
    _, _, page = call(port, "GET", headers["location"], headers={"Cookie": cookie})
    assert "a rejection needs a reason" in page  # the server's notice, shown once
    _, _, page = call(port, "GET", headers["location"], headers={"Cookie": cookie})
    assert 'id="notice"' not in page


def test_login_is_throttled_per_address(review):
    """300 wrong tokens as fast as they go: a handful are tried, the rest refused (429) — and then the
    right token is refused too, from that address only."""
    port, started = review["port"], time.monotonic()
    statuses = [call(port, "POST", "/login", {"token": f"guess-{i:04d}-guess-guess"}, source="127.0.0.2")[0]
                for i in range(300)]
    tried = 10 + int((time.monotonic() - started) * 0.2) + 1  # the burst, then one every 5 s
    assert statuses.count(403) <= tried and statuses.count(429) >= 300 - tried, {s: statuses.count(s) for s in set(statuses)}
    status, headers, page = call(port, "POST", "/login", {"token": TOKEN}, source="127.0.0.2")
    assert status == 429 and int(headers["retry-after"]) > 0 and "too many attempts" in page
    assert "content-security-policy" in headers
    assert call(port, "POST", "/login", {"token": TOKEN}, source="127.0.0.3")[0] == 303  # others are not held back
    throttled = [line for line in review["boss"].log.read_text().splitlines() if "review_login_throttled" in line]
    assert len(throttled) == 1 and "127.0.0.2" in throttled[0]  # one line, not 290


def test_a_weak_review_token_stops_start_up_with_one_line(review, devnet, tmp_path):
    agent = Agent(tmp_path, "weak", {"role": "creator", "node": devnet.url, "key": {"dev": "Alice"},
                                     "review": {"web_port": free_port(), "token_env": "WEAK_REVIEW_TOKEN"}})
    out = subprocess.run([CLI, "agent", "run", str(agent.path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "WEAK_REVIEW_TOKEN": "x"})
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "decentralml agent run: review.token_env: $WEAK_REVIEW_TOKEN holds a 1-character token; "
        "the review page needs at least 16 (unset it to have one generated)"]


def test_behind_a_tls_proxy_forms_work_and_the_cookie_is_secure(review):
    """The proxy terminates TLS and passes Host on: the page takes forms from the public https origin,
    sets a Secure cookie and HSTS — and still refuses the http origin of the same name."""
    port, sid = review["port"], review["sids"][("t3", "Dave")]
    host = urllib.parse.urlsplit(PUBLIC).netloc
    status, headers, _ = call(port, "POST", "/login", {"token": TOKEN}, {"Host": host, "Origin": PUBLIC})
    assert status == 303 and "secure" in headers["set-cookie"].lower() and "httponly" in headers["set-cookie"].lower()
    assert headers["strict-transport-security"].startswith("max-age=")
    cookie, csrf = log_in(port, host)
    form = {"csrf": csrf, "reason": ""}  # an empty reason: refused by the page, nothing decided
    ok = call(port, "POST", f"/submissions/{sid}/reject", form, {"Host": host, "Origin": PUBLIC, "Cookie": cookie})
    assert ok[0] == 303 and ok[1]["location"] == f"/submissions/{sid}"
    foreign = call(port, "POST", f"/submissions/{sid}/reject", form,
                   {"Host": host, "Origin": f"http://{host}", "Cookie": cookie})
    assert foreign[0] == 403
    direct = call(port, "POST", "/login", {"token": TOKEN})  # on loopback, plain http as before
    assert direct[0] == 303 and "secure" not in direct[1]["set-cookie"].lower()


def test_boxes_are_drawn_against_the_real_image_and_a_size_lie_is_flagged(review):
    port, sid = review["port"], review["sids"][("t0", "Bob")]
    cookie, _ = log_in(port)
    _, _, page = call(port, "GET", f"/submissions/{sid}", headers={"Cookie": cookie})
    width, height = review["sizes"]["file_1.jpg"]
    assert f'viewBox="0 0 {width} {height}"' in page and f'viewBox="0 0 {width * 2} {height * 2}"' not in page
    assert 'id="size-mismatch"' in page and f"file_1.jpg declared {width * 2}×{height * 2}, really {width}×{height}" in page
    assert f"coco_schema: file_1.jpg declared {width * 2}x{height * 2}, the image is {width}x{height}" in page
    assert review["boss"].entry("submission", sid).data["verdict"]["accept"] is False  # the advice says no
    _, _, honest = call(port, "GET", f"/submissions/{review['sids'][('t0', 'Charlie')]}", headers={"Cookie": cookie})
    assert 'id="size-mismatch"' not in honest and "coco_schema: ok" in honest


def test_a_100000_box_result_is_summarised_and_holds_up_no_other_request(review):
    port, sid = review["port"], review["sids"][("t2", "Dave")]
    cookie, _ = log_in(port)
    delays, done = [], threading.Event()

    def others() -> None:  # the agent's other requests while the big page is built
        while not done.is_set():
            started = time.monotonic()
            assert call(port, "GET", "/review.css")[0] == 200
            delays.append(time.monotonic() - started)
            time.sleep(0.02)

    poller = threading.Thread(target=others)
    poller.start()
    try:
        started = time.monotonic()
        status, _, page = call(port, "GET", f"/submissions/{sid}", headers={"Cookie": cookie})
        took = time.monotonic() - started
    finally:
        done.set()
        poller.join(timeout=30)
    print(f"100,000 boxes: {len(page) / 1e6:.2f} MB in {took:.2f} s; other requests: worst {max(delays):.3f} s "
          f"over {len(delays)}")
    assert status == 200 and len(page) < 1_000_000  # was 21 MB
    assert "100000 boxes" in page and page.count('class="box submitted"') == 3 * 200
    assert page.count("more not drawn") == 3
    assert max(delays) < 1.0  # was up to 1.9 s


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/ensure-system-packages.sh)")
def test_bulk_approval_takes_only_the_results_the_validator_passed(review, devnet):
    from playwright.sync_api import expect, sync_playwright

    base, sids = review["base"], review["sids"]
    task_id = sids[("task", "t4")]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            keyboard_login(page, base)
            page.goto(f"{base}/?task={task_id}")
            expect(page.locator("#queue li")).to_have_count(4)
            assert_fits_phone(page)
            page.screenshot(path=str(ARTIFACTS / "review-queue-390.png"), full_page=True)
            page.click("#bulk-approve")
            expect(page.locator("#notice")).to_have_text("approved 3 results")
            expect(page.locator("#queue li")).to_have_count(1)  # the incomplete one waits for a person
            assert page.locator("#queue li").get_attribute("data-submission") == str(sids[("t4", "Eve")])
        finally:
            browser.close()
    statuses = asyncio.run(chain_statuses(devnet.url, [sids[("t4", w)] for w in WORKERS[:4]]))
    assert statuses == [SubmissionStatus.ACCEPTED] * 3 + [SubmissionStatus.PENDING_VALIDATION]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/ensure-system-packages.sh)")
def test_a_reviewer_goes_through_the_queue_with_the_keyboard_alone(review, devnet):
    """21 waiting results, decided with keys only: the next opens after each decision; half at 1400 px,
    half at 390 px; the rejections' reasons shown on the result and in the history."""
    from playwright.sync_api import expect, sync_playwright

    base, sids = review["base"], review["sids"]
    # 20 in the other tasks, and t4's that the bulk approval left (1 after it, 4 if it ran alone or failed)
    t4 = asyncio.run(chain_statuses(devnet.url, [sids[("t4", w)] for w in WORKERS[:4]]))
    waiting = 20 + t4.count(SubmissionStatus.PENDING_VALIDATION)
    to_reject = {sids[k]: f"{ODD[k]} result, see the boxes" for k in ODD}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            keyboard_login(page, base)
            expect(page.locator("#queue li")).to_have_count(waiting)
            order = [int(li.get_attribute("data-submission")) for li in page.locator("#queue li").all()]
            expect(page.locator("#queue")).to_contain_text("Box every shape in set 0")
            expect(page.locator("#queue")).to_contain_text("1 UNIT")
            assert page.locator("#queue code.worker").first.inner_text().startswith("5")  # whole, copyable
            expect(page.locator("#queue .advice.fail").first).to_contain_text("coco_schema")
            page.screenshot(path=str(ARTIFACTS / "review-queue-1400.png"), full_page=True)

            page.keyboard.press("j")  # the oldest opens
            opened(page, order[0])
            page.keyboard.press("j")
            opened(page, order[1])
            page.keyboard.press("k")
            opened(page, order[0])
            legible_labels(page)
            page.screenshot(path=str(ARTIFACTS / "review-result-1400.png"), full_page=True)

            for n, sid in enumerate(order):
                if n == len(order) // 2:
                    page.set_viewport_size({"width": 390, "height": 844})
                    assert_fits_phone(page)
                    legible_labels(page)
                    page.screenshot(path=str(ARTIFACTS / "review-result-390.png"), full_page=True)
                opened(page, sid)
                if sid == sids[("t0", "Bob")]:
                    expect(page.locator("#size-mismatch")).to_be_visible()
                if sid in to_reject:
                    page.keyboard.press("r")
                    expect(page.locator("#reason")).to_be_focused()
                    page.keyboard.type(to_reject[sid])
                    page.keyboard.press("Enter")
                else:
                    page.keyboard.press("a")
                following = order[n + 1] if n + 1 < len(order) else None
                if following is not None:
                    opened(page, following)
                    expect(page.locator("#notice")).to_contain_text(f"submission {sid}: ")
            expect(page.locator("p.empty")).to_be_visible(timeout=30_000)
            expect(page.locator("#notice")).to_contain_text(f"submission {order[-1]}: ")
            recent = [sid for sid in order[-10:] if sid in to_reject]
            if recent:  # the history lists the last ten decisions, with their reasons
                expect(page.locator("#decided")).to_contain_text(to_reject[recent[-1]])
            liar = sids[("t0", "Bob")]
            page.screenshot(path=str(ARTIFACTS / "review-queue-done-390.png"), full_page=True)
            page.goto(f"{base}/submissions/{liar}")
            expect(page.locator("#reason-shown")).to_have_text(f"Rejected: {to_reject[liar]}")
        finally:
            browser.close()
    statuses = asyncio.run(chain_statuses(devnet.url, order))
    assert statuses == [SubmissionStatus.REJECTED if sid in to_reject else SubmissionStatus.ACCEPTED for sid in order]


# -- browser helpers ------------------------------------------------------------------------------------
def launch(pw):
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"])


def opened(page, sid: int) -> None:
    """Until result ``sid`` is the page, loaded with its script (keys pressed earlier would be lost)."""
    from playwright.sync_api import expect

    expect(page.locator("h1")).to_have_text(re.compile(rf"^Submission #{sid}\b"), timeout=30_000)
    page.wait_for_load_state("load")


def keyboard_login(page, base: str) -> None:
    from playwright.sync_api import expect

    page.goto(base + "/")
    assert page.url == base + "/login"
    # autofocus lands at a rendering step that may follow "load" on a loaded machine: keys typed before it
    # are lost (CI once saw the login never leave /login)
    expect(page.locator("input[name=token]")).to_be_focused(timeout=30_000)
    page.keyboard.type(TOKEN)
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/")
    page.wait_for_load_state("load")


def assert_fits_phone(page) -> None:
    """No sideways scrolling at 390 px, and the buttons big enough for a thumb (44 px)."""
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    for button in page.locator("main button").all():
        assert button.bounding_box()["height"] >= 44, button.inner_text()


def legible_labels(page) -> None:
    """Labels are white on a black halo drawn under them (21:1 between the two, whatever the image),
    at least 10 px tall on screen."""
    label = page.locator("text.label").first
    style = label.evaluate("t => { const s = getComputedStyle(t); return [s.fill, s.stroke, s.paintOrder, "
                           "parseFloat(s.strokeWidth), t.getBoundingClientRect().height]; }")
    fill, stroke, order, width, height = style
    assert fill == "rgb(255, 255, 255)" and stroke == "rgb(0, 0, 0)" and order.startswith("stroke"), style
    assert width >= 2 and height >= 10, style


async def chain_statuses(url: str, sids: list[int]) -> list[SubmissionStatus]:
    async with await ChainClient.connect(url) as client:
        market = Market(client)
        return [(await market.submission(sid)).status for sid in sids]
