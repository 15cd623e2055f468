"""The devnet's network edge: JSON-RPC 2.0 over WebSocket (and HTTP POST), subscriptions, block loop.

Everything chain-related is delegated to :class:`Chain` and :class:`Methods`; this module only turns
frames into calls, keeps each connection's subscriptions, and tells subscribers about new blocks.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from ..netguard import Guard
from .chain import Block, Chain
from .metadata import runtime as build_runtime
from .rpc import INVALID_REQUEST, PARSE_ERROR, JsonRpcError, Methods, header_json, hexs, runtime_version, unhex
from .store import ChainDatabase
from .subscriptions import SUBSCRIBE, UNSUBSCRIBE

log = structlog.get_logger("devnet")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # larger frames close the connection (1009); the server stays up
MAX_BATCH = 1000
BATCHES_NOT_SUPPORTED = -32005
# What a connection may have queued for its client (replies and notifications not yet taken) and how long one
# frame may wait for the client to take it; past either bound the client is dropped, never waited for. A
# reader that keeps up holds a few frames (a metadata reply is 44 kB, a batch of 1000 replies ~1 MB). A client
# that subscribed 200 times to new heads, asked for 100 metadata blobs (4.4 MB) and stopped reading used to
# block the block loop on its socket; now it queues ~70 kB a block and goes after 10 s, or at 16 MB.
MAX_PENDING_BYTES = 16 * 1024 * 1024
SEND_STALL_S = 10.0
# Blocks are final at once, yet a watched extrinsic's `finalized` update follows its `inBlock` update this
# much later, as on a node where finality trails import: @polkadot/api drops an `inBlock` status whose
# block and events it is still fetching when `finalized` arrives, so a callback waiting for isInBlock alone never fired.
FINALITY_LAG = 0.25



class Subscription:
    def __init__(self, conn: Connection, sub_id: str, notify: str, kind: str,
                 keys: set[bytes] | None = None) -> None:
        self.conn, self.id, self.notify, self.kind, self.keys = conn, sub_id, notify, kind, keys

    def send(self, result: Any) -> None:
        self.conn.send({"jsonrpc": "2.0", "method": self.notify, "params": {"subscription": self.id, "result": result}})


class Connection:
    """One client socket and its subscriptions, written by its own task from a bounded queue.

    :meth:`send` never waits: the block loop and the other clients go on whatever this client does. A
    client that lets more than ``max_pending`` bytes queue up, or leaves one frame untaken ``stall_s``
    seconds, is dropped (one ``devnet_client_dropped`` line) and its subscriptions go with it.
    """

    def __init__(self, ws: web.WebSocketResponse | None, peer: str = "", transport: asyncio.Transport | None = None,
                 max_pending: int = MAX_PENDING_BYTES, stall_s: float = SEND_STALL_S) -> None:
        self.ws, self.peer, self.transport = ws, peer, transport
        self.max_pending, self.stall_s = max_pending, stall_s
        self.subs: dict[str, Subscription] = {}
        self.queue: deque[str] = deque()
        self.pending = 0  # bytes queued, the frame being written included
        self.dropped = False
        self._ready = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass

    def send(self, message: Any) -> None:
        if self.ws is None or self.ws.closed or self.dropped:
            return
        text = json.dumps(message)
        if self.queue and self.pending + len(text) > self.max_pending:  # one frame alone always fits
            self.drop("send queue full")
            return
        self.queue.append(text)
        self.pending += len(text)
        self._ready.set()

    async def _write_loop(self) -> None:
        ws = self.ws
        if ws is None:  # an HTTP POST "connection" has no socket to write
            return
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self.queue:
                text = self.queue[0]
                try:  # asyncio.timeout, not wait_for: 3.11's wait_for loses a cancel that meets a send just done,
                    async with asyncio.timeout(self.stall_s):  # and close() then waited for this task forever
                        await ws.send_str(text)
                except TimeoutError:
                    self.drop(f"a frame untaken for {self.stall_s:g} s")
                    return
                except (ConnectionError, RuntimeError):
                    return  # the client went away; its subscriptions go with the connection
                self.queue.popleft()
                self.pending -= len(text)

    def drop(self, reason: str) -> None:
        """Cut a client that does not read: abort its socket (a close handshake would wait for it too)."""
        if self.dropped:
            return
        self.dropped = True
        log.warning("devnet_client_dropped", peer=self.peer, reason=reason, queued_frames=len(self.queue),
                    queued_bytes=self.pending, subscriptions=len(self.subs))
        self.subs.clear()
        self.queue.clear()
        if self.transport is not None:
            self.transport.abort()


class Node:
    """A running devnet: chain + RPC + subscribers + block production."""

    def __init__(self, chain: Chain, block_time: float = 0.0, max_pending: int = MAX_PENDING_BYTES,
                 stall_s: float = SEND_STALL_S, batches: bool = True) -> None:
        self.chain = chain
        self.batches = batches  # False: a batch is refused whole, as a node started with --rpc-disable-batch-requests
        self.methods = Methods(chain)
        self.block_time = block_time
        self.max_pending, self.stall_s = max_pending, stall_s
        self.connections: set[Connection] = set()
        self.watchers: dict[bytes, Subscription] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._finalizing: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._block_loop())

    async def stop(self) -> None:
        for task in [self._task, *self._finalizing]:
            if task:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass

    async def _block_loop(self) -> None:
        while True:
            if self.block_time > 0:
                await asyncio.sleep(self.block_time)
                await self._produce()
                continue
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # let submissions that arrived together join one block
            while self.chain.has_ready():
                await self._produce()
                await asyncio.sleep(0)

    async def _produce(self) -> None:
        block = self.chain.produce_block()
        log.info("block", number=block.number, hash=hexs(block.hash), extrinsics=len(block.extrinsics),
                 dropped=len(block.dropped), pool=len(self.chain.pool))
        await self._announce(block)

    async def _announce(self, block: Block) -> None:
        head = header_json(block.header)
        block_hash = hexs(block.hash)
        in_block = []
        for tx_hash in block.included:
            sub = self.watchers.pop(tx_hash, None)
            if sub is not None:
                sub.send({"inBlock": block_hash})
                in_block.append(sub)
        if in_block:
            task = asyncio.get_running_loop().create_task(self._finalized(in_block, block_hash))
            self._finalizing.add(task)
            task.add_done_callback(self._finalizing.discard)
        for tx_hash in block.dropped:
            sub = self.watchers.pop(tx_hash, None)
            if sub is not None:
                sub.send("invalid")
                sub.conn.subs.pop(sub.id, None)
        for conn in list(self.connections):
            for sub in list(conn.subs.values()):
                if sub.kind == "heads":
                    sub.send(head)
                elif sub.kind == "storage":
                    changes = [[hexs(k), hexs(v) if v is not None else None] for k, v in block.changes.items()
                               if sub.keys is None or k in sub.keys]
                    if changes:
                        sub.send({"block": block_hash, "changes": changes})

    async def _finalized(self, subs: list[Subscription], block_hash: str) -> None:
        """The last update of watched extrinsics, FINALITY_LAG after `inBlock`, unless unwatched meanwhile."""
        await asyncio.sleep(FINALITY_LAG)
        for sub in subs:
            if sub.conn.subs.pop(sub.id, None) is not None:
                sub.send({"finalized": block_hash})

    # -- requests -------------------------------------------------------------------------------
    async def serve_frame(self, conn: Connection, text: str) -> None:
        """One frame of a connection, as every transport serves it: the reply queued, a block woken."""
        reply = await self.handle_text(conn, text)
        if reply is not None:
            conn.send(reply)
        self.after_request()

    async def handle_text(self, conn: Connection, text: str) -> Any:
        """One frame in, the response (None for notifications) out."""
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            return _error(None, JsonRpcError(PARSE_ERROR, "Parse error"))
        if isinstance(message, list):
            if not self.batches:  # jsonrpsee's answer: one error, null id
                return _error(None, JsonRpcError(BATCHES_NOT_SUPPORTED, "Batched requests are not supported by this server"))
            if not message or len(message) > MAX_BATCH:
                return _error(None, JsonRpcError(INVALID_REQUEST, "Invalid request", "batch must hold 1..1000 calls"))
            replies = [await self.handle_request(conn, m) for m in message]
            return [r for r in replies if r is not None] or None
        return await self.handle_request(conn, message)

    async def handle_request(self, conn: Connection, message: Any) -> Any:
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            return _error(message.get("id") if isinstance(message, dict) else None,
                          JsonRpcError(INVALID_REQUEST, "Invalid request"))
        req_id, method, params = message.get("id"), message["method"], message.get("params")
        try:
            if method in SUBSCRIBE:
                result = await self.subscribe(conn, method, params, req_id)
                return None if result is None else _ok(req_id, result)
            if method in UNSUBSCRIBE:
                result = self.unsubscribe(conn, params)
            else:
                result = self.methods.call(method, params)
        except JsonRpcError as exc:
            return _error(req_id, exc)
        except Exception as exc:  # a bug must not take the node down: report it and keep serving
            log.exception("rpc_internal_error", method=method)
            return _error(req_id, JsonRpcError(-32603, "Internal error", str(exc)))
        return None if "id" not in message else _ok(req_id, result)

    async def subscribe(self, conn: Connection, method: str, params: Any, req_id: Any) -> Any:
        if conn.ws is None:
            raise JsonRpcError(-32000, "Subscriptions need a WebSocket connection")
        notify, kind = SUBSCRIBE[method]
        params = params or []
        keys: set[bytes] | None = None
        if kind == "extrinsic":
            if not params:
                raise JsonRpcError(-32602, "Invalid params", "the extrinsic is missing")
            tx_hash, ready = self.methods.submit(params[0])
        elif kind == "storage" and params and params[0] is not None:
            if not isinstance(params[0], list):
                raise JsonRpcError(-32602, "Invalid params", "keys must be an array")
            keys = {unhex(k, "storage key") for k in params[0]}
        sub = Subscription(conn, secrets.token_hex(8), notify, kind, keys)
        conn.subs[sub.id] = sub
        conn.send(_ok(req_id, sub.id))
        # what a node sends right after subscribing
        if kind == "heads":
            sub.send(header_json(self.chain.best_header))
        elif kind == "version":
            sub.send(runtime_version())
        elif kind == "storage" and keys is not None:
            changes = [[hexs(k), hexs(v) if (v := self.chain.state.get(k)) is not None else None] for k in keys]
            sub.send({"block": hexs(self.chain.best_hash), "changes": changes})
        elif kind == "extrinsic":
            self.watchers[tx_hash] = sub
            sub.send("ready" if ready else "future")
            self._wake.set()
        return None

    def unsubscribe(self, conn: Connection, params: Any) -> bool:
        if not isinstance(params, list) or not params or not isinstance(params[0], str):
            raise JsonRpcError(-32602, "Invalid params", "expected [subscription id]")
        sub = conn.subs.pop(params[0], None)
        if sub is None:
            return False
        for tx_hash, watcher in list(self.watchers.items()):
            if watcher is sub:
                del self.watchers[tx_hash]
        return True

    def after_request(self) -> None:
        if self.chain.pool.by_hash and self.block_time == 0:
            self._wake.set()

    def drop(self, conn: Connection) -> None:
        self.connections.discard(conn)
        for tx_hash, watcher in list(self.watchers.items()):
            if watcher.conn is conn:
                del self.watchers[tx_hash]


def _ok(req_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "result": result}


def _error(req_id: Any, exc: JsonRpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "error": exc.to_json()}


# -- aiohttp ------------------------------------------------------------------------------------
def make_app(node: Node, guard: Guard | None = None) -> web.Application:
    """The RPC app; ``guard`` admits clients (token, allow-list, rate per client) and caps frame sizes."""
    guard = guard or Guard()
    max_bytes = guard.max_request_bytes or MAX_MESSAGE_BYTES

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await websocket(request)
        if request.method != "POST":
            return web.Response(text="DecentralML devnet: JSON-RPC over WebSocket or HTTP POST\n")
        conn = Connection(None)
        reply = await node.handle_text(conn, await request.text())
        node.after_request()
        return web.json_response(reply)

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=max_bytes, heartbeat=None)
        await ws.prepare(request)
        conn = Connection(ws, request.remote or "", request.transport, node.max_pending, node.stall_s)
        conn.start()
        node.connections.add(conn)
        frames = guard.bucket(conn)  # per-connection rate limit (None: unlimited)
        try:
            async for msg in ws:
                if frames is not None and (wait := frames.delay()) > 0:
                    await asyncio.sleep(wait)  # over the connection's rate: read it more slowly
                if msg.type == WSMsgType.TEXT:
                    await node.serve_frame(conn, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    try:
                        text = msg.data.decode()
                    except UnicodeDecodeError:
                        conn.send(_error(None, JsonRpcError(PARSE_ERROR, "Parse error", "frame is not UTF-8")))
                        node.after_request()
                    else:
                        await node.serve_frame(conn, text)
                else:
                    break
                if conn.dropped:
                    break
        finally:
            node.drop(conn)
            await conn.close()
        return ws

    app = web.Application(client_max_size=max_bytes, middlewares=guard.middlewares())
    app.router.add_route("*", "/", handle)
    return app


def open_chain(db_path: str | None, pallet: str) -> tuple[Chain, tempfile.TemporaryDirectory[str] | None]:
    tmp = None
    if db_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="decentralml-devnet-")
        db_path = str(Path(tmp.name) / "chain.sqlite")
    return Chain(build_runtime(pallet), ChainDatabase(db_path)), tmp


async def serve(host: str = "127.0.0.1", port: int = 9944, block_time: float = 0.0, db_path: str | None = None,
                pallet: str = "full", ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None, guard: Guard | None = None, batches: bool = True,
                stall_s: float = SEND_STALL_S) -> None:
    """Run a devnet until ``stop`` is set (or SIGINT/SIGTERM when run from :func:`run`)."""
    chain, tmp = open_chain(db_path, pallet)
    node = Node(chain, block_time, stall_s=stall_s, batches=batches)
    runner = web.AppRunner(make_app(node, guard), handle_signals=False)
    try:
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        node.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        log.info("devnet_ready", url=f"ws://{host}:{bound}", pallet=pallet, best=chain.best_number,
                 genesis=hexs(chain.genesis_hash), db=db_path or "tmp")
        if ready is not None:
            ready.set()
        await (stop or asyncio.Event()).wait()
    finally:
        await node.stop()
        await runner.cleanup()
        chain.store.close()
        if tmp is not None:
            tmp.cleanup()
        log.info("devnet_stopped", best=chain.best_number)


def run(host: str = "127.0.0.1", port: int = 9944, block_time: float = 0.0, db_path: str | None = None,
        pallet: str = "full", guard: Guard | None = None, batches: bool = True, stall_s: float = SEND_STALL_S) -> None:
    """Blocking entry point for the CLI: serve until SIGINT or SIGTERM, then stop cleanly."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(host, port, block_time, db_path, pallet, stop=stop, guard=guard, batches=batches, stall_s=stall_s)

    asyncio.run(main())
