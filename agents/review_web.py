"""The ManualAccept review page, served by the creator agent: the queue of results waiting for a person;
for each, its images with the submitted boxes drawn (and the validator's consensus or ground-truth
boxes, and scores); approve, or reject with a reason — decided on chain by the agent itself.

Security: loopback by default; a login token (``review.token_env``, else generated into
``state_dir/review.token``, mode 0600) opens a session cookie (HttpOnly, SameSite=Strict); every form
carries the session's CSRF token and a POST from another origin is refused; a strict
Content-Security-Policy (no scripts at all). Boxes are SVG drawn on the server: no JavaScript build.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode

import structlog
from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from .campaign import plot_path
from .creator import CreatorAgent, reference_path, result_path
from .review_view import countdown, pictures, queue

log = structlog.get_logger("agent.review")
COOKIE = "decentralml_review"
SESSION_S = 12 * 3600
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
               ".webp": "image/webp", ".bmp": "image/bmp"}
templates = Environment(loader=PackageLoader("agents", "templates"), autoescape=select_autoescape(["html"]))
templates.filters["units"] = lambda planck: f"{planck / 10**12:,.12g} UNIT"  # 12 decimals, like the chain's token


def review_token(env_name: str, state_dir: Path) -> tuple[str, Path | None]:
    """The login token from the environment, else one generated (once) into a 0600 file."""
    if os.environ.get(env_name):
        return os.environ[env_name], None
    path = state_dir / "review.token"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip(), path


class Sessions:
    """Logged-in browsers: session id → (CSRF token, expiry). In memory: a restart logs everyone out."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.open: dict[str, tuple[str, float]] = {}

    def login(self, offered: str) -> str | None:
        if not hmac.compare_digest(offered.encode(), self.token.encode()):
            return None
        session = secrets.token_urlsafe(32)
        self.open[session] = (secrets.token_urlsafe(32), time.time() + SESSION_S)
        return session

    def csrf(self, request: web.Request) -> str | None:
        """The CSRF token of the request's live session, or None when not logged in."""
        found = self.open.get(request.cookies.get(COOKIE, ""))
        if found is None or found[1] < time.time():
            return None
        return found[0]

    def logout(self, request: web.Request) -> None:
        self.open.pop(request.cookies.get(COOKIE, ""), None)


def render(name: str, status: int = 200, **context) -> web.Response:
    return web.Response(text=templates.get_template(name).render(**context), status=status,
                        content_type="text/html", headers=HEADERS)


