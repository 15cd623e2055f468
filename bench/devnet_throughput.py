"""Devnet throughput: how many signed extrinsics per second a devnet includes with instant seal.

Pre-signs N balance transfers from A accounts (signing is not timed), then submits them all over
WebSocket as fast as the connections take them with ``author_submitAndWatchExtrinsic`` and records,
per extrinsic, submit → ``inBlock`` latency. Prints included/s and p50/p95 latency.

    python bench/devnet_throughput.py [--n 5000] [--accounts 10] [--connections 4] [--url ws://…]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import aiohttp
from substrateinterface import Keypair

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decentralml_core import logs  # noqa: E402
from decentralml_core.chain import ChainClient  # noqa: E402
from decentralml_core.testing.devnet_process import DevnetProcess  # noqa: E402


async def prepare(url: str, n: int, accounts: int) -> list[str]:
    """Fund the senders, then sign every transfer with explicit nonces; returns hex extrinsics."""
    senders = [Keypair.create_from_uri(f"//Alice//bench/{i}") for i in range(accounts)]
    sink = Keypair.create_from_uri("//Alice//bench/sink").ss58_address
    alice = Keypair.create_from_uri("//Alice")
    async with await ChainClient.connect(url) as client:
        await asyncio.gather(*[client.submit(alice, "Balances", "transfer_keep_alive",
                                             {"dest": s.ss58_address, "value": 10**16}) for s in senders])
        nonces = {s.ss58_address: await client.request("system_accountNextIndex", [s.ss58_address])
                  for s in senders}
        signed = []
        for i in range(n):  # round robin, so every account has extrinsics throughout the run
            sender = senders[i % accounts]
            nonce = nonces[sender.ss58_address] + i // accounts
            raw, _ = await client.runtime.sign(sender, "Balances", "transfer_keep_alive",
                                               {"dest": sink, "value": 1_000 + i}, nonce)
            signed.append("0x" + raw.hex())
    return signed


async def blast(url: str, signed: list[str], connections: int) -> tuple[list[float], list[float], int]:
    """Submit all extrinsics; returns submit times, inclusion times (same order) and failures."""
    n = len(signed)
    sent, included = [0.0] * n, [0.0] * n
    failures = 0
    done = asyncio.Event()
    remaining = n

    async def one_connection(session: aiohttp.ClientSession, share: list[int]) -> None:
        nonlocal remaining, failures
        async with session.ws_connect(url, max_msg_size=64 * 1024 * 1024) as ws:
            subs: dict[str, int] = {}
            early: dict[str, float] = {}

            async def reader() -> None:
                nonlocal remaining, failures
                async for msg in ws:
                    now = time.perf_counter()
                    data = json.loads(msg.data)
                    if "id" in data:
                        index = data["id"]
                        if "error" in data:
                            failures += 1
                            remaining -= 1
                        else:
                            subs[data["result"]] = index
                            if data["result"] in early:
                                included[index] = early.pop(data["result"])
                                remaining -= 1
                    else:
                        result = data["params"]["result"]
                        if isinstance(result, dict) and "inBlock" in result:
                            sub = data["params"]["subscription"]
                            if sub in subs:
                                included[subs[sub]] = now
                                remaining -= 1
                            else:
                                early[sub] = now
                        elif isinstance(result, str) and result in ("invalid", "dropped", "usurped"):
                            failures += 1
                            remaining -= 1
                    if remaining == 0:
                        done.set()

            task = asyncio.create_task(reader())
            for index in share:
                sent[index] = time.perf_counter()
                await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": index,
                                              "method": "author_submitAndWatchExtrinsic", "params": [signed[index]]}))
            await done.wait()
            task.cancel()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*[one_connection(session, list(range(c, n, connections))) for c in range(connections)])
    return sent, included, failures


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def run(url: str, n: int, accounts: int, connections: int) -> dict:
    logs.configure("warning")
    t0 = time.perf_counter()
    signed = await prepare(url, n, accounts)
    signing = time.perf_counter() - t0
    sent, included, failures = await blast(url, signed, connections)
    ok = [(s, i) for s, i in zip(sent, included, strict=True) if i]
    span = max(i for _, i in ok) - min(s for s, _ in ok)
    latencies = [(i - s) * 1000 for s, i in ok]
    return {"n": n, "accounts": accounts, "connections": connections, "included": len(ok), "failures": failures,
            "seconds": round(span, 3), "included_per_s": round(len(ok) / span, 1),
            "latency_p50_ms": round(percentile(latencies, 50), 1),
            "latency_p95_ms": round(percentile(latencies, 95), 1), "signing_s": round(signing, 1),
            "cpus": os.cpu_count(), "python": platform.python_version()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--url", help="an already running node; default: start a devnet (--tmp)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.url:
        figures = asyncio.run(run(args.url, args.n, args.accounts, args.connections))
    else:
        with DevnetProcess("--log-level", "warning") as node:
            figures = asyncio.run(run(node.url, args.n, args.accounts, args.connections))
    if args.json:
        print(json.dumps(figures))
    else:
        print("devnet throughput (instant seal, balance transfers)")
        for key, value in figures.items():
            print(f"  {key:<16} {value}")
    return 0 if figures["failures"] == 0 and figures["included"] == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
