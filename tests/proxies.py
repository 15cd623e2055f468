"""A loopback TCP proxy that can cut its connections: how tests and ``make faults`` drop a node's
WebSocket mid-stream without stopping the node."""

from __future__ import annotations

import asyncio
import random

from devnet_process import free_port


class FaultProxy:
    """A TCP proxy that can cut every connection, hold the server's bytes back, or flip bytes in bodies."""

    def __init__(self, target_port: int, delay_s: float = 0.0) -> None:
        self.target_port, self.port = target_port, free_port()
        self.delay_s = delay_s  # every chunk, each way, arrives this much later (latency, not a bandwidth cap)
        self.mode = "normal"  # normal | stall | corrupt
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> FaultProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def close(self) -> None:
        self.drop()
        self.server.close()

    def drop(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer, upstream=True), self._pipe(up_reader, writer, upstream=False),
                             return_exceptions=True)
        for w in (writer, up_writer):
            self.writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool) -> None:
        if self.delay_s > 0:
            await self._pipe_delayed(reader, writer)
            return
        past_headers = False
        while data := await reader.read(65536):
            if not upstream:
                while self.mode == "stall":
                    await asyncio.sleep(0.1)
                if self.mode == "corrupt":
                    start = data.find(b"\r\n\r\n") + 4 if not past_headers else 0
                    past_headers = past_headers or start >= 4
                    if past_headers and start < len(data):
                        i = random.randrange(start, len(data))
                        data = data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1:]
            writer.write(data)
            await writer.drain()
        writer.transport.abort()

    async def _pipe_delayed(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward in order, each chunk ``delay_s`` after it was read: a link's latency (tc netem's
        ``delay``), with as many chunks in flight as the sender sends."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + self.delay_s, data))
            queue.put_nowait(None)
            await sender
        finally:
            sender.cancel()
            writer.transport.abort()
