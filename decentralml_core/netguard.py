"""What a server must have before it listens beyond loopback, and the clients' side of it.

A devnet or a storage gateway on ``127.0.0.1`` trusts its machine. Asked to listen on another
address (``--host``), it starts only with a bearer token (``Authorization: Bearer …``) or an
allow-list of client networks (or both), and then also caps request sizes and rate-limits each
connection (a WebSocket's frames are read more slowly) and each client address (HTTP requests get
429), so one client cannot starve the others. Clients send the token read from an environment variable
(:data:`NODE_TOKEN_ENV`, :data:`GATEWAY_TOKEN_ENV`); the token never goes into a config file.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import os
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .logs import get_logger

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp.typedefs import Handler, Middleware

log = get_logger("netguard")
NODE_TOKEN_ENV = "DECENTRALML_NODE_TOKEN"
GATEWAY_TOKEN_ENV = "DECENTRALML_GATEWAY_TOKEN"
EXPOSED_RATE = 200.0  # requests (or frames) per second when exposed and no --rate-limit is given
# A response the client has not taken within this many seconds is abandoned and its connection cut: a
# client that stops reading holds one handler and one buffered response, never a server's loop, and only
# for this long. 30 s moves a 1 MB block (the largest response but a devnet batch) at 35 kB/s.
WRITE_STALL_S = 30.0
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ExposureError(ValueError):
    """A server was asked to listen beyond loopback without a token or an allow-list."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere: treated as exposed


class TokenBucket:
    """``rate`` events per second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> bool:
        """One event now, if the rate allows (an HTTP request: refused with 429 if not)."""
        self._refill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def refund(self) -> None:
        """The event just taken does not count after all (a login that proved the right token)."""
        self.tokens = min(self.burst, self.tokens + 1)

    def delay(self) -> float:
        """One event, going into debt if need be: the seconds to wait before serving it (a WebSocket
        frame: the connection is read more slowly, so TCP pushes back and no reply goes missing)."""
        self._refill()
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Buckets:
    """One :class:`TokenBucket` per key (client address, connection); past ``max_keys`` keys all are
    forgotten rather than grow without bound (a forgotten client starts again with a full burst)."""

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self.buckets: dict[Hashable, TokenBucket] = {}

    def get(self, key: Hashable) -> TokenBucket:
        found = self.buckets.get(key)
        if found is None:
            if len(self.buckets) >= self.max_keys:
                self.buckets.clear()
            found = self.buckets[key] = TokenBucket(self.rate, self.burst)
        return found


@dataclass(frozen=True)
class Guard:
    """A server's admission rules. ``Guard()`` admits everyone (loopback default)."""

    token: str | None = None
    allow: tuple[Network, ...] = ()
    rate: float | None = None  # per connection / client address, per second; None: unlimited
    max_request_bytes: int | None = None  # None: the server's own default
    write_stall_s: float = WRITE_STALL_S
    _buckets: Buckets | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.rate is not None:
            object.__setattr__(self, "_buckets", Buckets(self.rate, max(1.0, self.rate * 2)))

    @classmethod
    def for_host(cls, host: str, *, token_env: str | None = None, allow: list[str] | None = None,
                 rate: float | None = None, max_request_bytes: int | None = None) -> Guard:
        """The rules for listening on ``host``; raises :class:`ExposureError` when they are not enough."""
        token = None
        if token_env:
            token = os.environ.get(token_env)
            if not token:
                raise ExposureError(f"--token-env {token_env}: the variable is not set (or empty)")
            if len(token) < 16:
                raise ExposureError(f"--token-env {token_env}: a token needs at least 16 characters")
        try:
            networks = tuple(ipaddress.ip_network(a, strict=False) for a in allow or [])
        except ValueError as exc:
            raise ExposureError(f"--allow: {exc}") from None
        if not is_loopback(host):
            if token is None and not networks:
                raise ExposureError(f"listening on {host} (beyond loopback) needs --token-env VAR (a bearer token) "
                                    "or --allow CIDR (client networks), or both")
            rate = EXPOSED_RATE if rate is None else rate
        return cls(token, networks, rate, max_request_bytes)

    def bucket(self, key: Hashable) -> TokenBucket | None:
        """The rate limiter of one connection or client address (None: unlimited)."""
        return None if self._buckets is None else self._buckets.get(key)

    def refusal(self, request: web.Request) -> web.Response | None:
        """Why ``request`` is not admitted (a 403/401/429 response), or None."""
        from aiohttp import web  # a server's: the chain client imports this module for bearer_headers

        peer = request.remote or ""
        if self.allow:
            try:
                address = ipaddress.ip_address(peer)
            except ValueError:
                address = None
            if address is None or not any(address in network for network in self.allow):
                log.warning("request_refused", peer=peer, reason="not in the allow-list", path=request.path)
                return web.Response(status=403, text="this address is not allowed here\n")
        if self.token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                log.warning("request_refused", peer=peer, reason="no or wrong bearer token", path=request.path)
                return web.Response(status=401, text="a bearer token is required\n",
                                    headers={"WWW-Authenticate": "Bearer"})
        bucket = self.bucket(("peer", peer))
        if bucket is not None and not bucket.take():
            return web.Response(status=429, text="too many requests: slow down\n", headers={"Retry-After": "1"})
        return None

    def middleware(self) -> Middleware:
        from aiohttp import web

        @web.middleware
        async def admit(request: web.Request, handler: Handler) -> web.StreamResponse:
            refusal = self.refusal(request)
            return refusal if refusal is not None else await handler(request)
        return admit

    def middlewares(self) -> list[Middleware]:
        """What a server's app puts first: responses written within a bound, then admission."""
        return [bounded_writes(self.write_stall_s), self.middleware()]


