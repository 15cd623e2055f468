"""The ManualAccept review page, served by the creator agent: the queue of results waiting for a person
(task question, worker, pay, validator advice); for each, its images with the submitted boxes drawn
against the real image (and the validator's consensus or ground-truth boxes, and scores); approve, or
reject with a reason — decided on chain by the agent itself — and the next waiting result opens.
Keyboard: ``a`` approve, ``r`` reject (focuses the reason), ``j``/``k`` next/previous (``/review.js``).

Security: loopback by default; a login token of 16+ characters (``review.token_env``, else generated
into ``state_dir/review.token``, mode 0600), tried wrongly at most LOGIN_BURST times then once per
1/LOGIN_RATE s per client address, opens a session cookie (HttpOnly, SameSite=Strict, Secure through an https
``review.public_origin``); only Host names of this machine or the public origin are served; every form
carries the session's CSRF token and a POST from another origin is refused; notices travel in the session,
never in the URL; every response (redirects and errors too) carries a strict Content-Security-Policy
(scripts only from this origin) and the other security headers. Boxes are SVG drawn on the server.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import structlog
from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape
from yarl import URL

from decentralml_core.netguard import Buckets, bounded_writes

from .config import ConfigError
from .creator import CreatorAgent
from .creator_queries import CreatorQueries
from .images import asset_image_sizes
from .review_digest import digest
from .review_view import (
    PICTURES_PER_PAGE,
    ROWS_PER_PAGE,
    Drawable,
    QueueRow,
    after_decision,
    countdown,
    drawable,
    neighbours,
    paged,
    pictures,
    queue,
)

log = structlog.get_logger("agent.review")
COOKIE = "decentralml_review"
SESSION_S = 12 * 3600
MAX_SESSIONS = 1000  # logged-in browsers kept; past it the oldest session ends
MIN_TOKEN_CHARS = 16  # as the devnet's and gateway's bearer tokens
# Failed login attempts per client address: a burst of 10, then one every 5 s. A person mistyping waits
# seconds; a guesser gets 17,000 tries a day against a 16+ character token (before: ~1,900 a second). An
# attempt is refused unread while the address's bucket is empty; one that proves the token is not counted, so
# a reviewer who logs in often (or a test's browsers) is never held back.
LOGIN_BURST, LOGIN_RATE = 10, 0.2
THROTTLE_LOG_S = 60.0  # one review_login_throttled line per address and minute, however hard it tries
BULK_MAX = 200  # results one bulk approval decides
OUTPUTS_SHOWN = 50
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff", "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
               ".webp": "image/webp", ".bmp": "image/bmp"}
STATIC = {"review.css": "text/css", "review.js": "text/javascript"}
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
templates = Environment(loader=PackageLoader("agents", "templates"), autoescape=select_autoescape(["html"]))
templates.filters["units"] = lambda planck: f"{planck / 10**12:,.12g} UNIT"  # 12 decimals, like the chain's token


def review_token(env_name: str, state_dir: Path) -> tuple[str, Path | None]:
    """The login token from the environment (16+ characters, else :class:`ConfigError`), else one
    generated (once) into a 0600 file."""
    if os.environ.get(env_name):
        token = os.environ[env_name]
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"review.token_env: ${env_name} holds a {len(token)}-character token; the review "
                              f"page needs at least {MIN_TOKEN_CHARS} (unset it to have one generated)")
        return token, None
    path = state_dir / "review.token"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip(), path


@dataclass
class Session:
    csrf: str
    expires: float
    flash: str | None = None  # a notice for the next page this browser opens


class Sessions:
    """Logged-in browsers: session id → :class:`Session`. In memory: a restart logs everyone out."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.open: dict[str, Session] = {}

    def login(self, offered: str) -> str | None:
        if not hmac.compare_digest(offered.encode(), self.token.encode()):
            return None
        now = time.time()
        self.open = {k: s for k, s in self.open.items() if s.expires > now}
        while len(self.open) >= MAX_SESSIONS:
            self.open.pop(min(self.open, key=lambda k: self.open[k].expires))
        session = secrets.token_urlsafe(32)
        self.open[session] = Session(secrets.token_urlsafe(32), now + SESSION_S)
        return session

    def get(self, request: web.Request) -> Session | None:
        """The request's live session, or None when not logged in."""
        found = self.open.get(request.cookies.get(COOKIE, ""))
        return None if found is None or found.expires < time.time() else found

    def logout(self, request: web.Request) -> None:
        self.open.pop(request.cookies.get(COOKIE, ""), None)


