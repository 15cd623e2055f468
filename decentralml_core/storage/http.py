"""Reading an HTTP body without trusting its size."""

from __future__ import annotations

import aiohttp

from .errors import TooLarge


async def read_capped(resp: aiohttp.ClientResponse, max_size: int, what: str) -> bytes:
    """The whole body, or TooLarge as soon as it passes ``max_size`` bytes."""
    data = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > max_size:
            raise TooLarge(f"{what} is over {max_size} bytes")
    return bytes(data)
