"""A client that stops reading cannot slow the devnet down: a real devnet process, a raw socket that
subscribes 200 times to new heads, asks for 100 metadata blobs and then never reads, while another
client's transactions keep landing at the usual rate. Blocks produced and inclusion latency are compared
with the same run without the hostile client; the hostile client is dropped with one log line."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import statistics
import time

import pytest
from aiohttp import ClientSession
from devnet_process import DevnetProcess
from substrateinterface import SubstrateInterface

TRANSACTIONS = 8  # per phase, one every INTERVAL seconds: a creator's and its workers' usual pace
INTERVAL = 0.5


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


async def steady_client(url: str, remarks: list[str]) -> tuple[int, list[float]]:
    """Submit one transaction every INTERVAL s and wait for it in a block: (blocks produced, latencies)."""
    async with ClientSession() as session, session.ws_connect(url) as ws:
        async def call(method, params, req_id):
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}))
            while True:
                message = json.loads((await ws.receive(timeout=15)).data)
                if message.get("id") == req_id:
                    return message["result"]

        first = int((await call("chain_getHeader", [], 0))["number"], 16)
        latencies = []
        for i, remark in enumerate(remarks):
            started = time.monotonic()
            sub = await call("author_submitAndWatchExtrinsic", [remark], i + 1)
            while True:  # notifications of this subscription, up to inBlock (bounded by receive's timeout)
                note = json.loads((await ws.receive(timeout=15)).data)
                result = note.get("params", {}).get("result")
                if note.get("params", {}).get("subscription") == sub and isinstance(result, dict) and "inBlock" in result:
                    break
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(max(0.0, INTERVAL - latencies[-1]))
        last = int((await call("chain_getHeader", [], 10_000))["number"], 16)
    return last - first, latencies


def dropped_lines(log_path) -> list[dict]:
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "devnet_client_dropped"]


@pytest.mark.parametrize("block_time", ["0.5", "0"])
def test_a_client_that_stops_reading_is_dropped_and_slows_nobody(tmp_path, keys, block_time):
    log_path = tmp_path / "devnet.log"
    with DevnetProcess("--block-time", block_time, log_path=log_path) as node:
        remarks = signed_remarks(node.url, keys["dave"], 2 * TRANSACTIONS)
        blocks_alone, alone = asyncio.run(steady_client(node.url, remarks[:TRANSACTIONS]))

        hostile = hostile_client(node.port)
        try:
            blocks_attacked, attacked = asyncio.run(steady_client(node.url, remarks[TRANSACTIONS:]))
            deadline = time.monotonic() + 20  # SEND_STALL_S (10 s) after the client's last frame, at most
            while not dropped_lines(log_path) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            hostile.close()
    print(f"block time {block_time}: blocks {blocks_alone} alone, {blocks_attacked} attacked; median latency "
          f"{statistics.median(alone):.3f} s alone, {statistics.median(attacked):.3f} s attacked, "
          f"worst {max(attacked):.3f} s")
    assert len(attacked) == TRANSACTIONS  # every transaction landed
    assert blocks_attacked >= 0.8 * blocks_alone
    assert statistics.median(attacked) <= max(3 * statistics.median(alone), 0.2)
    assert max(attacked) <= max(3 * max(alone), 1.0)
    drops = dropped_lines(log_path)
    assert len(drops) == 1, drops  # one structured line, naming the client and why
    assert drops[0]["peer"] == "127.0.0.1" and drops[0]["subscriptions"] > 0 and drops[0]["reason"]