def render_text(name: str, **context) -> str:
    return templates.get_template(name).render(**context)


def render(name: str, status: int = 200, **context) -> web.Response:
    return web.Response(text=render_text(name, **context), status=status, content_type="text/html")


class ReviewPage:
    def __init__(self, creator: CreatorQueries, token: str) -> None:
        self.creator = creator
        self.sessions = Sessions(token)
        review = creator.review
        self.public = URL(review.public_origin) if review.public_origin else None
        self.hosts = set(LOOPBACK_NAMES)
        if review.web_host not in ("0.0.0.0", "::", ""):
            self.hosts.add(review.web_host.strip("[]").lower())
        if self.public is not None:
            self.hosts.add(self.public.host)
        self.logins = Buckets(LOGIN_RATE, LOGIN_BURST)
        self._throttled: dict[str, float] = {}  # address -> when its throttling was last logged
        self._tasks: dict[int, object] = {}  # task terms by id (question, pay: fixed once published)
        self._views: OrderedDict[int, tuple] = OrderedDict()  # parsed results by submission (immutable)
        self._reading: dict[int, asyncio.Future] = {}
        self._prefetching: asyncio.Future | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024,
                              middlewares=[bounded_writes(), self.headers, self.host_allowed, self.guard])
        app.router.add_get("/login", self.login_form)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/review.css", self.static)
        app.router.add_get("/review.js", self.static)
        app.router.add_get("/", self.queue)
        app.router.add_post("/bulk-accept", self.bulk_accept)
        app.router.add_get("/campaigns/{name}.png", self.campaign_plot)
        app.router.add_get("/submissions/{sid:\\d+}", self.submission)
        app.router.add_get("/submissions/{sid:\\d+}/images/{name}", self.image)
        app.router.add_post("/submissions/{sid:\\d+}/{decision:accept|reject}", self.decide)
        return app

    # -- edges: headers, hosts, sessions --------------------------------------------------------------
    def origin(self, request: web.Request) -> str:
        """The origin the browser sees: the public one when the request came through it (its Host)."""
        if self.public is not None:
            try:
                seen = URL(f"{self.public.scheme}://{request.host}")
            except ValueError:
                seen = None
            if seen is not None and (seen.host, seen.port) == (self.public.host, self.public.port):
                return str(self.public.origin())
        return f"{request.scheme}://{request.host}"

    @web.middleware
    async def headers(self, request: web.Request, handler):
        """The security headers on every response: pages, redirects, refusals and not-found alike."""
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = web.Response(status=exc.status, reason=exc.reason, body=exc.body, headers=exc.headers)
        except ConnectionError:
            raise  # the browser went away: nobody to answer
        except Exception as exc:  # a bug: the agent goes on, the browser gets a 500 with the same headers
            log.error("review_page_failed", path=request.path, error=str(exc)[:300], error_type=type(exc).__name__)
            response = web.Response(status=500, text="the review page failed: see the agent's log\n")
        response.headers.update(HEADERS)
        if self.origin(request).startswith("https://"):
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    @web.middleware
    async def host_allowed(self, request: web.Request, handler):
        """Only this machine's names and the public origin's host: a page reached through another name
        (DNS rebinding) is refused before any cookie or form is looked at."""
        try:
            host = URL(f"http://{request.host}").host
        except ValueError:
            host = None
        if host is None or host.lower() not in self.hosts:
            log.warning("review_host_refused", host=request.host[:100], remote=request.remote)
            raise web.HTTPMisdirectedRequest(text="unknown Host: set review.public_origin to serve this name\n")
        return await handler(request)

    @web.middleware
    async def guard(self, request: web.Request, handler):
        """Everything but the login page and static files needs a session; every POST after login needs
        the session's CSRF token and, if the browser says where it comes from, this origin."""
        if request.path == "/login" or request.path.lstrip("/") in STATIC:
            return await handler(request)
        session = self.sessions.get(request)
        if session is None:
            if request.method == "GET":
                raise web.HTTPSeeOther("/login")
            raise web.HTTPForbidden(text="log in first")
        if request.method == "POST":
            origin = request.headers.get("Origin")
            form = await request.post()
            if (origin is not None and origin != self.origin(request)) or not hmac.compare_digest(
                    str(form.get("csrf", "")).encode(), session.csrf.encode()):
                log.warning("review_post_refused", path=request.path, origin=origin)
                raise web.HTTPForbidden(text="stale or foreign form: reload the page")
        request["session"] = session
        request["csrf"] = session.csrf
        return await handler(request)

    # -- login ----------------------------------------------------------------------------------------
    async def login_form(self, request: web.Request) -> web.Response:
        return render("login.html")

    async def login(self, request: web.Request) -> web.Response:
        remote = request.remote or ""
        attempts = self.logins.get(remote)
        if not attempts.take():
            now = time.monotonic()
            if now - self._throttled.get(remote, -THROTTLE_LOG_S) >= THROTTLE_LOG_S:  # a line a minute at most
                if len(self._throttled) > 10_000:
                    self._throttled.clear()
                self._throttled[remote] = now
                log.warning("review_login_throttled", remote=remote, per_s=LOGIN_RATE, burst=LOGIN_BURST)
            response = render("login.html", status=429, error=f"too many attempts: wait {1 / LOGIN_RATE:g} s")
            response.headers["Retry-After"] = f"{1 / LOGIN_RATE:g}"
            return response
        form = await request.post()
        session = self.sessions.login(str(form.get("token", "")))
        if session is None:
            log.warning("review_login_refused", remote=remote)
            return render("login.html", status=403, error="wrong token")
        attempts.refund()
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, session, httponly=True, samesite="Strict", max_age=SESSION_S, path="/",
                            secure=self.origin(request).startswith("https://"))
        return response

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.logout(request)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        return response

    async def static(self, request: web.Request) -> web.Response:
        name = request.path.lstrip("/")
        return web.Response(text=templates.loader.get_source(templates, name)[0], content_type=STATIC[name])

    # -- the queue ------------------------------------------------------------------------------------
    def waiting(self) -> list[QueueRow]:
        return queue(self.creator.waiting_for_review(), time.time(), self.creator.review.auto_approve_after_s)

    async def task(self, task_id: int):
        if task_id not in self._tasks:
            found = await self.creator.task(task_id)
            if found is None:
                return None
            self._tasks[task_id] = found
        return self._tasks[task_id]

    async def queue(self, request: web.Request) -> web.Response:
        rows = self.waiting()
        only = _int(request.query.get("task"))
        if only is not None:
            rows = [r for r in rows if r.task_id == only]
        page = paged(rows, _int(request.query.get("page")) or 1, ROWS_PER_PAGE)
        tasks = {row.task_id: await self.task(row.task_id) for row in page.items}
        window = await self.creator.review_windows([row.submission_id for row in page.items])  # where on chain
        decided = self.creator.recent_decisions(10)
        self.prefetch(page.items[0].submission_id if page.items else None)
        campaigns = self.creator.campaign_plots()
        return render("queue.html", rows=page.items, page=page, tasks=tasks, window=window, decided=decided,
                      only=only, passing=[r.submission_id for r in page.items if r.advice_passed],
                      campaigns=campaigns, notice=_flash(request), csrf=request["csrf"])

    async def campaign_plot(self, request: web.Request) -> web.FileResponse:
        """A campaign's global-model accuracy per round, as the campaign last drew it."""
        path = self.creator.campaign_plot(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={**HEADERS, "Content-Type": "image/png"})

    async def bulk_accept(self, request: web.Request) -> web.Response:
        """Approve the listed results the validator passed (re-checked here), one after the other."""
        form = await request.post()
        asked = [s for s in (_int(v) for v in form.getall("sid", [])[:BULK_MAX]) if s is not None]
        passing = {r.submission_id for r in self.waiting() if r.advice_passed}
        approved, skipped = [], []
        for sid in asked:
            if sid not in passing:
                skipped.append(sid)
                continue
            try:
                await self._result(sid)
                outcome = await self.creator.decide(sid, True)
            except Exception as exc:
                log.error("review_decision_failed", submission_id=sid, error=str(exc), error_type=type(exc).__name__)
                skipped.append(sid)
                continue
            (approved if outcome.endswith(": paid") else skipped).append(sid)
        log.info("review_bulk_accepted", approved=len(approved), skipped=len(skipped))
        request["session"].flash = (f"approved {len(approved)} result{'s' if len(approved) != 1 else ''}"
                                    + (f"; {len(skipped)} not (no longer waiting or not passed)" if skipped else ""))
        only = _int(form.get("task"))
        raise web.HTTPSeeOther("/" + (f"?{urlencode({'task': only})}" if only is not None else ""))

    # -- one result -----------------------------------------------------------------------------------
    async def _result(self, sid: int):
        found = await self.creator.own_result(sid)
        if found is None:
            raise web.HTTPNotFound(text=f"no submission {sid} for one of this creator's tasks")
        return found

    async def _parsed(self, sid: int, folder: Path | None) -> tuple[Drawable | None, str | None]:
        """The result's boxes (read once: a result never changes) or why there are none."""
        if folder is None:
            return None, "the result could not be fetched"
        if sid in self._views:
            self._views.move_to_end(sid)
            return self._views[sid]
        job = self._reading.get(sid)
        if job is None:
            job = self._reading[sid] = asyncio.ensure_future(self._read(sid, folder))
            job.add_done_callback(lambda _: self._reading.pop(sid, None))
        return await asyncio.shield(job)  # a reader leaving early does not cancel the read

    async def _read(self, sid: int, folder: Path) -> tuple[Drawable | None, str | None]:
        try:
            found = await digest(folder / "annotations_coco.json"), None
        except Exception as exc:  # unreadable or not COCO: show the images and say why there are no boxes
            found = None, f"{type(exc).__name__}: {exc}"[:300]
        self._views[sid] = found
        while len(self._views) > 64:  # each holds a few hundred boxes at most
            self._views.popitem(last=False)
        return found

    def prefetch(self, sid: int | None) -> None:
        """Read the result a reviewer opens next while they look at this one (one at a time)."""
        if sid is None or sid in self._views or sid in self._reading or self._prefetching is not None:
            return

        async def read() -> None:
            try:
                submission = await self.creator.submission(sid)
                if submission is not None:
                    await self._parsed(sid, await self.creator.result_folder(submission))
            except Exception as exc:  # the page itself will say what is wrong when it is opened
                log.debug("review_prefetch_failed", submission_id=sid, error=str(exc))
            finally:
                self._prefetching = None

        self._prefetching = asyncio.ensure_future(read())

    def _view(self, sid: int, submitted: Drawable | None, problem: str | None, task, page_number: int) -> dict:
        """Everything the submission page draws, computed off the event loop."""
        files = paged(list(task.annotation_files), page_number, PICTURES_PER_PAGE)
        sizes = asset_image_sizes(self.creator.assets(task), files.items)
        labels = task.class_labels
        try:
            reference = drawable(self.creator.reference(sid))
        except (KeyError, TypeError, ValueError):
            reference = None
        drawn = pictures(files.items, submitted, reference, labels, sizes)
        outputs = self.creator.result_files(sid)
        return {"pictures": drawn, "files": files, "problem": problem, "outputs": outputs[:OUTPUTS_SHOWN],
                "outputs_total": len(outputs), "mismatched": [p for p in drawn if p.declared is not None],
                "boxes_total": submitted.count if submitted else 0}

    async def submission(self, request: web.Request) -> web.Response:
        sid = int(request.match_info["sid"])
        submission, task = await self._result(sid)
        entry = self.creator.entry(sid)
        try:
            folder = await self.creator.result_folder(submission)
        except Exception as exc:
            log.warning("review_result_unreadable", submission_id=sid, error=str(exc), error_type=type(exc).__name__)
            folder = None
        left = None
        auto_approve_after_s = self.creator.review.auto_approve_after_s
        if entry is not None and entry.step == "review" and auto_approve_after_s:
            since = entry.data.get("review_since", entry.updated)
            left = countdown(auto_approve_after_s - (time.time() - since))
        verdict = (entry.data.get("verdict") if entry else None) or {}
        window = await self.creator.review_window(submission)
        around = neighbours([r.submission_id for r in self.waiting()], sid)
        context = dict(submission=submission, task=task, step=entry.step if entry else "unseen", verdict=verdict,
                       reason=entry.data.get("reason") if entry else None, auto_approve_in=left, window=window,
                       around=around, notice=_flash(request), csrf=request["csrf"])
        submitted, problem = await self._parsed(sid, folder)
        view = await asyncio.to_thread(self._view, sid, submitted, problem, task, _int(request.query.get("page")) or 1)
        text = await asyncio.to_thread(render_text, "submission.html", **context, **view)
        self.prefetch(around.next)
        return web.Response(text=text, content_type="text/html")

    async def image(self, request: web.Request) -> web.FileResponse:
        """An annotation file of the task, from the creator's own copy of the assets (names on chain only)."""
        submission, task = await self._result(int(request.match_info["sid"]))
        name = request.match_info["name"]
        assets = self.creator.assets(task)
        if assets is None or name not in {Path(f).name for f in task.annotation_files}:
            raise web.HTTPNotFound()
        path = assets / "annotation_files" / name
        if Path(name).suffix.lower() not in IMAGE_TYPES or not path.is_file() or path.is_symlink():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": IMAGE_TYPES[Path(name).suffix.lower()]})

    async def decide(self, request: web.Request) -> web.Response:
        sid = int(request.match_info["sid"])
        await self._result(sid)
        accept = request.match_info["decision"] == "accept"
        reason = str((await request.post()).get("reason", "")).strip()
        session = request["session"]
        if not accept and not 0 < len(reason.encode()) <= 1024:
            session.flash = "a rejection needs a reason (up to 1024 bytes)"
            raise web.HTTPSeeOther(f"/submissions/{sid}")
        order = [r.submission_id for r in self.waiting()]
        try:
            session.flash = await self.creator.decide(sid, accept, reason)
        except Exception as exc:
            log.error("review_decision_failed", submission_id=sid, error=str(exc), error_type=type(exc).__name__)
            session.flash = f"not decided: {type(exc).__name__}: {exc}"[:300]
            raise web.HTTPSeeOther(f"/submissions/{sid}") from None
        still = {r.submission_id for r in self.waiting()}
        following = after_decision([s for s in order if s in still or s == sid], sid)
        raise web.HTTPSeeOther(f"/submissions/{following}" if following is not None else "/")


def _int(value) -> int | None:
    try:
        return int(value) if value is not None and str(value).isdigit() else None
    except ValueError:
        return None


def _flash(request: web.Request) -> str | None:
    session = request.get("session")
    if session is None:
        return None
    notice, session.flash = session.flash, None
    return notice


async def serve_review_page(agent: CreatorAgent) -> web.AppRunner:
    creator = CreatorQueries(agent)
    review = creator.review
    token, token_file = review_token(review.token_env, creator.state_dir)
    runner = web.AppRunner(ReviewPage(creator, token).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, review.web_host, review.web_port)
    await site.start()
    port = runner.addresses[0][1]
    log.info("review_page_started", url=f"http://{review.web_host}:{port}/", public_origin=review.public_origin,
             token=f"${review.token_env}" if token_file is None else str(token_file))
    return runner
