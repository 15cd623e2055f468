"""One network client per transfer instead of one per block.

A remote store opens a client (an HTTP session, an S3 client) for each call unless a transfer holds
it open with ``async with store.connected():`` — ``put_folder``/``get_folder`` do — so a folder of
thousands of blocks reuses one connection pool, and nothing is left open once the transfer ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp


class SharedClient:
    """Mixin: subclasses implement ``_open() -> (client, closer)``; calls use ``async with self.client()``."""

    _shared: tuple[Any, Any] | None = None
    _users: int = 0

    async def _open(self) -> tuple[Any, Any]:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        if not self._users:
            self._shared = await self._open()
        self._users += 1
        try:
            yield
        finally:
            self._users -= 1
            if not self._users and self._shared is not None:
                (_, close), self._shared = self._shared, None
                await close()

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        if self._shared is not None:
            yield self._shared[0]
            return
        client, close = await self._open()
        try:
            yield client
        finally:
            await close()


class SharedHttpSession(SharedClient):
    """An aiohttp session as the shared client, with the store's ``timeout`` (an aiohttp.ClientTimeout)."""

    timeout: Any = None

    async def _open(self) -> tuple[Any, Any]:
        session = aiohttp.ClientSession(timeout=self.timeout)
        return session, session.close


@contextlib.asynccontextmanager
async def connected(store: object) -> AsyncIterator[None]:
    """Hold ``store``'s client open for a transfer, if it has one."""
    scope = getattr(store, "connected", None)
    async with (scope() if scope else contextlib.nullcontext()):
        yield
