"""Shared fixtures: a real devnet process and substrate-interface clients connected to it; a real runtime."""

from __future__ import annotations

import shutil

import pytest
from devnet_process import DevnetProcess
from real_runtime import Chopsticks
from substrateinterface import Keypair, SubstrateInterface

# Seconds each long test file took in one `make test` run (``pytest --durations=0``, the call, setup and
# teardown of its tests summed; 2026-12-02, 3 workers on 2 loaded cores, 567 tests, 2,227 s in all). The
# files run longest first, so the longest start at once instead of being dealt last: pytest-xdist deals
# whole files (``--dist loadfile``) in the order it is given (``--no-loadscope-reorder``; its own order is
# by number of tests, which dealt the five-test, 216 s federated file after the quick hundred-test ones).
# Measured in that run: the workers' busy time summed to 2,227 s, 742 s each if evenly shared, and the run
# took 860 s — 118 s of tail, one worker finishing long files while the others idled. A file not listed
# runs after these, in collection order; a stale figure only makes the order a little less good.
FILE_SECONDS = {
    "test_federated_agents.py": 216, "test_differential.py": 116, "test_real_runtime.py": 115,
    "test_review_page.py": 111, "test_detection_market.py": 106, "test_agents_recovery.py": 104,
    "test_new_user_agents.py": 102, "test_docs_tutorial.py": 98, "test_chain_client.py": 83,
    "test_agents_inprocess.py": 70, "test_hostile_market.py": 65, "test_agents.py": 64,
    "test_agents_market_rules.py": 61, "test_engine.py": 56, "test_new_user.py": 54,
    "test_chain_recovery.py": 52, "test_cli_market.py": 51, "test_devnet_slow_clients.py": 49,
    "test_farm.py": 47, "test_polkadot_js.py": 41, "test_devnet_persistence.py": 40, "test_storage.py": 35,
    "test_fuzz.py": 34, "test_farm_network.py": 34, "test_detection_task.py": 34,
}


def pytest_collection_modifyitems(config, items):
    """The longest files first (:data:`FILE_SECONDS`); a file's tests keep their order."""
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 0))


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    """A fresh devnet (full pallet, instant seal) shared by one test module."""
    log = tmp_path_factory.mktemp("devnet") / "devnet.log"
    with DevnetProcess(log_path=log) as node:
        yield node


@pytest.fixture(scope="module")
def substrate(devnet):
    si = SubstrateInterface(url=devnet.url)
    yield si
    si.close()


@pytest.fixture(scope="session")
def keys():
    """The dev accounts by lower-case name."""
    return {n.lower(): Keypair.create_from_uri(f"//{n}") for n in ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")}


@pytest.fixture(scope="session")
def real_node(tmp_path_factory):
    """A real Substrate runtime (chopsticks, see real_runtime.py), one per test session: ~4 s to start
    (more on a busy machine), its packages installed into the test cache on first use."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("the real-runtime tests run chopsticks: they need Node.js and npm")
    with Chopsticks(tmp_path_factory.mktemp("chopsticks")) as node:
        yield node
