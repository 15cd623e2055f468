"""An async client for a Substrate node: pipelined, nonce-tracked submission; storage reads; events.

One connection per client. Reads are retried across reconnects (tenacity backoff). A block follower
watches every finalized block in order, so an extrinsic's inclusion is seen even when the connection
dropped in between; it never gives up on the node (a restart may take minutes on a loaded host), it
reconnects until the client is closed.

Every extrinsic the client signs is held (:mod:`.inflight`) until it is seen in a block or known dead.
A node's pool is not durable, so when it may have lost them — after every reconnect (a restart shows
as one), and when an account's extrinsics have neither been sent nor landed for ``stall_after``
seconds (an eviction, an endpoint that silently drops) — the client reads the account's nonce at the
block it has followed to and resends the same bytes of each extrinsic still unused, in nonce order,
filling a nonce none holds with a remark so no gap stalls the rest. Bytes that can never be valid
again are re-signed with the same nonce, so at most one of the two forms can land: never two
extrinsics with one nonce, never a gap, never lost finished work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from ..logs import get_logger
from .errors import (
    ChainChanged,
    ConnectionLost,
    DispatchFailed,
    ExtrinsicDropped,
    InclusionTimeout,
    TransactionRejected,
    runtime_dispatch_error,
)
from .inflight import InFlight, Signed
from .rpc import BatchRefused, RpcError, RpcTransport, WebSocketRpc
from .runtime import Event, Runtime

if TYPE_CHECKING:
    from substrateinterface import Keypair

log = get_logger(__name__)
# An account whose extrinsics have neither been sent nor landed for this long is recovered. A false
# alarm costs a few reads and resends the pool answers "already imported"; 10 s is 20 blocks at the
# devnet's 0.5 s and under two of a 6 s production chain's, so a lost extrinsic costs at most ~10 s.
STALL_AFTER_S = 10.0
WATCH_EVERY_S = 1.0
# Blocks an event stream fetches at once while behind, and how many go in one request (their hashes in one
# call, their events in one JSON-RPC batch). 64 in flight, 32 to a batch (two batches, each two round trips
# in turn) left a 20 ms link idle half the time: 10,000 blocks took 12.2 s through the bench's proxy and
# 6.5 s with 256 in flight, 64 to a batch (loopback: 4.7-7.4 s and 3.3 s). 256 blocks' events held at
# once: a few hundred kB on a chain like the devnet's, ~25 MB should every block carry 100 kB of events.
CATCH_UP_WINDOW = 256
CATCH_UP_BATCH = 64
DECODED_KEPT = 128  # recent blocks whose decoded events are kept (the follower and a stream read the same)
HASHES_KEPT = 256  # recent finalized blocks' hashes kept by number (the follower and a stream ask the same)
FILLER = ("System", "remark", {"remark": "0x"})  # what fills a nonce no extrinsic holds any more
T = TypeVar("T")
Dial = Callable[[], Awaitable[RpcTransport]]  # a new connection to the node, or ConnectionLost


def extrinsic_hash(raw_hex: str) -> str:
    return "0x" + hashlib.blake2b(bytes.fromhex(raw_hex[2:]), digest_size=32).hexdigest()


def _observe(future: asyncio.Future[Any]) -> None:
    """Mark a held extrinsic's outcome as seen, so one whose caller stopped waiting logs no warning."""
    if not future.cancelled():
        future.exception()


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
    """``async with await ChainClient.connect(url) as client: …``

    The node is reached through ``dial`` (default: a WebSocket to ``url``): every connection, the first
    and each after a loss, is one call of it. Another transport — the devnet's node in this process
    (``decentralml_core.devnet.inprocess``) — swaps the edge and keeps every reconnect and recovery path.
    """

    def __init__(self, url: str, rpc: RpcTransport, runtime: Runtime, *, reconnect_for: float,
                 inclusion_timeout: float, stall_after: float = STALL_AFTER_S, dial: Dial | None = None) -> None:
        self.url, self._rpc, self.runtime = url, rpc, runtime
        self._connect: Dial = dial or (lambda: WebSocketRpc.connect(url))
        self.reconnect_for, self.inclusion_timeout, self.stall_after = reconnect_for, inclusion_timeout, stall_after
        self._inflight = InFlight()
        self._locks: dict[str, asyncio.Lock] = {}
        self._recovering: dict[str, asyncio.Task[None]] = {}
        self._reconnecting: asyncio.Task[None] | None = None
        # set (and replaced) as each finalized block is processed: event streams wait on it. Not an asyncio.Condition:
        # a stream cancelled while waiting must re-acquire the condition's lock, and on Python 3.11 that wait could
        # hang for good (an engine stopping after its tasks were paid never returned: the stream's task sat
        # "cancelling" on a lock future no one would set). An event has no lock: a cancelled wait just ends.
        self._new_block = asyncio.Event()
        self._finalized = -1
        self.followed_block = -1  # the last block an event stream went through, with events or none
        self._follower: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._events_key: str | None = None
        self._failure: Exception | None = None  # final (closed, another chain): streams and waiters get this
        self.genesis: str | None = None
        self._seen: tuple[int, str] | None = None  # a block the follower saw, by number and hash
        self._decoded: OrderedDict[str, list[Event]] = OrderedDict()  # recent blocks' events, by block hash
        self._hashes: OrderedDict[int, str] = OrderedDict()  # recent finalized blocks' hashes, by number
        self._heads_to = -1  # the newest finalized head the follower was told of
        self._batches_refused = False  # the node answers no JSON-RPC batch: reads go one by one
        self.outage_since: float | None = None  # monotonic time the node was first found unreachable
        self.recoveries = 0
        self.closed = False

    @classmethod
    async def connect(cls, url: str, *, reconnect_for: float = 60.0, inclusion_timeout: float = 120.0,
                      stall_after: float = STALL_AFTER_S, dial: Dial | None = None) -> ChainClient:
        """Connect to ``url`` over a WebSocket, or through ``dial`` (``url`` then only names the node in logs)."""
        rpc = await (dial() if dial is not None else WebSocketRpc.connect(url))
        try:
            runtime = await Runtime.load(url, rpc if dial is not None else None)
        except Exception as exc:
            await rpc.close()
            raise ConnectionLost(f"cannot load the runtime of {url}: {exc}") from exc
        client = cls(url, rpc, runtime, reconnect_for=reconnect_for, inclusion_timeout=inclusion_timeout,
                     stall_after=stall_after, dial=dial)
        client.genesis = await client.request("chain_getBlockHash", [0])
        client._events_key = await runtime.storage_key("System", "Events")
        client._finalized = await client.block_number()
        client._follower = asyncio.create_task(client._follow())
        client._watchdog = asyncio.create_task(client._watch_stalls())
        return client

    async def __aenter__(self) -> ChainClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.closed = True
        self._fail(self._failure or ConnectionLost("client closed"))
        for task in (self._follower, self._watchdog, *self._recovering.values()):
            if task:
                task.cancel()
        self._wake_streams()  # event streams end with the failure
        await self._rpc.close()
        await self.runtime.close()

    def _fail(self, exc: Exception) -> None:
        """Final: every held extrinsic's waiter and every event stream gets ``exc``."""
        self._failure = exc
        for account in self._inflight.accounts():
            for signed in self._inflight.of(account):
                self._inflight.remove(signed)
                if not signed.future.done():
                    signed.future.set_exception(exc)

    @property
    def health(self) -> dict[str, Any]:
        """For an agent's /healthz: ``degraded`` while the node is unreachable or held extrinsics wait
        for a recovery to land them."""
        recovering = sum(not task.done() for task in self._recovering.values())
        state = "failed" if self._failure else "degraded" if self.outage_since is not None or recovering else "ok"
        return {"chain": state, "in_flight": len(self._inflight), "recoveries": self.recoveries,
                "unreachable_s": None if self.outage_since is None else round(time.monotonic() - self.outage_since, 1)}

    # -- connection ----------------------------------------------------------------------------
    async def _reconnect(self, failed: RpcTransport) -> None:
        """One reconnect at a time, however many callers noticed the loss (and none for a connection
        already replaced)."""
        if self._failure is not None:
            raise self._failure
        if self._rpc is not failed and not self._rpc.closed:
            return
        if self.outage_since is None:
            self.outage_since = time.monotonic()
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.create_task(self._dial())
            self._reconnecting.add_done_callback(_observe)
        await asyncio.shield(self._reconnecting)

    async def _dial(self) -> None:
        async for attempt in AsyncRetrying(retry=retry_if_exception_type(ConnectionLost),
                                           wait=wait_exponential(multiplier=0.1, max=2),
                                           stop=stop_after_delay(self.reconnect_for), reraise=True):
            with attempt:
                if self.closed:
                    raise asyncio.CancelledError()
                rpc = await self._connect()
                try:
                    genesis = await rpc.request("chain_getBlockHash", [0])
                except (ConnectionLost, RpcError) as exc:
                    await rpc.close()
                    raise ConnectionLost(f"{self.url} did not say its genesis: {exc}") from exc
                if self.genesis is not None and genesis != self.genesis:
                    await rpc.close()
                    changed = ChainChanged(f"{self.url} now serves another chain (genesis {genesis}, was "
                                           f"{self.genesis}): nothing signed for the old one can land there")
                    log.error("chain_changed", url=self.url, genesis=genesis, was=self.genesis)
                    self._fail(changed)
                    raise changed
                await self._check_same_chain(rpc)
                self._hashes.clear()  # asked again of the node we now talk to (the same chain: the same answers)
                self._rpc = rpc
                outage = None if self.outage_since is None else round(time.monotonic() - self.outage_since, 1)
                self.outage_since = None
                log.info("chain_reconnected", url=self.url, attempt=attempt.retry_state.attempt_number,
                         unreachable_s=outage)
        for account in self._inflight.accounts():  # a restarted node lost its pool: ours may be gone
            self._spawn_recovery(account, "reconnected")

    async def _check_same_chain(self, rpc: RpcTransport) -> None:
        """A node with our genesis but another block where we have been (a devnet restarted with ``--tmp``
        has the same genesis and starts again at block 0) serves another chain."""
        if self._seen is None:
            return
        number, seen = self._seen
        try:
            theirs = await rpc.request("chain_getBlockHash", [number])
        except (ConnectionLost, RpcError) as exc:
            await rpc.close()
            raise ConnectionLost(f"{self.url} did not answer chain_getBlockHash: {exc}") from exc
        if theirs is None:
            log.warning("chain_behind", url=self.url, followed_to=number,
                        action="waiting for the node to reach the block this client followed to; if the chain was "
                               "started afresh, start the agent with a fresh state dir")
        elif theirs != seen:
            await rpc.close()
            raise self._changed(number, theirs)

    def _note_parent(self, number: int, block_hash: str) -> None:
        """Remember the newest block the node named; a different hash at that height is another chain."""
        if number < 0:
            return
        if self._seen is not None:
            known, seen = self._seen
            if number == known and block_hash != seen:
                raise self._changed(number, block_hash)
            if number < known:  # a node behind where we have been: keep the mark until it gets there
                return
        self._seen = (number, block_hash)

    def _changed(self, number: int, theirs: str) -> ChainChanged:
        seen = self._seen[1] if self._seen else None
        changed = ChainChanged(f"{self.url} serves another chain: block {number} is {theirs}, was {seen} "
                               "(a devnet started afresh?)")
        log.error("chain_changed", url=self.url, block=number, hash=theirs, was=seen)
        self._fail(changed)
        return changed

    async def request(self, method: str, params: list[Any] | None = None) -> Any:
        """A read: retried across reconnects until ``reconnect_for`` seconds have passed."""
        return await self._retried(lambda rpc: rpc.request(method, params))

    async def requests(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Many reads in one frame (a JSON-RPC batch; one by one, all in flight, from a node that refuses
        batches): each one's result, or the :class:`RpcError` it got. Retried across reconnects like
        :meth:`request`."""
        async def on(rpc: RpcTransport) -> list[Any]:
            if not self._batches_refused:
                try:
                    return await rpc.batch(calls)
                except BatchRefused:
                    self._batches_refused = True
            results = await asyncio.gather(*(rpc.request(m, p) for m, p in calls), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, RpcError):
                    raise result
            return results

        return await self._retried(on)

    async def _retried(self, call: Callable[[RpcTransport], Awaitable[T]]) -> T:
        """``call`` on the current connection, again on the next one after a loss, until the client fails
        for good (``reconnect_for`` passed, another chain) or is closed."""
        while True:
            if self._failure is not None:
                raise self._failure
            rpc = self._rpc
            try:
                return await call(rpc)
            except ConnectionLost:
                if self.closed:
                    raise
                await self._reconnect(rpc)

    # -- reads ----------------------------------------------------------------------------------
    async def block_number(self) -> int:
        head = await self.request("chain_getHeader", [await self.request("chain_getFinalizedHead")])
        return int(head["number"], 16)

    async def block_hash(self, number: int) -> str | None:
        """The hash of block ``number``; a finalized block's is asked once and remembered (it cannot change
        on this chain): the follower settling our extrinsics and the event stream asked the node for the
        same block's hash one after the other, a round trip a block each (``bench/farm.py``: ~15 % of
        the devnet's requests)."""
        known = self._hashes.get(number)
        if known is not None:
            return known
        block_hash: str | None = await self.request("chain_getBlockHash", [number])
        if block_hash is not None and number <= max(self._finalized, self._heads_to):
            self._hashes[number] = block_hash
            while len(self._hashes) > HASHES_KEPT:
                self._hashes.popitem(last=False)
        return block_hash

    async def storage(self, pallet: str, item: str, params: list[Any] | None = None, block_hash: str | None = None) -> Any:
        key = await self.runtime.storage_key(pallet, item, params)
        raw = await self.request("state_getStorage", [key] + ([block_hash] if block_hash else []))
        return await self.runtime.decode_storage(pallet, item, raw)

    async def storage_map(self, pallet: str, item: str, page: int = 1000,
                          block_hash: str | None = None) -> list[tuple[Any, Any]]:
        """Every (key, value) of a map, as of one block (pages of keys, then their values, all at
        ``block_hash``, else at the head's hash read first), through this client's connection and its
        reconnects."""
        prefix = await self.runtime.storage_key(pallet, item)
        at = block_hash or await self.request("chain_getBlockHash", [])
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
        free: int = (await self.storage("System", "Account", [address]))["data"]["free"]
        return free

    async def pool_backlog(self, account: str) -> int:
        """How many of ``account``'s extrinsics the node's pool holds, ready to land (the node's next index
        beyond the nonce the chain has used)."""
        next_index: int = await self.request("system_accountNextIndex", [account])
        on_chain: int = (await self.storage("System", "Account", [account]))["nonce"]
        return max(0, next_index - on_chain)

    async def wait_settled(self, account: str, timeout: float) -> int:
        """Wait (up to ``timeout`` s) until the pool holds none of ``account``'s extrinsics, e.g. those an
        earlier process sent just before it died: a step resumed after a restart then reads the chain after
        they landed, so it neither misses nor repeats them. Returns how many still wait (0: settled)."""
        deadline = time.monotonic() + timeout
        while (backlog := await self.pool_backlog(account)) and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        return backlog

    async def events_at(self, number: int) -> list[Event]:
        block_hash = await self.block_hash(number)
        if block_hash is None:
            return []
        return await self._events_of(number, block_hash)

    async def _block_hashes(self, numbers: list[int]) -> dict[int, str]:
        """The hashes of many blocks in one request (``chain_getBlockHash`` takes a list): a catch-up asked
        one a block, half its requests (10,000 blocks: 20,000 requests, each a frame each way and a
        few hundred µs of the node's and our CPU). Empty when the node does not take a list."""
        try:
            found = await self.request("chain_getBlockHash", [numbers])
        except RpcError:
            return {}
        if not isinstance(found, list) or len(found) != len(numbers):
            return {}
        return {n: h for n, h in zip(numbers, found, strict=True) if isinstance(h, str)}

    async def _events_of_blocks(self, numbers: list[int]) -> dict[int, list[Event]]:
        """The events of consecutive blocks: their hashes in one request, the events not decoded yet in one
        batch, split into records on the runtime's thread in one hop (one hop a block cost ~0.2 ms of the
        loop's time in thread hand-offs, more than the split itself)."""
        if len(numbers) == 1:  # following the head: a block at a time
            return {numbers[0]: await self.events_at(numbers[0])}
        hashes = await self._block_hashes(numbers)
        missing = [n for n in numbers if n not in hashes]  # a node that takes no list: one request each
        for n, one in zip(missing, await asyncio.gather(*map(self.block_hash, missing)), strict=True):
            if one is not None:
                hashes[n] = one
        found = await self._events_of_hashes([(n, hashes[n]) for n in numbers if n in hashes])
        return {n: found.get(n, []) for n in numbers}

    async def _events_of(self, number: int, block_hash: str) -> list[Event]:
        """A block's decoded events, decoded once: the follower settling our extrinsics and the event
        stream read the same recent blocks (decoding is most of an agent's CPU per block)."""
        return (await self._events_of_hashes([(number, block_hash)]))[number]

    async def _events_of_hashes(self, blocks: list[tuple[int, str]]) -> dict[int, list[Event]]:
        """The events of (number, hash) blocks, by number: those decoded recently from the cache, the others
        read in one request (a JSON-RPC batch for several) and split on the runtime's thread in one hop."""
        found = {n: cached for n, h in blocks if (cached := self._decoded.get(h)) is not None}
        todo = [(n, h) for n, h in blocks if n not in found]
        if not todo:
            return found
        if len(todo) == 1:  # following the head: no batch for one call
            raws: list[Any] = [await self.request("state_getStorage", [self._events_key, todo[0][1]])]
        else:
            raws = await self.requests([("state_getStorage", [self._events_key, h]) for _, h in todo])
            refused = next((r for r in raws if isinstance(r, RpcError)), None)
            if refused is not None:
                raise refused
        found.update(await self._decode_events(todo, raws))
        return found

    async def _decode_events(self, blocks: list[tuple[int, str]], raws: list[Any]) -> dict[int, list[Event]]:
        """The events of (number, hash) blocks from their ``System.Events`` bytes, decoded and remembered."""
        decoded = await self.runtime.decode_blocks_events([(n, h, raw) for (n, h), raw in zip(blocks, raws, strict=True)])
        found = {}
        for (n, h), events in zip(blocks, decoded, strict=True):
            self._remember(h, events)
            found[n] = events
        return found

    def _remember(self, block_hash: str, events: list[Event]) -> None:
        self._decoded[block_hash] = events
        while len(self._decoded) > DECODED_KEPT:
            self._decoded.popitem(last=False)

    # -- submission -----------------------------------------------------------------------------
    async def submit(self, keypair: Keypair, pallet: str, call: str, params: dict[str, Any], *, key: str | None = None) -> Receipt:
        """Sign with the account's next nonce, hand to the pool, wait for inclusion.

        ``key`` names what the call does (``"verdict:12"``): while an extrinsic with the same key is
        held for the account (its caller gave up waiting), a new submit waits for that one instead.

        Returns the receipt; raises :class:`DispatchFailed` if the call failed on chain (final: do
        not retry), :class:`TransactionRejected` if the pool refused it, :class:`ExtrinsicDropped` if it
        can never land, :class:`InclusionTimeout` (it is still held and may land: read the chain before
        trying again). Many calls may be awaited at once, for one account or many: they pipeline.
        """
        if self._failure is not None:
            raise self._failure
        async with self._lock(keypair.ss58_address):
            signed = self._inflight.keyed(keypair.ss58_address, key) if key else None
            if signed is None:
                signed = await self._sign_and_send(keypair, pallet, call, params, key)
            else:
                log.info("extrinsic_joined", call=signed.label, key=key, nonce=signed.nonce, hash=signed.hash)
        try:
            receipt: Receipt = await asyncio.wait_for(asyncio.shield(signed.future), self.inclusion_timeout)
        except TimeoutError:
            raise InclusionTimeout(f"{signed.label} {signed.hash} not included in {self.inclusion_timeout:.0f} s "
                                   "(still held: resent should the node lose it)") from None
        failed = receipt.find("System", "ExtrinsicFailed")
        if failed:
            raise self._dispatch_error(failed[0]["dispatch_error"], receipt.block_number)
        return receipt

    def _lock(self, account: str) -> asyncio.Lock:
        """Held while an account signs and sends, and while it is recovered: nonces are taken in order."""
        return self._locks.setdefault(account, asyncio.Lock())

    async def _sign_and_send(self, keypair: Keypair, pallet: str, call: str, params: dict[str, Any], key: str | None) -> Signed:
        account = keypair.ss58_address
        for attempt in range(3):
            if not self._inflight.known(account):
                self._inflight.set_next(account, await self.request("system_accountNextIndex", [account]))
            nonce = self._inflight.take(account)
            raw, xt_hash = await self.runtime.sign(keypair, pallet, call, params, nonce)
            signed = Signed(account, nonce, f"{pallet}.{call}", raw, [xt_hash],
                            asyncio.get_running_loop().create_future(), keypair, pallet, call, params, key=key)
            signed.future.add_done_callback(_observe)
            self._inflight.add(signed, time.monotonic())  # before sending: its block may be followed at once
            try:
                await self._send(raw)
            except TransactionRejected as exc:
                self._inflight.remove(signed)
                if exc.is_nonce_conflict and attempt < 2:  # the account was used elsewhere: ask the node again
                    log.info("nonce_resync", account=account, nonce=nonce, reason=exc.data)
                    self._inflight.forget(account)
                    continue
                self._inflight.give_back(account, nonce)
                raise
            except ConnectionLost:  # whether the pool took it is unknown: held, and resent once the node is back
                self._spawn_recovery(account, "send_interrupted")
                return signed
            log.debug("extrinsic_submitted", call=signed.label, account=account, nonce=nonce, hash=xt_hash)
            return signed
        raise AssertionError("unreachable")

    async def _send(self, raw: bytes) -> None:
        """Hand the bytes to the pool over the current connection (one try: a loss is the caller's to handle)."""
        try:
            await self._rpc.request("author_submitExtrinsic", ["0x" + raw.hex()])
        except RpcError as exc:
            raise TransactionRejected(exc.code, exc.message, str(exc.data or "")) from None

    # -- recovering what a node dropped -----------------------------------------------------------------
    def _spawn_recovery(self, account: str, reason: str) -> None:
        running = self._recovering.get(account)
        if self._failure is not None or (running is not None and not running.done()):
            return
        task = asyncio.create_task(self._recover(account, reason))
        self._recovering[account] = task
        task.add_done_callback(_observe)

    async def _watch_stalls(self) -> None:
        """Recover any account whose held extrinsics have neither been sent nor landed for ``stall_after``."""
        while not self.closed:
            await asyncio.sleep(WATCH_EVERY_S)
            if self.outage_since is None:
                for account in self._inflight.stalled(time.monotonic(), self.stall_after):
                    self._spawn_recovery(account, "stalled")

    async def _recover(self, account: str, reason: str) -> None:
        """Resend the account's held extrinsics whose nonce is still unused, in nonce order, as of the block
        the follower has processed (so anything included up to there is already settled)."""
        async with self._lock(account):
            held = self._inflight.of(account)
            if not held:
                return
            keypair = held[0].keypair
            counts = {"resent": 0, "resigned": 0, "filled": 0, "dropped": 0}
            try:
                at = self._finalized
                at_hash = await self.block_hash(at)
                if at_hash is None:  # the node is behind where we have been (or another chain): resend nothing yet
                    log.info("extrinsics_recovery_interrupted", account=account, reason=reason,
                             error=f"the node has no block {at} yet")
                    return
                nonce = (await self.storage("System", "Account", [account], at_hash))["nonce"]
                plan = self._inflight.plan(account, nonce)
                for replaced in plan.replaced:
                    counts["dropped"] += 1
                    self._settle_dead(replaced, ExtrinsicDropped(
                        f"{replaced.label} (nonce {replaced.nonce}) was not included, and block {at} shows the nonce used "
                        "by another extrinsic of this account: is its key used by another process?"))
                refused: TransactionRejected | None = None
                for gap, signed in plan.resend:
                    if refused is not None:  # an earlier nonce could not be filled: these can never land
                        if signed is not None:
                            counts["dropped"] += 1
                            self._settle_dead(signed, ExtrinsicDropped(f"{signed.label} waits behind nonce {gap - 1}, "
                                                                       f"which the pool refused: {refused}"))
                        continue
                    if signed is not None:
                        refused = await self._resend(signed, counts)
                        if refused is None:
                            continue
                        self._settle_dead(signed, ExtrinsicDropped(f"{signed.label} refused when resent: {refused}"))
                        counts["dropped"] += 1
                    refused = await self._fill(keypair, gap, counts)  # else every later nonce waits forever
                self._inflight.set_next(account, nonce)
            except ConnectionLost as exc:  # the next reconnect recovers again
                log.info("extrinsics_recovery_interrupted", account=account, reason=reason, error=str(exc))
                return
            except (RpcError, ChainChanged, ValueError, KeyError, TypeError) as exc:  # the next stall tries again
                log.warning("extrinsics_recovery_failed", account=account, reason=reason, error=str(exc),
                            error_type=type(exc).__name__)
                return
            finally:
                self._inflight.touch(account, time.monotonic())
            self.recoveries += 1
            log.info("extrinsics_recovered", account=account, reason=reason, block=at, onchain_nonce=nonce,
                     held=len(held), **counts)

    async def _resend(self, signed: Signed, counts: dict[str, Any]) -> TransactionRejected | None:
        """Resend ``signed`` (re-signed with its nonce if its bytes can never be valid again); None if it
        may still land, else why the pool refuses it."""
        try:
            await self._send(signed.raw)
            counts["resent"] += 1
            return None
        except TransactionRejected as exc:
            if exc.already_imported or exc.is_nonce_conflict:  # in the pool, or its nonce is used: settles itself
                return None
            if not exc.needs_new_signature:
                return exc
        raw, xt_hash = await self.runtime.sign(signed.keypair, signed.pallet, signed.call, signed.params, signed.nonce)
        self._inflight.alias(signed, raw, xt_hash)
        counts["resigned"] += 1
        try:
            await self._send(raw)
            return None
        except TransactionRejected as exc:
            return None if exc.already_imported or exc.is_nonce_conflict else exc

    async def _fill(self, keypair: Keypair, nonce: int, counts: dict[str, Any]) -> TransactionRejected | None:
        """Sign a remark with a nonce none of the account's held extrinsics uses any more, so the later
        ones can land; None if it may land."""
        pallet, call, params = FILLER
        raw, xt_hash = await self.runtime.sign(keypair, pallet, call, params, nonce)
        filler = Signed(keypair.ss58_address, nonce, f"{pallet}.{call} (fills nonce {nonce})", raw, [xt_hash],
                        asyncio.get_running_loop().create_future(), keypair, pallet, call, params, filler=True)
        filler.future.add_done_callback(_observe)
        refused = await self._resend(filler, counts)
        if refused is None:
            self._inflight.add(filler, time.monotonic())
            counts["filled"] += 1
        return refused

    def _settle_dead(self, signed: Signed, exc: Exception) -> None:
        self._inflight.remove(signed)
        if not signed.future.done():
            signed.future.set_exception(exc)
        log.warning("extrinsic_dropped", call=signed.label, account=signed.account, nonce=signed.nonce,
                    error=str(exc))

    def _dispatch_error(self, error: Any, block_number: int) -> DispatchFailed:
        if isinstance(error, dict) and "Module" in error:
            module = error["Module"]
            code = module["error"]
            index = int(code[2:4], 16) if isinstance(code, str) else (code[0] if isinstance(code, (bytes, list)) else code)
            pallet, name, docs = self.runtime.module_error(module["index"], index)
            return DispatchFailed(pallet, name, docs, block_number)
        return runtime_dispatch_error(error, block_number)  # Token(…), Arithmetic(…), BadOrigin …

    # -- following blocks -----------------------------------------------------------------------
    async def _follow(self) -> None:
        """Process every finalized block in order: settle held extrinsics, wake event streams. A lost node
        is dialled again until it answers or the client closes (``chain_unreachable`` once per outage)."""
        cursor = self._finalized
        while not self.closed:
            rpc = self._rpc
            try:
                sub = await rpc.subscribe("chain_subscribeFinalizedHeads", [], "chain_unsubscribeFinalizedHeads")
                async for header in sub:
                    number = int(header["number"], 16)
                    self._note_parent(number - 1, header["parentHash"])
                    self._heads_to = max(self._heads_to, number)
                    while cursor < number:
                        if len(self._inflight):
                            await self._resolve_inclusions(cursor + 1)
                        cursor += 1  # only once the block is processed: a loss mid-block does it again
                        await self._advance(cursor)
            except ConnectionLost:
                if self.closed:
                    return
                try:
                    await self._reach_again(rpc)
                except ChainChanged:
                    await self._advance(cursor)  # streams wake to the failure
                    return
            except ChainChanged:
                await self._advance(cursor)
                return
            except RpcError as exc:
                log.error("chain_follow_failed", url=self.url, error=str(exc))
                await asyncio.sleep(1)

    async def _reach_again(self, failed: RpcTransport) -> None:
        """Reconnect, however long the node is away; say so once per outage."""
        said = False
        while not self.closed:
            try:
                await self._reconnect(failed)
                return
            except ConnectionLost as exc:
                if not said:
                    log.warning("chain_unreachable", url=self.url, error=str(exc), action="still trying")
                    said = True
            except ChainChanged:
                raise

    def _reached(self, number: int) -> bool:
        """Whether block ``number`` is finalized here, or the client has failed (waiters wake either way)."""
        return self._finalized >= number or self._failure is not None

    async def _advance(self, number: int) -> None:
        self._finalized = number
        self._wake_streams()

    def _wake_streams(self) -> None:
        """Wake every event stream waiting for a block; each checks what it waits for and waits again if it
        has not come (a new event for the next wait: one set stays set)."""
        woken, self._new_block = self._new_block, asyncio.Event()
        woken.set()

    async def _resolve_inclusions(self, number: int) -> None:
        block_hash = await self.block_hash(number)
        if block_hash is None:  # not "the best block" (what a null hash asks for): reconnect and ask again
            raise ConnectionLost(f"the node has no hash for finalized block {number}")
        fetched = self._events_key is not None and block_hash not in self._decoded
        if fetched:  # the block and its events in one frame: the event stream reads them next (one round trip, not two)
            block, raw = await self.requests([("chain_getBlock", [block_hash]),
                                              ("state_getStorage", [self._events_key, block_hash])])
            for answer in (block, raw):
                if isinstance(answer, RpcError):
                    raise answer
        else:
            block = await self.request("chain_getBlock", [block_hash])
        mine = [(i, h) for i, h in enumerate(map(extrinsic_hash, block["block"]["extrinsics"]))
                if self._inflight.find(h) is not None]
        if not mine:
            if fetched:  # for the stream; events it cannot decode fail there, where they are read, as before
                with contextlib.suppress(Exception):
                    await self._decode_events([(number, block_hash)], [raw])
            return
        events = (await self._decode_events([(number, block_hash)], [raw]))[number] if fetched \
            else await self._events_of(number, block_hash)
        now = time.monotonic()
        for i, xt_hash in mine:
            signed = self._inflight.find(xt_hash)
            if signed is None:
                continue
            self._inflight.remove(signed, now)
            if not signed.future.done():
                signed.future.set_result(Receipt(xt_hash, number, block_hash, i,
                                                 [e for e in events if e.extrinsic_index == i]))

    async def events(self, since: Checkpoint | None = None) -> AsyncIterator[Event]:
        """Every event after ``since`` (default: from the next block on), in chain order, forever.

        Catches up first, then follows finalized heads; survives reconnects without losing or repeating
        an event. Persist ``Checkpoint.after(event)`` to resume after a restart.

        Catching up keeps up to :data:`CATCH_UP_WINDOW` blocks in flight, :data:`CATCH_UP_BATCH` to a
        request (their hashes in one call, their events in one batch, split on the runtime's thread in one
        go) and yields them in order: one block after another cost two round trips each (10,000 blocks
        over a 20 ms link: minutes); pipelined, the bound is bandwidth and decoding.
        """
        since = since or Checkpoint(self._finalized + 1)
        block, after = since.block_number, since.index
        ahead: dict[int, asyncio.Task[dict[int, list[Event]]]] = {}  # block -> the fetch it is part of
        batch = max(1, min(CATCH_UP_BATCH, CATCH_UP_WINDOW))
        try:
            while True:
                while not self._reached(block):
                    await self._new_block.wait()
                if self._failure is not None and self._finalized < block:
                    raise self._failure
                if len(ahead) <= CATCH_UP_WINDOW - batch:  # topped up a batch at a time
                    first, last = max(ahead, default=block - 1) + 1, min(self._finalized, block + CATCH_UP_WINDOW - 1)
                    for start in range(first, last + 1, batch):
                        numbers = list(range(start, min(start + batch, last + 1)))
                        fetch = asyncio.create_task(self._events_of_blocks(numbers))
                        ahead.update(dict.fromkeys(numbers, fetch))
                found = (await ahead.pop(block))[block]
                for event in found:
                    if event.index > after:
                        yield event
                self.followed_block = max(self.followed_block, block)
                block, after = block + 1, -1
        finally:
            fetches = set(ahead.values())
            for task in fetches:
                task.cancel()
            await asyncio.gather(*fetches, return_exceptions=True)
