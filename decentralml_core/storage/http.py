"""HTTP plumbing shared by the gateway and IPFS clients: bodies read without trusting their size,
timeouts that bound silence rather than whole transfers, and transport errors as Unreachable (a StorageError that may pass)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp

from .errors import TooLarge, Unreachable


def timeout(read_s: float) -> aiohttp.ClientTimeout:
    """Give up when a server stays silent ``read_s`` seconds (or 10 s to connect), however long the transfer."""
    return aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_s)


async def read_capped(resp: aiohttp.ClientResponse, max_size: int, what: str) -> bytes:
    """The whole body, or TooLarge as soon as it (or its announced length) passes ``max_size`` bytes."""
    if resp.content_length is not None and resp.content_length > max_size:
        raise TooLarge(f"{what} is {resp.content_length} bytes, over the {max_size}-byte limit for it")
    data = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > max_size:
            raise TooLarge(f"{what} is over the {max_size}-byte limit for it")
    return bytes(data)


@contextlib.asynccontextmanager
async def transport_errors(what: str) -> AsyncIterator[None]:
    """Connection refused, reset, dropped mid-body or silent: one :class:`Unreachable` naming ``what``."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unreachable(f"{what} failed: {exc or type(exc).__name__}") from None
