"""A client that stops reading, against a devnet: blocks produced and inclusion latency of another
client's transactions (one every 0.5 s), alone and with a raw WebSocket that subscribed 200 times to
new heads, asked for 100 metadata blobs and never reads. Prints one line per phase.

    python bench/slow_clients.py [--block-time 0.5] [--transactions 12] [--wait 5] [--url ws://…]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

from substrateinterface import Keypair

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from slow_clients import hostile_client, signed_remarks, steady_client  # noqa: E402

from decentralml_core.testing.devnet_process import DevnetProcess  # noqa: E402


def phase(name: str, url: str, remarks: list[str], wait_s: float) -> None:
    blocks, took, latencies = asyncio.run(steady_client(url, remarks, wait_s))
    landed = [v for v in latencies if v is not None]
    median = f"{statistics.median(landed):.3f} s" if landed else "—"
    worst = f"{max(landed):.3f} s" if landed else "—"
    print(f"{name:>9}: {blocks} blocks in {took:.1f} s ({blocks / took:.2f}/s); {len(landed)}/{len(latencies)} "
          f"included within {wait_s:g} s; median {median}, worst {worst}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--block-time", default="0.5")
    parser.add_argument("--transactions", type=int, default=12)
    parser.add_argument("--wait", type=float, default=5.0, help="seconds a transaction may take to be included")
    parser.add_argument("--url", help="an already running devnet; default: start one (--tmp)")
    args = parser.parse_args()
    node = None
    if args.url is None:
        node = DevnetProcess("--block-time", args.block_time).start()
    url = args.url or node.url
    port = int(url.rsplit(":", 1)[1].rstrip("/"))
    try:
        remarks = signed_remarks(url, Keypair.create_from_uri("//Dave"), 2 * args.transactions)
        phase("alone", url, remarks[:args.transactions], args.wait)
        hostile = hostile_client(port)
        try:
            phase("attacked", url, remarks[args.transactions:], args.wait)
        finally:
            hostile.close()
    finally:
        if node is not None:
            node.stop()


if __name__ == "__main__":
    main()
