"""A client that stops reading cannot slow the devnet down: a real devnet process, a raw socket that
subscribes 200 times to new heads, asks for 100 metadata blobs and then never reads, while another
client's transactions keep landing at the usual rate. Blocks produced and inclusion latency are compared
with the same run without the hostile client; the hostile client is dropped with one log line."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import pytest
from devnet_process import DevnetProcess
from slow_clients import hostile_client, signed_remarks, steady_client

TRANSACTIONS = 8  # per phase
# The hostile client stalls the devnet's writes to it at once and is dropped this long after: longer than the
# attacked phase (TRANSACTIONS at 0.5 s, ~4 s), so the steady client runs beside a stalled client throughout,
# as with the default (10 s), which the test waited out for nothing.
STALL_S = 6


def dropped_lines(log_path) -> list[dict]:
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "devnet_client_dropped"]


@pytest.mark.parametrize("block_time", ["0.5", "0"])
def test_a_client_that_stops_reading_is_dropped_and_slows_nobody(tmp_path, keys, block_time):
    log_path = tmp_path / "devnet.log"
    node = DevnetProcess("--block-time", block_time, "--client-stall", str(STALL_S),
                         log_path=log_path).start(timeout=60)  # a loaded machine
    try:
        remarks = signed_remarks(node.url, keys["dave"], 2 * TRANSACTIONS)
        blocks_alone, _, alone = asyncio.run(steady_client(node.url, remarks[:TRANSACTIONS]))

        hostile = hostile_client(node.port)
        try:
            blocks_attacked, _, attacked = asyncio.run(steady_client(node.url, remarks[TRANSACTIONS:]))
            deadline = time.monotonic() + 2 * STALL_S  # STALL_S after the client's last frame, at most
            while not dropped_lines(log_path) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            hostile.close()
    finally:
        node.stop()
    assert None not in alone and None not in attacked  # every transaction landed in time
    print(f"block time {block_time}: blocks {blocks_alone} alone, {blocks_attacked} attacked; median latency "
          f"{statistics.median(alone):.3f} s alone, {statistics.median(attacked):.3f} s attacked, "
          f"worst {max(attacked):.3f} s")
    assert blocks_attacked >= 0.8 * blocks_alone
    # A transaction waits for the next block: up to one block time, whichever phase the steady client's
    # 0.5 s pace happens to keep against the block timer (CI once saw 0.07 s alone and 0.51 s attacked,
    # every one of them, from the phase alone). A client the devnet waits on would add seconds, not one block.
    block_s = float(block_time)
    assert statistics.median(attacked) <= block_s + max(3 * statistics.median(alone), 0.2)
    assert max(attacked) <= block_s + max(3 * max(alone), 1.0)
    drops = dropped_lines(log_path)
    assert len(drops) == 1, drops  # one structured line, naming the client and why
    assert drops[0]["peer"] == "127.0.0.1" and drops[0]["subscriptions"] > 0
    assert drops[0]["reason"] == f"a frame untaken for {STALL_S} s"  # --client-stall, not the default
