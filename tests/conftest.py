"""Shared fixtures: a real devnet process and substrate-interface clients connected to it."""

from __future__ import annotations

import pytest
from devnet_process import DevnetProcess
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
