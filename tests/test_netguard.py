"""Servers beyond loopback: no exposure without a token or an allow-list; then tokens, allow-lists,
request-size caps and rate limits hold — on a real devnet process and the real gateway app."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from ipaddress import ip_network

import aiohttp
import pytest
from devnet_process import DevnetProcess
from servers import serving

from decentralml_core.chain import ChainClient
from decentralml_core.netguard import GATEWAY_TOKEN_ENV, NODE_TOKEN_ENV, ExposureError, Guard
from decentralml_core.storage import GatewayStore, LocalStore, StorageError, gateway_app

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.mark.parametrize("command", [["devnet", "--tmp"], ["storage", "serve"]])
def test_listening_beyond_loopback_needs_a_token_or_an_allow_list(command):
    out = subprocess.run([sys.executable, "-m", "agents.cli", *command, "--host", "0.0.0.0", "--port", "1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "needs --token-env VAR (a bearer token) or --allow CIDR" in out.stderr


def test_guard_rules():
    with pytest.raises(ExposureError, match="not set"):
        Guard.for_host("10.77.0.1", token_env="DECENTRALML_TEST_UNSET_VARIABLE")
    with pytest.raises(ExposureError, match="--allow"):
        Guard.for_host("10.77.0.1", allow=["10.77.0.300/24"])
    exposed = Guard.for_host("10.77.0.1", allow=["10.77.0.0/24"])
    assert exposed.rate == 200 and Guard.for_host("127.0.0.1").rate is None  # limits on only when exposed


@pytest.fixture(scope="module")
def guarded_devnet(tmp_path_factory):
    """A devnet demanding a token, capping frames at 64 KB and each connection at 50 frames/s."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DEVNET_TOKEN", TOKEN)
    with DevnetProcess("--token-env", "DEVNET_TOKEN", "--rate-limit", "50", "--max-request-kb", "64",
                       log_path=tmp_path_factory.mktemp("guarded") / "devnet.log") as node:
        yield node
    mp.undo()


async def test_devnet_token_size_and_rate(guarded_devnet, monkeypatch):
    url = guarded_devnet.url
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)
        assert refused.value.status == 401
        bad = {"Authorization": "Bearer wrong-token-wrong-token"}
        async with session.post(guarded_devnet.http_url, json={"id": 1, "method": "system_name"}, headers=bad) as r:
            assert r.status == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with session.ws_connect(url, headers=auth) as ws:
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "x" * (70 * 1024)}))
            closed = await ws.receive()
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and ws.close_code == 1009
        async with session.ws_connect(url, headers=auth) as ws:  # 200 frames at once: the burst, then 50/s
            started = time.monotonic()
            for i in range(200):
                await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": i, "method": "system_name"}))
            answered = {json.loads((await ws.receive()).data)["id"] for _ in range(200)}
            assert answered == set(range(200)) and time.monotonic() - started >= 1.5  # none lost, slowed down
        async def post(i: int) -> int:
            async with session.post(guarded_devnet.http_url, json={"jsonrpc": "2.0", "id": i, "method": "system_name"},
                                    headers=auth) as r:
                return r.status

        # HTTP: per client address, over the rate → 429. Sent at once: one after another, a loaded machine
        # (load 11) answered slower than the rate refills and never reached it
        statuses = await asyncio.gather(*(post(i) for i in range(160)))
        assert 200 in statuses and 429 in statuses, statuses
    monkeypatch.setenv(NODE_TOKEN_ENV, TOKEN)  # the agents' client reads the token from the environment
    await asyncio.sleep(1)
    async with await ChainClient.connect(url) as client:
        assert await client.block_number() >= 0


async def test_gateway_allow_list_and_token(tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "store")
    cid = await store.put(b"a block")
    async with serving(gateway_app(store, Guard(allow=(ip_network("10.0.0.0/8"),)))) as base:
        with pytest.raises(StorageError, match="403"):
            await GatewayStore(base).get(cid, 1024)
    async with serving(gateway_app(store, Guard(token=TOKEN, allow=(ip_network("127.0.0.0/8"),)))) as base:
        with pytest.raises(StorageError, match="401"):
            await GatewayStore(base).get(cid, 1024)
        monkeypatch.setenv(GATEWAY_TOKEN_ENV, TOKEN)
        assert await GatewayStore(base).get(cid, 1024) == b"a block"


async def test_gateway_cuts_a_client_that_stops_reading_and_serves_the_others(tmp_path):
    """40 pipelined 1 MB blocks to a socket that never reads: after the write bound that client is cut
    (one line), while another client keeps getting blocks; before, it held its handler for ever."""
    import os
    import socket

    from structlog.testing import capture_logs

    store = LocalStore(tmp_path / "store")
    cid = await store.put(os.urandom(1024 * 1024))
    with capture_logs() as logs:
        async with serving(gateway_app(store, Guard(write_stall_s=1.0))) as base:
            port = int(base.rsplit(":", 1)[1])
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, ("127.0.0.1", port))
            request = f"GET /ipfs/{cid}?format=raw HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            await loop.sock_sendall(sock, request * 40)
            started = time.monotonic()
            for _ in range(5):  # the others are served meanwhile
                assert len(await GatewayStore(base).get(cid, 1024 * 1024)) == 1024 * 1024
            assert time.monotonic() - started < 5
            deadline = time.monotonic() + 10
            while not any(e["event"] == "http_client_dropped" for e in logs) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            received = 0
            try:  # what reached the socket before the cut; then the connection is gone
                while received < 41 * 1024 * 1024:
                    chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 5)
                    if not chunk:
                        break
                    received += len(chunk)
            except ConnectionResetError:
                pass
            finally:
                sock.close()
    dropped = [e for e in logs if e["event"] == "http_client_dropped"]
    assert len(dropped) == 1 and dropped[0]["peer"] == "127.0.0.1" and dropped[0]["path"] == f"/ipfs/{cid}"
    assert received < 40 * 1024 * 1024  # cut, not served in full
