"""Blocks across machines without an IPFS daemon: the IPFS trustless-gateway protocol, both ends.

``gateway_app(store)`` serves a local store as a trustless gateway: ``GET``/``HEAD /ipfs/{cid}`` with
``?format=raw`` or ``Accept: application/vnd.ipld.raw`` answers the raw block (raw leaves and dag-pb
nodes alike), ``/ipfs/bafkqaaa`` answers the probe, anything it cannot serve verifiably (CAR,
paths, deserialized files) is refused. :class:`GatewayStore` fetches blocks from any such gateway —
ours, a kubo node's, a public one — and checks every byte against the CID before it is used.
"""

from __future__ import annotations

import anyio
from aiohttp import web
from multiformats import CID

from ..netguard import GATEWAY_TOKEN_ENV, Guard, bearer_headers
from .cid import MAX_BLOCK, canonical, check_block, inlined
from .errors import IntegrityError, NotFound, StorageError, TooLarge, Unreachable
from .http import read_capped, timeout, transport_errors
from .local import LocalStore
from .session import SharedHttpSession

RAW = "application/vnd.ipld.raw"
MAX_REQUEST = 64 * 1024  # a gateway only answers GET/HEAD: no request needs a body
CAR = "application/vnd.ipld.car"


def _wanted(request: web.Request) -> str | None:
    """The response type asked for: ``format`` takes precedence over ``Accept`` (the spec's rule)."""
    fmt = request.query.get("format")
    if fmt is not None:
        return {"raw": RAW, "car": CAR}.get(fmt, fmt)
    accept = request.headers.get("Accept", "")
    types = [part.split(";")[0].strip() for part in accept.split(",")]
    return RAW if RAW in types else CAR if CAR in types else None


def _is_cid(text: str) -> bool:
    try:
        CID.decode(text)
    except Exception:  # multiformats raises several types for malformed input
        return False
    return True


def gateway_app(store: LocalStore, guard: Guard | None = None) -> web.Application:
    """``guard`` admits clients (token, allow-list, rate per client address); requests are GETs, so small."""
    guard = guard or Guard()
    async def block(request: web.Request) -> web.StreamResponse:
        wanted = _wanted(request)
        if wanted is None:
            return web.Response(status=400, text=f"a trustless gateway: ask for ?format=raw or Accept: {RAW}\n")
        if wanted != RAW:
            return web.Response(status=406, text=f"only raw blocks ({RAW}) are served here, not {wanted}\n")
        try:
            cid = canonical(request.match_info["cid"])
            data = await anyio.to_thread.run_sync(store.read, cid, MAX_BLOCK)
        except (IntegrityError, TooLarge) as exc:  # not a CID, or one whose blocks are never stored here
            return web.Response(status=404 if _is_cid(request.match_info["cid"]) else 400, text=f"{exc}\n")
        except NotFound:
            return web.Response(status=404, text=f"{request.match_info['cid']} not found\n")
        etag = f'"{cid}.raw"'
        headers = {"Etag": etag, "X-Ipfs-Roots": cid, "X-Ipfs-Path": f"/ipfs/{request.match_info['cid']}",
                   "Cache-Control": "public, max-age=29030400, immutable", "Vary": "Accept",
                   "Content-Disposition": f'attachment; filename="{cid}.bin"', "X-Content-Type-Options": "nosniff"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=data, content_type=RAW, headers=headers)

    async def path(request: web.Request) -> web.Response:
        return web.Response(status=400, text="paths under a CID are not served: ask for each block by its CID\n")

    app = web.Application(client_max_size=guard.max_request_bytes or MAX_REQUEST, middlewares=guard.middlewares())
    app.router.add_get("/ipfs/{cid}", block)  # and HEAD
    app.router.add_get("/ipfs/{cid}/{path:.*}", path)
    return app


class GatewayStore(SharedHttpSession):
    """Read-only blocks from a trustless gateway at ``base_url`` (e.g. ``http://host:8080``)."""

    name = "gateway"

    def __init__(self, base_url: str, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout(timeout_s)

    async def put(self, data: bytes, codec: str = "raw") -> str:
        raise StorageError("a gateway is read-only: publish to a local, IPFS or S3 store")

    async def get(self, cid: str, max_size: int) -> bytes:
        if (data := inlined(cid)) is not None:
            return check_block(cid, data, max_size)
        url = f"{self.base_url}/ipfs/{canonical(cid)}?format=raw"
        async with transport_errors(f"fetching {cid} from {self.base_url}"), self.client() as session, \
                session.get(url, headers={"Accept": RAW, **bearer_headers(GATEWAY_TOKEN_ENV)}) as resp:
            if resp.status == 404:
                raise NotFound(f"{cid} not found at {self.base_url}")
            if resp.status == 429 or resp.status >= 500:
                raise Unreachable(f"{self.base_url} answered {resp.status} for {cid}")
            if resp.status != 200:
                raise StorageError(f"{self.base_url} answered {resp.status} for {cid}")
            data = await read_capped(resp, max_size, f"{cid} from {self.base_url}")
        return check_block(cid, data, max_size)
