"""Catch-up after an outage: an agent that missed N blocks reads every one's events again, in order.

N blocks, each with one ``remark_with_event`` (events to decode, as on a real chain), are sealed into
a devnet's store, which then serves them (idle, so it does not compete for the CPU); a fresh client (its
connection and runtime load included, as at an agent's start) streams every event from block 1 until
it has followed block N. Measured with the event stream fetching one block at a time (as before,
``--window 1``) and with ``CATCH_UP_WINDOW`` blocks in flight, on loopback and through a proxy that
delays every chunk by ``--delay-ms`` each way (tc netem is not available here).

    python bench/catch_up.py [--blocks 10000] [--delay-ms 10] [--json]

``--before REV`` instead catches up with REV's chain client (its code from ``git archive``) and with this
tree's, alternating, each in a process of its own, on loopback and through the proxy, against the same
devnet; ``client_cpu_s`` is the client process's own CPU (robust to a loaded machine, unlike the wall),
``devnet_cpu_s`` the devnet's during that catch-up (what serving it cost the node).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(os.environ.get("DECENTRALML_BENCH_TREE") or Path(__file__).resolve().parents[1])  # --before's REV
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from proxies import FaultProxy  # noqa: E402
from substrateinterface import Keypair  # noqa: E402

from decentralml_core import logs  # noqa: E402
from decentralml_core.chain import ChainClient, Checkpoint  # noqa: E402
from decentralml_core.chain import client as client_module  # noqa: E402
from decentralml_core.devnet.server import open_chain  # noqa: E402
from decentralml_core.testing.devnet_process import DevnetProcess  # noqa: E402


async def sign_remarks(url: str, blocks: int) -> list[bytes]:
    """``blocks`` signed ``remark_with_event`` extrinsics of Alice, nonces in order (signed locally)."""
    alice = Keypair.create_from_uri("//Alice")
    async with await ChainClient.connect(url) as client:
        nonce = await client.request("system_accountNextIndex", [alice.ss58_address])
        return [(await client.runtime.sign(alice, "System", "remark_with_event", {"remark": "0x00"}, nonce + i))[0]
                for i in range(blocks)]


def build_chain(db: str, raws: list[bytes]) -> int:
    """A block per extrinsic, sealed straight into the devnet's store (a running devnet's sealing is
    paced by its event loop: ~100 blocks/s on a busy machine); every block has events to decode."""
    chain, _ = open_chain(db, "full")
    try:
        for raw in raws:
            chain.submit(raw)
            chain.produce_block()
        return chain.best_number
    finally:
        chain.store.close()


async def catch_up(url: str, target: int, window: int) -> dict:
    """Seconds from connecting to having followed block ``target`` (every event from block 1)."""
    client_module.CATCH_UP_WINDOW = window
    started, cpu = time.perf_counter(), time.process_time()
    events = 0
    async with await ChainClient.connect(url) as client:
        connected = time.perf_counter() - started
        async for event in client.events(Checkpoint(1)):
            events += 1
            if event.block_number >= target:
                break
    return {"window": window, "blocks": target, "seconds": round(time.perf_counter() - started, 2),
            "connect_s": round(connected, 2), "events": events, "client_cpu_s": round(time.process_time() - cpu, 2)}


async def measure(url: str, port: int, target: int, delay_ms: float, windows: list[int], slow_blocks: int) -> list[dict]:
    """Every window on loopback and through the proxy; one block at a time through the proxy only over
    ``slow_blocks`` (two round trips a block: 10,000 would take minutes), scaled to ``target``."""
    rows = []
    proxy = await FaultProxy(port, delay_s=delay_ms / 1000).start()
    try:
        for link, link_url in (("loopback", url), (f"proxy +{delay_ms:g} ms each way", f"ws://127.0.0.1:{proxy.port}")):
            for window in windows:
                blocks = slow_blocks if window == 1 and link != "loopback" else target
                row = {"link": link, **await catch_up(link_url, blocks, window)}
                if blocks != target:
                    row["scaled_to_target_s"] = round((row["seconds"] - row["connect_s"]) * target / blocks
                                                      + row["connect_s"], 1)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)  # progress: a slow link takes a while
    finally:
        await proxy.close()
    return rows


def cpu_seconds(pid: int) -> float:
    """A process's CPU so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def side_by_side(url: str, port: int, target: int, delay_ms: float, rev: str, rounds: int, devnet_pid: int) -> list[dict]:
    """REV's client and this tree's, alternating, ``rounds`` times on each link (one devnet, one proxy)."""
    async def with_proxy() -> list[dict]:
        proxy = await FaultProxy(port, delay_s=delay_ms / 1000).start()
        try:
            return await asyncio.to_thread(runs, f"ws://127.0.0.1:{proxy.port}")
        finally:
            await proxy.close()

    def one(tree: Path, link_url: str) -> dict:
        devnet_cpu = cpu_seconds(devnet_pid)
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--client", link_url, "--blocks",
                              str(target)], capture_output=True, text=True, timeout=900,
                             env={**os.environ, "PYTHONPATH": str(tree), "DECENTRALML_BENCH_TREE": str(tree)})
        return {**json.loads(out.stdout.strip().splitlines()[-1]),
                "devnet_cpu_s": round(cpu_seconds(devnet_pid) - devnet_cpu, 2)}

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="decentralml-catch-up-before-") as old:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)

        def runs(link_url: str) -> list[dict]:
            found = []
            for _ in range(rounds):
                for label, tree in ((rev, Path(old)), ("this tree", ROOT)):
                    found.append({"code": label, **one(tree, link_url)})
                    print(json.dumps(found[-1]), file=sys.stderr, flush=True)
            return found

        rows += [{"link": "loopback", **r} for r in runs(url)]
        rows += [{"link": f"proxy +{delay_ms:g} ms each way", **r} for r in asyncio.run(with_proxy())]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--windows", default=f"1,{client_module.CATCH_UP_WINDOW}", help="blocks in flight, compared")
    parser.add_argument("--slow-blocks", type=int, default=500,
                        help="blocks measured one at a time through the proxy (then scaled)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--before", metavar="REV", help="compare REV's chain client with this tree's")
    parser.add_argument("--rounds", type=int, default=2, help="with --before: alternations on each link")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)  # one catch-up, as --before runs it
    args = parser.parse_args()
    logs.configure("warning")
    if args.client:
        print(json.dumps(asyncio.run(catch_up(args.client, args.blocks, client_module.CATCH_UP_WINDOW))))
        return 0
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None  # a block's commit is an fsync: ~50 ms on a busy disk
    with tempfile.TemporaryDirectory(prefix="decentralml-catch-up-", dir=shm) as scratch:
        db = str(Path(scratch) / "chain.sqlite")
        with DevnetProcess("--log-level", "warning", db=db) as node:
            raws = asyncio.run(sign_remarks(node.url, args.blocks))
        head = build_chain(db, raws)  # the missed blocks
        with DevnetProcess("--log-level", "warning", db=db) as node:  # the same chain, idle while measured
            if args.before:
                rows = side_by_side(node.url, node.port, args.blocks, args.delay_ms, args.before, args.rounds,
                                    node.proc.pid)
            else:
                rows = asyncio.run(measure(node.url, node.port, args.blocks, args.delay_ms,
                                           [int(w) for w in args.windows.split(",")], args.slow_blocks))
    if args.json:
        print(json.dumps({"blocks": args.blocks, "head_at_start": head, "rows": rows}))
    else:
        print(f"catch-up of {args.blocks} blocks (devnet head {head} when measured)")
        for row in rows:
            if "code" in row:
                print(f"  {row['link']:<28} {row['code']:<10}: {row['seconds']:>7} s, client CPU {row['client_cpu_s']} s, "
                      f"devnet CPU {row['devnet_cpu_s']} s")
                continue
            scaled = f", ~{row['scaled_to_target_s']} s for {args.blocks}" if "scaled_to_target_s" in row else ""
            print(f"  {row['link']:<28} window {row['window']:>3}: {row['blocks']} blocks in {row['seconds']:>7} s "
                  f"(connect {row['connect_s']} s, {row['events']} events{scaled})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
