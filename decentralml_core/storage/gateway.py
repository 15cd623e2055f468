"""Blocks across machines without an IPFS daemon: the IPFS trustless-gateway URL scheme.

``gateway_app(store)`` serves ``GET /ipfs/{cid}`` (raw block, ``application/vnd.ipld.raw``) from a
local store; :class:`GatewayStore` fetches from any such gateway and verifies every byte against the
CID, so it is as safe against a public IPFS gateway as against ours.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from .base import check_block
from .cid import parse
from .errors import IntegrityError, NotFound, StorageError
from .http import read_capped
from .local import LocalStore

RAW = "application/vnd.ipld.raw"


def gateway_app(store: LocalStore) -> web.Application:
    async def block(request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        try:
            data = store.read(str(parse(cid)), 64 * 1024 * 1024)
        except IntegrityError as exc:
            return web.Response(status=400, text=str(exc))
        except NotFound:
            return web.Response(status=404, text=f"{cid} not found")
        return web.Response(body=data, content_type=RAW, headers={
            "X-Ipfs-Roots": cid, "Cache-Control": "public, max-age=29030400, immutable"})

    app = web.Application()
    app.router.add_get("/ipfs/{cid}", block)
    return app


class GatewayStore:
    """Read-only blocks from a trustless gateway at ``base_url`` (e.g. ``http://host:8080``)."""

    name = "gateway"

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)

    async def put(self, data: bytes) -> str:
        raise StorageError("a gateway is read-only: publish to a local, IPFS or S3 store")

    async def get(self, cid: str, max_size: int) -> bytes:
        url = f"{self.base_url}/ipfs/{parse(cid)}?format=raw"
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as session, \
                    session.get(url, headers={"Accept": RAW}) as resp:
                if resp.status == 404:
                    raise NotFound(f"{cid} not found at {self.base_url}")
                if resp.status != 200:
                    raise StorageError(f"{self.base_url} answered {resp.status} for {cid}")
                data = await read_capped(resp, max_size, f"{cid} from {self.base_url}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageError(f"fetching {cid} from {self.base_url} failed: {exc or type(exc).__name__}") from None
        return check_block(cid, data, max_size)
