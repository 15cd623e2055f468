"""JSON-RPC 2.0 over one connection, async: many requests in flight, subscriptions as async iterators.

The chain client talks to a node only through :class:`RpcTransport`, so tests and other transports
swap the edge, not the logic. :class:`FramedRpc` is the JSON-RPC half every transport shares (ids,
pending requests, subscriptions, a notification that beats its subscription's reply); a transport
only moves text frames: :class:`WebSocketRpc` over a socket, the devnet's in-process transport
(``decentralml_core.devnet.inprocess``) into a node in the same event loop. A lost connection fails
every pending request and ends every subscription with :class:`ConnectionLost`; reconnecting is the
caller's decision.

The socket is the ``websockets`` library's asyncio client: aiohttp did the same job but its import
(SSL contexts built at import) cost ~0.3 s of every command's start-up, a sixth of ``task list``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from ..logs import get_logger
from ..netguard import NODE_TOKEN_ENV, bearer_headers
from .errors import ConnectionLost

log = get_logger(__name__)
MAX_MESSAGE = 64 * 1024 * 1024  # metadata and large blocks fit
HEARTBEAT_S = 10.0  # a ping this often; no pong within half of it and the connection is lost
# How long a closing handshake may take: one round trip with a live peer. A silent one never answers, and
# the websockets library waits this long before it reports the connection closed, after a missed pong
# too: at the connect timeout (10 s) a frozen link took 11.5 s to be given up instead of 1.5 heartbeats,
# and closing a client 10 s more.
CLOSE_TIMEOUT_S = 1.0
REQUEST_TIMEOUT_S = 30.0  # a node that answers no request for this long is treated as lost


class RpcError(Exception):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} ({code})" + (f": {data}" if data else ""))
        self.code, self.message, self.data = code, message, data


class Subscription:
    """Notifications of one subscription, in order; ends with ConnectionLost if the socket drops."""

    def __init__(self, rpc: FramedRpc, sub_id: str, unsubscribe: str) -> None:
        self.id, self._rpc, self._unsubscribe = sub_id, rpc, unsubscribe
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        item = await self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def close(self) -> None:
        self._rpc._subs.pop(self.id, None)
        if not self._rpc.closed:
            try:
                await self._rpc.request(self._unsubscribe, [self.id])
            except (RpcError, ConnectionLost):
                pass


class BatchRefused(Exception):
    """The node refused a JSON-RPC batch as a whole (one error with a null id): it takes calls one by one."""


class RpcTransport(Protocol):
    closed: bool

    async def request(self, method: str, params: list[Any] | None = None) -> Any: ...

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]: ...

    async def subscribe(self, method: str, params: list[Any], unsubscribe: str) -> Subscription: ...

    async def close(self) -> None: ...


class FramedRpc:
    """JSON-RPC 2.0 over an ordered channel of text frames; a subclass sends frames (:meth:`_send_frame`),
    hands every frame it receives to :meth:`_receive`, and gives the channel up in :meth:`_lose`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._subs: dict[str, Subscription] = {}
        self._early: dict[str, list[Any]] = {}  # notifications that beat their subscription's reply
        self._batches: set[asyncio.Future[Any]] = set()  # batches in flight: set when one is refused whole
        self.closed = False

    async def _send_frame(self, text: str) -> None:
        """Send one frame; :class:`ConnectionLost` if the channel is gone."""
        raise NotImplementedError

    async def _lose(self, exc: ConnectionLost) -> None:
        """Give the channel up: every pending request and subscription ends with ``exc``."""
        raise NotImplementedError

    async def request(self, method: str, params: list[Any] | None = None) -> Any:
        if self.closed:
            raise ConnectionLost(f"connection to {self.url} is closed")
        req_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        try:
            await self._send_frame(json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method,
                                               "params": params or []}))
        except ConnectionLost:
            self._pending.pop(req_id, None)
            raise
        try:
            return await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        except TimeoutError:
            self._pending.pop(req_id, None)
            log.warning("rpc_request_timeout", url=self.url, method=method, after_s=REQUEST_TIMEOUT_S)
            lost = ConnectionLost(f"{self.url} did not answer {method} in {REQUEST_TIMEOUT_S:g} s")
            await self._lose(lost)
            raise lost from None

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Many calls in one frame (a JSON-RPC 2.0 batch): each call's result, or the :class:`RpcError` it
        got, in the calls' order. :class:`BatchRefused` if the node refuses batches as such.

        Why: a catch-up asked one block's events per request, a frame each way: 10,000 blocks cost both
        ends ~10,000 sends, JSON documents and timers (cProfile: half the client's time, 6.2 of 15.6 s in
        sending). Substrate nodes answer batches (unless started with ``--rpc-disable-batch-requests``;
        then one error with a null id, which fails every batch in flight here)."""
        if self.closed:
            raise ConnectionLost(f"connection to {self.url} is closed")
        if not calls:
            return []
        loop = asyncio.get_running_loop()
        ids = [next(self._ids) for _ in calls]
        futures = [loop.create_future() for _ in calls]
        self._pending.update(zip(ids, futures, strict=True))
        answered = asyncio.gather(*futures, return_exceptions=True)  # each answer, or the error in its place
        refused = loop.create_future()
        self._batches.add(refused)
        try:
            await self._send_frame(json.dumps([{"jsonrpc": "2.0", "id": i, "method": m, "params": p or []}
                                               for i, (m, p) in zip(ids, calls, strict=True)]))
            done, _ = await asyncio.wait((answered, refused), timeout=REQUEST_TIMEOUT_S,
                                         return_when=asyncio.FIRST_COMPLETED)
            if answered in done:
                results = answered.result()
                lost = next((r for r in results if isinstance(r, ConnectionLost)), None)
                if lost is not None:
                    raise lost
                return results
            if refused in done:
                raise BatchRefused(str(refused.result()))
            log.warning("rpc_request_timeout", url=self.url, method=f"batch of {len(calls)}", after_s=REQUEST_TIMEOUT_S)
            timed_out = ConnectionLost(f"{self.url} did not answer a batch of {len(calls)} in {REQUEST_TIMEOUT_S:g} s")
            await self._lose(timed_out)
            raise timed_out
        finally:
            self._batches.discard(refused)
            for i, future in zip(ids, futures, strict=True):
                self._pending.pop(i, None)
                future.cancel()  # unanswered ones; the gather has seen every answer

    async def subscribe(self, method: str, params: list[Any], unsubscribe: str) -> Subscription:
        sub_id = await self.request(method, params)
        sub = Subscription(self, sub_id, unsubscribe)
        self._subs[sub_id] = sub
        for item in self._early.pop(sub_id, []):
            sub.queue.put_nowait(item)
        return sub

    def _receive(self, text: str) -> None:
        """One frame from the node: replies settle their requests, notifications go to their subscriptions."""
        try:
            self._dispatch(json.loads(text))
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            log.warning("rpc_bad_message", url=self.url, error=str(exc), size=len(text))

    def _dispatch(self, message: Any) -> None:
        for item in message if isinstance(message, list) else [message]:
            if "id" in item and item["id"] is not None:
                future = self._pending.pop(item["id"], None)
                if future is None or future.done():
                    continue
                if "error" in item:
                    err = item["error"]
                    future.set_exception(RpcError(err.get("code", 0), err.get("message", ""), err.get("data")))
                else:
                    future.set_result(item.get("result"))
            elif "params" in item:
                sub_id, result = item["params"]["subscription"], item["params"]["result"]
                sub = self._subs.get(sub_id)
                if sub is not None:
                    sub.queue.put_nowait(result)
                elif len(self._early) < 64:  # else a late notice of a subscription already closed
                    self._early.setdefault(sub_id, []).append(result)
            elif isinstance(item, dict) and isinstance(item.get("error"), dict):  # no id: a batch refused
                err = item["error"]  # whole (no other request of ours can fail so)
                for refused in self._batches:
                    if not refused.done():
                        refused.set_result(RpcError(err.get("code", 0), err.get("message", ""), err.get("data")))

    def _fail(self, exc: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()
        for sub in self._subs.values():
            sub.queue.put_nowait(exc)
        self._subs.clear()


class WebSocketRpc(FramedRpc):
    """One WebSocket connection to a node; ``await WebSocketRpc.connect(url)``."""

    def __init__(self, url: str, ws: ClientConnection) -> None:
        super().__init__(url)
        self._ws = ws
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, timeout: float = 10.0) -> WebSocketRpc:
        """A connection whose silent death (a peer gone without a FIN, a proxy or NAT that stopped
        forwarding) is noticed within ~1.5 heartbeats, and whose handshake is bounded by ``timeout``."""
        try:  # proxy=None: a node is dialled directly, whatever proxy the environment names
            ws = await asyncio.wait_for(ws_connect(url, max_size=MAX_MESSAGE, ping_interval=HEARTBEAT_S,
                                                   ping_timeout=HEARTBEAT_S / 2, open_timeout=timeout,
                                                   close_timeout=CLOSE_TIMEOUT_S, compression=None, proxy=None,
                                                   additional_headers=bearer_headers(NODE_TOKEN_ENV)), timeout)
        except (TimeoutError, WebSocketException, OSError) as exc:
            raise ConnectionLost(f"cannot connect to {url}: {exc}") from exc
        return cls(url, ws)

    async def _send_frame(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except (ConnectionError, ConnectionClosed, RuntimeError) as exc:
            raise ConnectionLost(f"lost {self.url}: {exc}") from exc

    async def close(self) -> None:
        self.closed = True
        self._reader.cancel()
        await self._ws.close()
        self._fail(ConnectionLost("closed"))

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                if isinstance(data, str):
                    self._receive(data)
        except (ConnectionClosed, ConnectionError) as exc:
            log.warning("rpc_connection_error", url=self.url, error=str(exc))
        finally:
            if not self.closed:
                log.warning("rpc_connection_lost", url=self.url)
                await self._lose(ConnectionLost(f"lost connection to {self.url}"))

    async def _lose(self, exc: ConnectionLost) -> None:
        if self.closed:
            return
        self.closed = True
        self._fail(exc)
        if asyncio.current_task() is not self._reader:
            self._reader.cancel()
        self._ws.transport.abort()  # drops the socket at once: no closing handshake with a silent peer
