"""@polkadot/api 16.5 against a real devnet: connect, decorate metadata, read storage, call runtime APIs,
follow heads, sign and submit.

npm installs the locked client once into a cache keyed by ``tests/js/package.json`` and its lockfile; the
test then runs ``tests/js/polkadot_check.mjs`` and checks what it saw against substrate-interface.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from node_packages import installed, locked_version, needs_node, registry_hosts
from substrateinterface import SubstrateInterface

JS = Path(__file__).parent / "js"
AMOUNT = 12_345_678  # what polkadot_check.mjs transfers from Alice to Bob
STEPS = ["connect", "storage", "runtimeCalls", "newHead", "finalizedHead", "transfer", "failedCall"]


@pytest.fixture(scope="module")
def polkadot_js() -> Path:
    return installed(JS, "polkadot_check.mjs")


def account(si: SubstrateInterface, who) -> dict:
    return si.query("System", "Account", [who.ss58_address]).value


@pytest.mark.node
@needs_node
def test_polkadot_api_connects_reads_and_submits(devnet, polkadot_js, keys):
    si = SubstrateInterface(url=devnet.url)
    alice, bob = account(si, keys["alice"]), account(si, keys["bob"])
    best = si.get_block_number(si.get_chain_head())
    run = subprocess.run(["node", "polkadot_check.mjs", devnet.url], cwd=polkadot_js, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, f"{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [line["step"] for line in lines[:-1]] == STEPS
    out = lines[-1]

    assert out["connect"] == {"chain": "Development", "genesis": si.get_block_hash(0), "specName": "node-template",
                              "specVersion": 100, "metadataVersion": 14, "ss58": 42, "decimals": 12}
    storage = out["storage"]
    assert int(storage["aliceFree"]) == alice["data"]["free"] > 0
    assert storage["taskCount"] == si.query("DecentralMLModule", "TaskCount").value
    assert isinstance(storage["taskCount"], int) and isinstance(storage["openTasks"], list)
    assert storage["calls"] == ["acceptTaskResult", "assignTask", "claimPayment", "closeTask", "createTask",
                                "createTaskWithTerms", "rejectTaskResult", "sendTaskResult"]
    calls = out["runtimeCalls"]
    assert calls["metadataVersions"] == [14] and calls["aliceNonce"] == alice["nonce"]
    assert out["newHead"] == out["finalizedHead"] == best

    transfer = out["transfer"]
    assert transfer["events"] == ["balances.Withdraw", "balances.Transfer", "transactionPayment.TransactionFeePaid",
                                  "system.ExtrinsicSuccess"]
    assert transfer["error"] is None and transfer["fee"] == calls["transferFee"]  # quoted fee == fee charged
    assert transfer["inBlock"] == transfer["finalized"]  # the isInBlock status reached the callback too
    assert si.get_block_number(transfer["inBlock"]) == best + 1
    failed = out["failedCall"]
    assert failed["error"] == "decentralMLModule.TaskNotFound" and failed["events"][-1] == "system.ExtrinsicFailed"

    assert account(si, keys["alice"])["data"]["free"] == alice["data"]["free"] - AMOUNT - int(transfer["fee"])
    bob_after = account(si, keys["bob"])["data"]["free"]
    assert bob_after == bob["data"]["free"] + AMOUNT - int(failed["fee"])  # Bob paid for his failed call
    si.close()


def test_lockfile_names_no_registry():
    assert registry_hosts(JS) == set(), "regenerate with --omit-lockfile-registry-resolved (see node_packages.py)"
    assert locked_version(JS, "@polkadot/api") == json.loads((JS / "package.json").read_text())[
        "dependencies"]["@polkadot/api"]
