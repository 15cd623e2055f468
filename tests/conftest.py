"""Shared fixtures: a real devnet process and substrate-interface clients connected to it; a real runtime."""

from __future__ import annotations

import shutil

import pytest
from devnet_process import DevnetProcess
from real_runtime import Chopsticks
from substrateinterface import Keypair, SubstrateInterface


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
