"""A WebSocket client that stops reading, and one that keeps submitting at the usual pace: what the
devnet's slow-client test and benchmark (bench/slow_clients.py) measure the devnet with."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time

from aiohttp import ClientSession
from substrateinterface import SubstrateInterface

INTERVAL = 0.5  # one transaction every INTERVAL seconds: a creator's and its workers' usual pace


def ws_frame(text: str) -> bytes:
    """A masked text frame, as a client must send it (RFC 6455 §5.2)."""
    payload, mask = text.encode(), os.urandom(4)
    n = len(payload)
    length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return b"\x81" + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def hostile_client(port: int, heads: int = 200, metadata: int = 100) -> socket.socket:
    """Open a WebSocket by hand with a tiny receive buffer, send the subscriptions and requests, never read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 4096:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    calls = [("chain_subscribeNewHeads", [])] * heads + [("state_getMetadata", [])] * metadata
    sock.sendall(b"".join(ws_frame(json.dumps({"jsonrpc": "2.0", "id": i, "method": m, "params": p}))
                          for i, (m, p) in enumerate(calls)))
    return sock


def signed_remarks(url: str, keypair, count: int) -> list[str]:
    si = SubstrateInterface(url=url)
    try:
        nonce = si.get_account_nonce(keypair.ss58_address)
        return [str(si.create_signed_extrinsic(si.compose_call("System", "remark", {"remark": f"0x{i:04x}"}),
                                               keypair=keypair, nonce=nonce + i).data) for i in range(count)]
    finally:
        si.close()


async def steady_client(url: str, remarks: list[str], wait_s: float = 15.0) -> tuple[int, float, list[float | None]]:
    """Submit one transaction every INTERVAL s and wait up to ``wait_s`` for it in a block:
    (blocks produced, seconds taken, latencies — None for one not in a block in time)."""
    async with ClientSession() as session, session.ws_connect(url) as ws:
        async def call(method, params, req_id):
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}))
            while True:
                message = json.loads((await ws.receive(timeout=wait_s)).data)
                if message.get("id") == req_id:
                    return message["result"]

        async def in_block(sub: str) -> None:
            while True:  # notifications of this subscription, up to inBlock
                note = json.loads((await ws.receive()).data)
                result = note.get("params", {}).get("result")
                if note.get("params", {}).get("subscription") == sub and isinstance(result, dict) and "inBlock" in result:
                    return

        begun = time.monotonic()
        first = int((await call("chain_getHeader", [], 0))["number"], 16)
        latencies: list[float | None] = []
        for i, remark in enumerate(remarks):
            started = time.monotonic()
            sub = await call("author_submitAndWatchExtrinsic", [remark], i + 1)
            try:
                await asyncio.wait_for(in_block(sub), wait_s)
                latencies.append(time.monotonic() - started)
            except TimeoutError:
                latencies.append(None)
            await asyncio.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))
        last = int((await call("chain_getHeader", [], 10_000))["number"], 16)
    return last - first, time.monotonic() - begun, latencies
