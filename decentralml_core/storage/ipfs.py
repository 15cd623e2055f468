"""Blocks through an IPFS node's HTTP RPC API (``/api/v0/add``, ``/api/v0/cat``).

Blocks are at most one chunk, so ``add`` with ``cid-version=1&raw-leaves=true`` stores each as one
raw block and answers the same CID we compute; an answer that differs is refused.
"""

from __future__ import annotations

import aiohttp

from .base import check_block
from .cid import cid_of, parse
from .errors import IntegrityError, NotFound, StorageError
from .http import read_capped


class IpfsRpcStore:
    name = "ipfs"

    def __init__(self, api_url: str, timeout: float = 120.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)

    async def put(self, data: bytes) -> str:
        expected = cid_of(data)
        form = aiohttp.FormData()
        form.add_field("file", data, filename="block", content_type="application/octet-stream")
        url = f"{self.api_url}/api/v0/add?cid-version=1&raw-leaves=true&pin=true&quieter=true"
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as session, session.post(url, data=form) as resp:
                if resp.status != 200:
                    raise StorageError(f"IPFS add at {self.api_url} answered {resp.status}: {await resp.text()}")
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageError(f"IPFS add at {self.api_url} failed: {exc or type(exc).__name__}") from None
        if answer.get("Hash") != expected:
            raise IntegrityError(f"IPFS node stored {answer.get('Hash')}, expected {expected}")
        return expected

    async def get(self, cid: str, max_size: int) -> bytes:
        url = f"{self.api_url}/api/v0/cat?arg={parse(cid)}&length={max_size + 1}"
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as session, session.post(url) as resp:
                if resp.status != 200:
                    text = await resp.text()
                    if "not found" in text.lower():
                        raise NotFound(f"{cid} not found by {self.api_url}")
                    raise StorageError(f"IPFS cat at {self.api_url} answered {resp.status}: {text[:200]}")
                data = await read_capped(resp, max_size, f"{cid} from {self.api_url}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageError(f"IPFS cat at {self.api_url} failed: {exc or type(exc).__name__}") from None
        return check_block(cid, data, max_size)
