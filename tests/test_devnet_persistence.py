"""Durability: a devnet killed with SIGKILL restarts from its last block and forgets nothing it reported."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from aiohttp import ClientSession
from devnet_process import ROOT, DevnetProcess
from substrateinterface import Keypair, SubstrateInterface


def _remarks(si: SubstrateInterface, who: Keypair, count: int, start_nonce: int) -> list[str]:
    return [str(si.create_signed_extrinsic(si.compose_call("System", "remark", {"remark": f"0x{i:08x}"}),
                                           keypair=who, nonce=start_nonce + i).data)
            for i in range(count)]


async def _submit_until_kill(url: str, extrinsics: list[str], node: DevnetProcess, kill_after: int) -> dict:
    """Watch every extrinsic; SIGKILL the node once ``kill_after`` inclusions were reported."""
    included: dict[str, str] = {}  # subscription id -> block hash
    async with ClientSession() as s, s.ws_connect(url) as ws:
        for i, xt in enumerate(extrinsics):
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": i, "method": "author_submitAndWatchExtrinsic",
                                          "params": [xt]}))
        subs: dict[str, int] = {}
        while len(included) < kill_after:
            msg = json.loads((await ws.receive(timeout=30)).data)
            if "id" in msg and "result" in msg:
                subs[msg["result"]] = msg["id"]
            elif msg.get("method") == "author_extrinsicUpdate":
                result = msg["params"]["result"]
                if isinstance(result, dict) and "inBlock" in result:
                    included[msg["params"]["subscription"]] = result["inBlock"]
        node.stop(kill=True)
    return {subs[sub]: block for sub, block in included.items()}


def test_kill_9_loses_no_reported_block(tmp_path):
    db = str(tmp_path / "chain.sqlite")
    alice = Keypair.create_from_uri("//Alice")
    node = DevnetProcess(db=db, log_path=tmp_path / "devnet.log").start()
    si = SubstrateInterface(url=node.url)
    genesis = si.get_block_hash(0)
    extrinsics = _remarks(si, alice, 300, si.get_account_nonce(alice.ss58_address))
    si.close()
    reported = asyncio.run(_submit_until_kill(node.url, extrinsics, node, kill_after=40))
    assert node.proc.returncode == -9

    node = DevnetProcess(db=db, port=node.port, log_path=tmp_path / "devnet.log").start()
    try:
        si = SubstrateInterface(url=node.url)
        assert si.get_block_hash(0) == genesis
        for index, block_hash in reported.items():
            block = si.rpc_request("chain_getBlock", [block_hash])["result"]
            assert block is not None, f"reported block {block_hash} is gone"
            assert extrinsics[index] in block["block"]["extrinsics"]
        best = si.get_block_number(None)
        nonce = si.get_account_nonce(alice.ss58_address)
        assert nonce >= len(reported)
        # the chain goes on from where it stopped, parent hashes linked
        receipt = si.submit_extrinsic(si.create_signed_extrinsic(
            si.compose_call("System", "remark", {"remark": "0x01"}), keypair=alice, nonce=nonce),
            wait_for_inclusion=True)
        assert receipt.is_success
        new_best = si.get_block_number(None)
        assert new_best == best + 1
        header = si.rpc_request("chain_getHeader", [receipt.block_hash])["result"]
        assert header["parentHash"] == si.get_block_hash(best)
        si.close()
    finally:
        node.stop()


def test_restart_with_another_pallet_mode_is_refused(tmp_path):
    db = str(tmp_path / "chain.sqlite")
    with DevnetProcess(db=db):
        pass
    proc = subprocess.run([sys.executable, "-m", "decentralml_core.devnet", "--db", db, "--pallet", "upstream",
                           "--port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    assert "--pallet full" in proc.stdout + proc.stderr


@pytest.mark.parametrize("mode,calls", [("upstream", 3), ("full", 8)])
def test_pallet_modes_publish_their_calls(tmp_path, mode, calls):
    with DevnetProcess("--pallet", mode) as node:
        si = SubstrateInterface(url=node.url)
        si.init_runtime()
        pallet = si.metadata.get_metadata_pallet("DecentralMLModule")
        assert len(pallet.calls) == calls
        si.close()