def bounded_writes(stall_s: float = WRITE_STALL_S) -> Middleware:
    """Middleware writing each response itself, within ``stall_s``: a client that does not read is cut
    (one ``http_client_dropped`` line) instead of holding its handler and connection forever."""
    from aiohttp import web

    @web.middleware
    async def write_within(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if response.prepared:  # a WebSocket, or a stream its handler wrote: bounded by its own writer
            return response
        try:
            async with asyncio.timeout(stall_s):
                await response.prepare(request)
                await response.write_eof()
        except TimeoutError:
            log.warning("http_client_dropped", peer=request.remote or "", path=request.path,
                        reason=f"the response untaken for {stall_s:g} s")
            if request.transport is not None:
                request.transport.abort()
        except ConnectionError:
            pass  # the client went away while being answered
        return response

    return write_within


def bearer_headers(env: str) -> dict[str, str]:
    """``Authorization`` for a client, if the token variable ``env`` is set."""
    token = os.environ.get(env)
    return {"Authorization": f"Bearer {token}"} if token else {}


def add_exposure_options(parser: argparse.ArgumentParser, token_env_default: str) -> None:
    """The CLI options of a server that may listen beyond loopback."""
    parser.add_argument("--token-env", metavar="VAR", help=f"require 'Authorization: Bearer $VAR' (clients read "
                        f"${token_env_default}); needed beyond loopback unless --allow is given")
    parser.add_argument("--allow", action="append", metavar="CIDR", default=[],
                        help="admit only clients in this network (repeatable), e.g. 10.77.0.0/24")
    parser.add_argument("--rate-limit", type=float, metavar="PER_S",
                        help=f"requests (WebSocket frames) per second per connection and client address "
                             f"(default beyond loopback: {EXPOSED_RATE:g}; on loopback: unlimited)")
    parser.add_argument("--max-request-kb", type=int, metavar="KB", help="largest request body or frame accepted")


def guard_from_args(args: argparse.Namespace) -> Guard:
    return Guard.for_host(args.host, token_env=args.token_env, allow=args.allow, rate=args.rate_limit,
                          max_request_bytes=args.max_request_kb * 1024 if args.max_request_kb else None)
