"""An async client for a Substrate node: pipelined, nonce-tracked submission; storage reads; events.

One connection per client. Reads are retried across reconnects (tenacity backoff); a submitted
extrinsic is never re-signed after the pool took it, only its same bytes resent, so a retry can
neither double nor lose it. A block follower watches every finalized block in order, so an
extrinsic's inclusion is seen even when the connection dropped in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
from substrateinterface import Keypair
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from ..devnet.hashing import blake2_256
from .errors import ConnectionLost, DispatchFailed, InclusionTimeout, TransactionRejected
from .nonces import NonceBook
from .rpc import RpcError, RpcTransport, WebSocketRpc
from .runtime import Event, Runtime

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Receipt:
    """An included extrinsic and the events it caused."""

    extrinsic_hash: str
    block_number: int
    block_hash: str
    extrinsic_index: int
    events: list[Event]

    def find(self, pallet: str, name: str) -> list[Any]:
        return [e.attributes for e in self.events if e.pallet == pallet and e.name == name]

    @property
    def fee(self) -> int:
        return sum(a["actual_fee"] for a in self.find("TransactionPayment", "TransactionFeePaid"))


@dataclass(frozen=True)
class Checkpoint:
    """Where an event stream resumes: events of ``block_number`` after ``index``, then later blocks."""

    block_number: int
    index: int = -1  # -1: the whole block is still to come

    @classmethod
    def after(cls, event: Event) -> Checkpoint:
        return cls(event.block_number, event.index)


class ChainClient:
    """``async with await ChainClient.connect(url) as client: …``"""

    def __init__(self, url: str, rpc: RpcTransport, runtime: Runtime, *, reconnect_for: float,
                 inclusion_timeout: float) -> None:
        self.url, self._rpc, self.runtime = url, rpc, runtime
        self.reconnect_for, self.inclusion_timeout = reconnect_for, inclusion_timeout
        self._nonces = NonceBook()
        self._locks: dict[str, asyncio.Lock] = {}
        self._watched: dict[str, asyncio.Future] = {}
        self._reconnecting: asyncio.Task | None = None
        self._new_block = asyncio.Condition()
        self._finalized = -1
        self.followed_block = -1  # the last block an event stream went through, with events or none
        self._follower: asyncio.Task | None = None
        self._events_key: str | None = None
        self._failure: Exception | None = None  # the follower gave up: streams and waiters get this
        self.closed = False

    @classmethod
    async def connect(cls, url: str, *, reconnect_for: float = 60.0, inclusion_timeout: float = 120.0) -> ChainClient:
        rpc = await WebSocketRpc.connect(url)
        try:
            runtime = await Runtime.load(url)
        except Exception as exc:
            await rpc.close()
            raise ConnectionLost(f"cannot load the runtime of {url}: {exc}") from exc
        client = cls(url, rpc, runtime, reconnect_for=reconnect_for, inclusion_timeout=inclusion_timeout)
        client._events_key = await runtime.storage_key("System", "Events")
        client._finalized = await client.block_number()
        client._follower = asyncio.create_task(client._follow())
        return client

    async def __aenter__(self) -> ChainClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        self.closed = True
        self._failure = self._failure or ConnectionLost("client closed")
        if self._follower:
            self._follower.cancel()
        await self._rpc.close()
        await self.runtime.close()

    # -- connection ----------------------------------------------------------------------------
    async def _reconnect(self) -> None:
        """One reconnect at a time, however many callers noticed the loss."""
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.create_task(self._dial())
        await asyncio.shield(self._reconnecting)

    async def _dial(self) -> None:
        async for attempt in AsyncRetrying(retry=retry_if_exception_type(ConnectionLost),
                                           wait=wait_exponential(multiplier=0.1, max=5),
                                           stop=stop_after_delay(self.reconnect_for), reraise=True):
            with attempt:
                if self.closed:
                    raise asyncio.CancelledError()
                self._rpc = await WebSocketRpc.connect(self.url)
                log.info("chain_reconnected", url=self.url, attempt=attempt.retry_state.attempt_number)

    async def request(self, method: str, params: list | None = None) -> Any:
        """A read: retried across reconnects until ``reconnect_for`` seconds have passed."""
        while True:
            rpc = self._rpc
            try:
                return await rpc.request(method, params)
            except ConnectionLost:
                if self.closed:
                    raise
                await self._reconnect()

    # -- reads ----------------------------------------------------------------------------------
    async def block_number(self) -> int:
        head = await self.request("chain_getHeader", [await self.request("chain_getFinalizedHead")])
        return int(head["number"], 16)

    async def block_hash(self, number: int) -> str | None:
        return await self.request("chain_getBlockHash", [number])

    async def storage(self, pallet: str, item: str, params: list | None = None, block_hash: str | None = None) -> Any:
        key = await self.runtime.storage_key(pallet, item, params)
        raw = await self.request("state_getStorage", [key] + ([block_hash] if block_hash else []))
        return await self.runtime.decode_storage(pallet, item, raw)

    async def storage_map(self, pallet: str, item: str, page: int = 1000) -> list[tuple[Any, Any]]:
        """Every (key, value) of a map, as of one block (pages of keys, then their values, all at the
        head's hash read first), through this client's connection and its reconnects."""
        prefix = await self.runtime.storage_key(pallet, item)
        at = await self.request("chain_getBlockHash", [])
        keys: list[str] = []
        while True:
            found = await self.request("state_getKeysPaged", [prefix, page, keys[-1] if keys else prefix, at])
            keys += found
            if len(found) < page:
                break
        rows = []
        for start in range(0, len(keys), page):
            groups = await self.request("state_queryStorageAt", [keys[start:start + page], at])
            changes = [change for group in groups for change in group["changes"]]
            rows += await self.runtime.decode_map(pallet, item, prefix, changes)
        return rows

    async def free_balance(self, address: str) -> int:
        return (await self.storage("System", "Account", [address]))["data"]["free"]

    async def events_at(self, number: int) -> list[Event]:
        block_hash = await self.block_hash(number)
        if block_hash is None:
            return []
        raw = await self.request("state_getStorage", [self._events_key, block_hash])
        return await self.runtime.decode_events(number, block_hash, raw)

    # -- submission -----------------------------------------------------------------------------
    async def submit(self, keypair: Keypair, pallet: str, call: str, params: dict) -> Receipt:
        """Sign with the account's next nonce, hand to the pool, wait for inclusion.

        Returns the receipt; raises :class:`DispatchFailed` if the call failed on chain (final: do
        not retry), :class:`TransactionRejected` if the pool refused it, :class:`InclusionTimeout`.
        Many calls may be awaited at once, for one account or many: they pipeline.
        """
        account = keypair.ss58_address
        lock = self._locks.setdefault(account, asyncio.Lock())
        async with lock:
            xt_hash, future = await self._sign_and_send(keypair, pallet, call, params)
        try:
            receipt = await asyncio.wait_for(future, self.inclusion_timeout)
        except TimeoutError:
            raise InclusionTimeout(f"{pallet}.{call} {xt_hash} not included in {self.inclusion_timeout:.0f} s") from None
        finally:
            self._watched.pop(xt_hash, None)
        failed = receipt.find("System", "ExtrinsicFailed")
        if failed:
            raise self._dispatch_error(failed[0]["dispatch_error"], receipt.block_number)
        return receipt

    async def _sign_and_send(self, keypair: Keypair, pallet: str, call: str, params: dict):
        account = keypair.ss58_address
        for attempt in range(3):
            if not self._nonces.known(account):
                self._nonces.set(account, await self.request("system_accountNextIndex", [account]))
            nonce = self._nonces.take(account)
            raw, xt_hash = await self.runtime.sign(keypair, pallet, call, params, nonce)
            future = asyncio.get_running_loop().create_future()
            self._watched[xt_hash] = future
            try:
                await self._send(raw)
                log.debug("extrinsic_submitted", call=f"{pallet}.{call}", account=account, nonce=nonce, hash=xt_hash)
                return xt_hash, future
            except TransactionRejected as exc:
                self._watched.pop(xt_hash, None)
                if exc.is_nonce_conflict and attempt < 2:
                    log.info("nonce_resync", account=account, nonce=nonce, reason=exc.data)
                    self._nonces.forget(account)
                    continue
                self._nonces.give_back(account, nonce)
                raise
            except BaseException:
                self._watched.pop(xt_hash, None)
                self._nonces.forget(account)  # unknown whether the pool took it: ask the chain next time
                raise
        raise AssertionError("unreachable")

    async def _send(self, raw: bytes) -> None:
        """Hand the bytes to the pool; after a reconnect, resend the same bytes (never re-sign)."""
        resent = False
        while True:
            rpc = self._rpc
            try:
                await rpc.request("author_submitExtrinsic", ["0x" + raw.hex()])
                return
            except RpcError as exc:
                if resent and exc.code in (1013, 1010) and ("already" in exc.message.lower() + str(exc.data).lower()
                                                            or "outdated" in str(exc.data).lower()):
                    return  # the first send did reach the pool (or a block) before the connection dropped
                raise TransactionRejected(exc.code, exc.message, str(exc.data or "")) from None
            except ConnectionLost:
                if self.closed:
                    raise
                await self._reconnect()
                resent = True

    def _dispatch_error(self, error: Any, block_number: int) -> DispatchFailed:
        if isinstance(error, dict) and "Module" in error:
            module = error["Module"]
            code = module["error"]
            index = int(code[2:4], 16) if isinstance(code, str) else (code[0] if isinstance(code, (bytes, list)) else code)
            pallet, name, docs = self.runtime.module_error(module["index"], index)
            return DispatchFailed(pallet, name, docs, block_number)
        name = error if isinstance(error, str) else next(iter(error))
        return DispatchFailed("System", str(name), "", block_number)

    # -- following blocks -----------------------------------------------------------------------
    async def _follow(self) -> None:
        """Process every finalized block in order: resolve watched extrinsics, wake event streams."""
        cursor = self._finalized
        while not self.closed:
            try:
                sub = await self._rpc.subscribe("chain_subscribeFinalizedHeads", [], "chain_unsubscribeFinalizedHeads")
                async for header in sub:
                    number = int(header["number"], 16)
                    while cursor < number:
                        cursor += 1
                        if self._watched:
                            await self._resolve_inclusions(cursor)
                        await self._advance(cursor)
            except ConnectionLost:
                if self.closed:
                    return
                try:
                    await self._reconnect()
                except ConnectionLost as exc:
                    log.error("chain_unreachable", url=self.url, error=str(exc))
                    self._failure = exc
                    for future in self._watched.values():
                        if not future.done():
                            future.set_exception(exc)
                    async with self._new_block:
                        self._new_block.notify_all()
                    return
            except RpcError as exc:
                log.error("chain_follow_failed", url=self.url, error=str(exc))
                await asyncio.sleep(1)

    async def _advance(self, number: int) -> None:
        async with self._new_block:
            self._finalized = number
            self._new_block.notify_all()

    async def _resolve_inclusions(self, number: int) -> None:
        block_hash = await self.block_hash(number)
        block = await self.request("chain_getBlock", [block_hash])
        hashes = ["0x" + blake2_256(bytes.fromhex(x[2:])).hex() for x in block["block"]["extrinsics"]]
        mine = [(i, h) for i, h in enumerate(hashes) if h in self._watched]
        if not mine:
            return
        raw = await self.request("state_getStorage", [self._events_key, block_hash])
        events = await self.runtime.decode_events(number, block_hash, raw)
        for i, xt_hash in mine:
            future = self._watched.get(xt_hash)
            if future is not None and not future.done():
                future.set_result(Receipt(xt_hash, number, block_hash, i,
                                          [e for e in events if e.extrinsic_index == i]))

    async def events(self, since: Checkpoint | None = None) -> AsyncIterator[Event]:
        """Every event after ``since`` (default: from the next block on), in chain order, forever.

        Catches up block by block first, then follows finalized heads; survives reconnects without
        losing or repeating an event. Persist ``Checkpoint.after(event)`` to resume after a restart.
        """
        since = since or Checkpoint(self._finalized + 1)
        block, after = since.block_number, since.index
        while True:
            async with self._new_block:
                await self._new_block.wait_for(lambda b=block: self._finalized >= b or self._failure is not None)
            if self._failure is not None and self._finalized < block:
                raise self._failure
            for event in await self.events_at(block):
                if event.index > after:
                    yield event
            self.followed_block = max(self.followed_block, block)
            block, after = block + 1, -1