class ReviewPage:
    def __init__(self, agent: CreatorAgent, token: str) -> None:
        self.agent = agent
        self.sessions = Sessions(token)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024, middlewares=[self.guard])
        app.router.add_get("/login", self.login_form)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/review.css", self.stylesheet)
        app.router.add_get("/", self.queue)
        app.router.add_get("/campaigns/{name}.png", self.campaign_plot)
        app.router.add_get("/submissions/{sid:\\d+}", self.submission)
        app.router.add_get("/submissions/{sid:\\d+}/images/{name}", self.image)
        app.router.add_post("/submissions/{sid:\\d+}/{decision:accept|reject}", self.decide)
        return app

    @web.middleware
    async def guard(self, request: web.Request, handler):
        """Everything but the login page and its stylesheet needs a session; every POST after login needs
        the session's CSRF token and, if the browser says where it comes from, this origin."""
        if request.path in ("/login", "/review.css"):
            return await handler(request)
        csrf = self.sessions.csrf(request)
        if csrf is None:
            if request.method == "GET":
                raise web.HTTPSeeOther("/login")
            raise web.HTTPForbidden(text="log in first")
        if request.method == "POST":
            origin = request.headers.get("Origin")
            form = await request.post()
            if (origin is not None and origin != f"{request.scheme}://{request.host}") or not hmac.compare_digest(
                    str(form.get("csrf", "")).encode(), csrf.encode()):
                log.warning("review_post_refused", path=request.path, origin=origin)
                raise web.HTTPForbidden(text="stale or foreign form: reload the page")
        request["csrf"] = csrf
        return await handler(request)

    async def login_form(self, request: web.Request) -> web.Response:
        return render("login.html")

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        session = self.sessions.login(str(form.get("token", "")))
        if session is None:
            log.warning("review_login_refused", remote=request.remote)
            return render("login.html", status=403, error="wrong token")
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, session, httponly=True, samesite="Strict", max_age=SESSION_S, path="/",
                            secure=request.secure)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.logout(request)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        return response

    async def stylesheet(self, request: web.Request) -> web.Response:
        css = templates.loader.get_source(templates, "review.css")[0]
        return web.Response(text=css, content_type="text/css", headers=HEADERS)

    async def queue(self, request: web.Request) -> web.Response:
        agent = self.agent
        rows = queue(agent.journal.entries("submission", steps=("review",)), time.time(),
                     agent.config.review.auto_approve_after_s)
        window = {}
        if agent.market.capabilities.task_terms and rows:  # the on-chain review window, where the task has one
            now = await agent.client.block_number()
            for row in rows:
                submission = await agent.market.submission(row.submission_id)
                window[row.submission_id] = submission.review_blocks_left(now) if submission else None
        decided = agent.journal.entries("submission", steps=("paid", "rejected"))[-10:][::-1]
        campaigns = [c.section.name for c in agent.campaigns
                     if plot_path(agent.config.state_dir, c.section.name).is_file()]
        return render("queue.html", rows=rows, window=window, decided=decided, campaigns=campaigns,
                      csrf=request["csrf"])

    async def campaign_plot(self, request: web.Request) -> web.FileResponse:
        """A campaign's global-model accuracy per round, as the campaign last drew it."""
        name = request.match_info["name"]
        if name not in {c.section.name for c in self.agent.campaigns}:
            raise web.HTTPNotFound()
        path = plot_path(self.agent.config.state_dir, name)
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={**HEADERS, "Content-Type": "image/png"})

    async def _result(self, sid: int):
        submission = await self.agent.market.submission(sid)
        if submission is None:
            raise web.HTTPNotFound(text=f"no submission {sid}")
        task = await self.agent.market.terms(submission.task_id)
        if task is None or task.creator != self.agent.keypair.ss58_address:
            raise web.HTTPNotFound(text=f"submission {sid} is not for one of this creator's tasks")
        return submission, task

    async def submission(self, request: web.Request) -> web.Response:
        sid = int(request.match_info["sid"])
        submission, task = await self._result(sid)
        entry = self.agent.journal.get("submission", sid)
        submitted = problem = None
        try:
            folder = await self.agent.result_folder(submission)
            submitted = json.loads((folder / "annotations_coco.json").read_text())
            drawn = pictures(task.annotation_files, submitted, _reference(self.agent, sid), _labels(task))
        except Exception as exc:  # unreadable or not COCO: show the images and say why there are no boxes
            problem = f"{type(exc).__name__}: {exc}"[:300]
            drawn = pictures(task.annotation_files, None, _reference(self.agent, sid), _labels(task))
        left = None
        if entry is not None and entry.step == "review" and self.agent.config.review.auto_approve_after_s:
            since = entry.data.get("review_since", entry.updated)
            left = countdown(self.agent.config.review.auto_approve_after_s - (time.time() - since))
        verdict = (entry.data.get("verdict") if entry else None) or {}
        window = submission.review_blocks_left(await self.agent.client.block_number())
        return render("submission.html", submission=submission, task=task, step=entry.step if entry else "unseen",
                      verdict=verdict, pictures=drawn, problem=problem, auto_approve_in=left, window=window,
                      outputs=sorted(p.name for p in result_path(self.agent.config.state_dir, sid).glob("*")),
                      notice=request.query.get("notice"), csrf=request["csrf"])

    async def image(self, request: web.Request) -> web.FileResponse:
        """An annotation file of the task, from the creator's own copy of the assets (names on chain only)."""
        submission, task = await self._result(int(request.match_info["sid"]))
        name = request.match_info["name"]
        declared = self.agent.declared.get(self.agent.task_name(task))
        if declared is None or name not in {Path(f).name for f in task.annotation_files}:
            raise web.HTTPNotFound()
        path = declared.assets / "annotation_files" / name
        if Path(name).suffix.lower() not in IMAGE_TYPES or not path.is_file() or path.is_symlink():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={**HEADERS, "Content-Type": IMAGE_TYPES[Path(name).suffix.lower()]})

    async def decide(self, request: web.Request) -> web.Response:
        sid = int(request.match_info["sid"])
        await self._result(sid)
        accept = request.match_info["decision"] == "accept"
        reason = str((await request.post()).get("reason", "")).strip()
        if not accept and not 0 < len(reason.encode()) <= 1024:
            raise web.HTTPSeeOther(f"/submissions/{sid}?notice=a+rejection+needs+a+reason+(up+to+1024+bytes)")
        try:
            notice = await self.agent.review_decision(sid, accept, reason)
        except Exception as exc:
            log.error("review_decision_failed", submission_id=sid, error=str(exc), error_type=type(exc).__name__)
            notice = f"not decided: {type(exc).__name__}: {exc}"[:300]
        raise web.HTTPSeeOther(f"/submissions/{sid}?" + urlencode({"notice": notice}))


def _labels(task) -> list[str]:
    return [s.strip() for s in (task.annotation_class_labels or "").split(",") if s.strip()]


def _reference(agent: CreatorAgent, sid: int) -> dict | None:
    path = reference_path(agent.config.state_dir, sid)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


async def serve_review_page(agent: CreatorAgent) -> web.AppRunner:
    review = agent.config.review
    token, token_file = review_token(review.token_env, agent.config.state_dir)
    runner = web.AppRunner(ReviewPage(agent, token).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, review.web_host, review.web_port)
    await site.start()
    port = runner.addresses[0][1]
    log.info("review_page_started", url=f"http://{review.web_host}:{port}/",
             token=f"${review.token_env}" if token_file is None else str(token_file))
    return runner
