"""The devnet's node in this process and event loop, reached without a socket: a chain client transport in
the spirit of httpx's MockTransport, but the node behind it is the real one (:class:`Node`, its
:class:`Chain`, its block loop and subscriptions).

``async with InProcessDevnet() as devnet: client = await devnet.client()`` gives a :class:`ChainClient`
whose every connection is an :class:`InProcessRpc`: frames are JSON text both ways, each is served as the
WebSocket handler serves it (:meth:`Node.serve_frame`, one frame after another), and replies and
notifications come back through the node's own :class:`Connection` (its queue bounds and its drop of a
client that stops reading included). :meth:`InProcessDevnet.restart` is a node restart: every connection
is lost, the pool with it, and the chain is opened again from its database, so the client's reconnect
and resend paths run as they do against a process killed and started again.

Why: an agent test against a devnet process plus agent processes paid ~5–10 s of start-up per process on
2 loaded cores (imports, runtime load over a socket); in process the node starts in ~0.1 s and the agents'
logs are asserted with ``structlog.testing.capture_logs`` instead of grepped from files.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path
from typing import Any

from ..chain.client import ChainClient
from ..chain.errors import ConnectionLost
from ..chain.rpc import FramedRpc
from .chain import Chain
from .metadata import runtime as build_runtime
from .server import Connection, Node
from .store import ChainDatabase

_numbers = itertools.count(1)


class _ClientEnd:
    """What the node's :class:`Connection` writes to and aborts: the client's end of the channel."""

    def __init__(self, rpc: InProcessRpc) -> None:
        self.rpc = rpc

    @property
    def closed(self) -> bool:
        return self.rpc.closed

    async def send_str(self, text: str) -> None:
        self.rpc._receive(text)

    def abort(self) -> None:  # the node dropped a client that does not read
        self.rpc._losing = asyncio.get_running_loop().create_task(
            self.rpc._lose(ConnectionLost(f"{self.rpc.url} dropped this client")))


class InProcessRpc(FramedRpc):
    """One connection to a :class:`Node` in this event loop (an :class:`RpcTransport`)."""

    def __init__(self, node: Node, url: str) -> None:
        super().__init__(url)
        self.node = node
        end = _ClientEnd(self)
        self._conn = Connection(end, "in-process", end, node.max_pending, node.stall_s)  # type: ignore[arg-type]
        self._conn.start()
        node.connections.add(self._conn)
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        self._server = asyncio.get_running_loop().create_task(self._serve())
        self._losing: asyncio.Task[None] | None = None

    async def _send_frame(self, text: str) -> None:
        if self.closed:
            raise ConnectionLost(f"lost {self.url}: connection closed")
        self._inbox.put_nowait(text)

    async def _serve(self) -> None:
        """The node's side, as its WebSocket handler reads a socket: one frame served after another."""
        while True:
            await self.node.serve_frame(self._conn, await self._inbox.get())
            if self._conn.dropped:
                return

    async def close(self) -> None:
        await self._lose(ConnectionLost("closed"))

    async def _lose(self, exc: ConnectionLost) -> None:
        if self.closed:
            return
        self.closed = True
        self._fail(exc)
        self.node.drop(self._conn)
        if asyncio.current_task() is not self._server:
            self._server.cancel()
        await self._conn.close()


class InProcessDevnet:
    """A devnet node run by the current event loop; its chain in a scratch SQLite file (or ``db_path``)."""

    def __init__(self, *, block_time: float = 0.0, pallet: str = "full", db_path: str | Path | None = None) -> None:
        self.block_time, self.pallet = block_time, pallet
        self.url = f"inprocess://devnet-{next(_numbers)}"  # names the node in logs; nothing dials it
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if db_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="decentralml-devnet-")
            db_path = Path(self._tmp.name) / "chain.sqlite"
        self.db_path = str(db_path)
        self.node: Node | None = None
        self.connections: set[InProcessRpc] = set()
        self.restarts = 0

    @property
    def chain(self) -> Chain:
        assert self.node is not None, "the devnet is not running"
        return self.node.chain

    async def start(self) -> InProcessDevnet:
        self.node = Node(Chain(build_runtime(self.pallet), ChainDatabase(self.db_path)), self.block_time)
        self.node.start()
        return self

    async def stop(self) -> None:
        """The node goes down: every connection is lost, the pool with it; dialling fails until :meth:`start`."""
        node, self.node = self.node, None
        if node is None:
            return
        for rpc in list(self.connections):
            await rpc._lose(ConnectionLost(f"lost connection to {self.url}"))
        self.connections.clear()
        await node.stop()
        node.chain.store.close()

    async def restart(self, down_for: float = 0.0) -> None:
        """A node killed and started again on its database: what was sealed stays, the pool is gone."""
        await self.stop()
        await asyncio.sleep(down_for)
        await self.start()
        self.restarts += 1

    async def dial(self) -> InProcessRpc:
        """A new connection (:class:`ConnectionLost` while the node is down), as a ``ChainClient`` dial."""
        if self.node is None:
            raise ConnectionLost(f"cannot connect to {self.url}: the node is down")
        rpc = InProcessRpc(self.node, self.url)
        self.connections = {c for c in self.connections if not c.closed} | {rpc}
        return rpc

    async def client(self, **options: Any) -> ChainClient:
        """A chain client of this node (``options`` as for :meth:`ChainClient.connect`)."""
        return await ChainClient.connect(self.url, dial=self.dial, **options)

    async def __aenter__(self) -> InProcessDevnet:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
