"""Files and blocks through an IPFS node's HTTP RPC API (kubo's ``/api/v0/…``).

Files go in with ``add`` (``cid-version=1``, ``raw-leaves``, chunker ``size-262144``, balanced
layout: the parameters :mod:`.unixfs` reproduces), so the node pins them under the CID computed
here; an answer that differs is refused. Blocks come out with ``block/get`` and are checked against
their CIDs like any fetched block (``cat`` would return a file's bytes, which a dag-pb CID cannot
check). Single blocks go in with ``add`` when they are a one-chunk file, else ``block/put``.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import aiohttp

from .cid import CHUNK, MAX_BLOCK, canonical, check_block, cid_of, inlined
from .errors import IntegrityError, NotFound, StorageError
from .http import read_capped, timeout, transport_errors
from .safety import open_regular
from .session import SharedHttpSession

ADD = "cid-version=1&raw-leaves=true&chunker=size-262144&trickle=false&hash=sha2-256&pin=true&quieter=true"


class IpfsRpcStore(SharedHttpSession):
    name = "ipfs"

    def __init__(self, api_url: str, timeout_s: float = 120.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout(timeout_s)

    async def _post_json(self, what: str, path: str, form: aiohttp.FormData) -> dict[str, Any]:
        async with transport_errors(f"IPFS {what} at {self.api_url}"), self.client() as session, \
                session.post(f"{self.api_url}/api/v0/{path}", data=form) as resp:
            if resp.status != 200:
                raise StorageError(f"IPFS {what} at {self.api_url} answered {resp.status}: {(await resp.text())[:200]}")
            text = await resp.text()
        try:  # add streams one JSON object per line; the last one names the file
            answer = json.loads(text.strip().splitlines()[-1])
        except (ValueError, IndexError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            raise StorageError(f"IPFS {what} at {self.api_url} answered {text[:200]!r}")
        return answer

    async def add_file(self, source: Path | bytes, size: int) -> str:
        """Import a whole file as ``ipfs add --cid-version 1 --raw-leaves`` does; returns the node's CID."""
        form = aiohttp.FormData()
        with contextlib.ExitStack() as stack:
            body = stack.enter_context(open_regular(source, size)) if isinstance(source, Path) else bytes(source)
            form.add_field("file", body, filename="file", content_type="application/octet-stream")
            answer = await self._post_json("add", f"add?{ADD}", form)
        try:
            return canonical(answer["Hash"])
        except (KeyError, IntegrityError):
            raise StorageError(f"IPFS add at {self.api_url} answered no usable CID: {str(answer)[:200]}") from None

    async def put(self, data: bytes, codec: str = "raw") -> str:
        expected = cid_of(data, codec)
        if codec == "raw" and len(data) <= CHUNK:
            got = await self.add_file(data, len(data))
        else:
            form = aiohttp.FormData()
            form.add_field("data", data, filename="block", content_type="application/octet-stream")
            answer = await self._post_json("block/put", f"block/put?cid-codec={codec}&mhtype=sha2-256&pin=true",
                                           form)
            got = canonical(str(answer.get("Key", "")))
        if got != expected:
            raise IntegrityError(f"IPFS node stored {got}, expected {expected}")
        return expected

    async def get(self, cid: str, max_size: int) -> bytes:
        if (data := inlined(cid)) is not None:
            return check_block(cid, data, max_size)
        url = f"{self.api_url}/api/v0/block/get?arg={canonical(cid)}"
        async with transport_errors(f"IPFS block/get of {cid} at {self.api_url}"), self.client() as session, \
                session.post(url) as resp:
            if resp.status != 200:
                text = await resp.text()
                if "not found" in text.lower():
                    raise NotFound(f"{cid} not found by {self.api_url}")
                raise StorageError(f"IPFS block/get at {self.api_url} answered {resp.status}: {text[:200]}")
            data = await read_capped(resp, min(max_size, MAX_BLOCK), f"{cid} from {self.api_url}")
        return check_block(cid, data, max_size)

