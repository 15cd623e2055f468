"""@polkadot/api 16.5 against a real devnet: connect, decorate metadata, read storage, sign, submit.

npm installs the client once into a cache keyed by ``tests/js/package.json``; the test then runs
``tests/js/polkadot_check.mjs``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from node_packages import installed, needs_node
from substrateinterface import SubstrateInterface

JS = Path(__file__).parent / "js"
pytestmark = [pytest.mark.node, needs_node]


@pytest.fixture(scope="module")
def polkadot_js() -> Path:
    return installed(JS, "polkadot_check.mjs")


def test_polkadot_api_connects_reads_and_submits(devnet, polkadot_js, keys):
    si = SubstrateInterface(url=devnet.url)
    bob_before = si.query("System", "Account", [keys["bob"].ss58_address]).value["data"]["free"]
    run = subprocess.run(["node", "polkadot_check.mjs", devnet.url], cwd=polkadot_js, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["chain"] == "Development"
    assert out["genesis"] == si.get_block_hash(0)
    assert (out["specName"], out["specVersion"], out["ss58"], out["decimals"]) == ("node-template", 100, 42, 12)
    assert int(out["aliceFree"]) > 0 and isinstance(out["taskCount"], int) and isinstance(out["openTasks"], list)
    assert out["calls"] == ["acceptTaskResult", "assignTask", "closeTask", "createTask", "rejectTaskResult",
                            "sendTaskResult"]
    assert out["transfer"]["events"][-1] == "system.ExtrinsicSuccess"
    assert "balances.Transfer" in out["transfer"]["events"]
    assert out["assignError"]["error"] == "decentralMLModule.TaskNotFound"
    bob_after = si.query("System", "Account", [keys["bob"].ss58_address]).value["data"]["free"]
    assert bob_after == bob_before + 12_345_678 - int(out["assignError"]["fee"])  # Bob paid for his failed call
    si.close()
