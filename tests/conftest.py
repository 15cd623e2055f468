"""Shared fixtures: a real devnet process and substrate-interface clients connected to it; a real runtime."""

from __future__ import annotations

import shutil

import pytest
from devnet_process import DevnetProcess
from real_runtime import Chopsticks
from substrateinterface import Keypair, SubstrateInterface

# Seconds each long test file took in one `make test` run (``pytest --durations=0``, the call, setup and
# teardown of its tests summed; 2026-12-02 08:23, 3 workers on 2 quiet cores, 583 tests, 820 s in all, 295 s
# wall). The files run longest first, so the longest start at once instead of being dealt last: pytest-xdist
# deals whole files (``--dist loadfile``) in the order it is given (``--no-loadscope-reorder``; its own order is
# by number of tests, which dealt the five-test federated file after the quick hundred-test ones, and a run
# of 860 s ended with 118 s of tail, one worker finishing long files while the others idled). A file not
# listed runs after these, in collection order; a stale figure only makes the order a little less good.
FILE_SECONDS = {
    "test_real_runtime.py": 83, "test_federated_agents.py": 63, "test_differential.py": 53,
    "test_docs_tutorial.py": 50, "test_agents_market_rules.py": 47, "test_review_page.py": 41,
    "test_agents_recovery.py": 39, "test_new_user_agents.py": 34, "test_farm_network.py": 34,
    "test_chain_client.py": 29, "test_detection_market.py": 25, "test_agents_inprocess.py": 24,
    "test_devnet_slow_clients.py": 24, "test_chain_recovery.py": 23, "test_hostile_market.py": 23,
    "test_farm.py": 20, "test_agents.py": 20, "test_engine.py": 16, "test_detection_task.py": 15,
    "test_chain_schema.py": 13, "test_devnet_persistence.py": 10, "test_cli_market.py": 9,
    "test_sandbox_hostile.py": 9, "test_new_user.py": 9, "test_chain_inprocess.py": 8,
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
