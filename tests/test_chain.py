"""The chain core without sockets: genesis, pool ordering, blocks, state roots, historical reads."""

from __future__ import annotations

import pytest
from substrateinterface import Keypair

from decentralml_core.devnet.chain import Chain
from decentralml_core.devnet.codec import compact_bytes
from decentralml_core.devnet.executive import InvalidTransaction
from decentralml_core.devnet.hashing import blake2_256
from decentralml_core.devnet.metadata import SPEC_VERSION, TRANSACTION_VERSION, runtime
from decentralml_core.devnet.store import ChainDatabase

ALICE = Keypair.create_from_uri("//Alice")
BOB = Keypair.create_from_uri("//Bob")


def sign(chain: Chain, who: Keypair, call: dict, nonce: int) -> bytes:
    """A signed, immortal v4 extrinsic built with our codec (independent of substrate-interface)."""
    rt = chain.runtime
    call_bytes = rt.codec.encode(rt.runtime_call, call)
    extra = b"\x00" + compact_bytes(nonce) + compact_bytes(0)
    payload = (call_bytes + extra + SPEC_VERSION.to_bytes(4, "little") + TRANSACTION_VERSION.to_bytes(4, "little")
               + chain.genesis_hash + chain.genesis_hash)
    if len(payload) > 256:
        payload = blake2_256(payload)
    body = (b"\x84" + b"\x00" + who.public_key + b"\x01" + who.sign(payload) + extra + call_bytes)
    return compact_bytes(len(body)) + body


def remark(data: bytes) -> dict:
    return {"System": {"remark": {"remark": data}}}


@pytest.fixture
def chain(tmp_path):
    c = Chain(runtime("full"), ChainDatabase(tmp_path / "c.sqlite"))
    yield c
    c.store.close()


def test_genesis_is_deterministic(tmp_path, chain):
    other = Chain(runtime("full"), ChainDatabase(tmp_path / "other.sqlite"))
    assert other.genesis_hash == chain.genesis_hash
    assert chain.best_number == 0
    assert chain.executive.nonce_and_free(ALICE.public_key) == (0, 1 << 60)
    other.store.close()


def test_pool_orders_by_nonce_and_blocks_link(chain):
    later = sign(chain, ALICE, remark(b"b"), 1)
    first = sign(chain, ALICE, remark(b"a"), 0)
    assert chain.submit(later)[1] is False  # future: waits for nonce 0
    assert chain.submit(first)[1] is True
    block = chain.produce_block()
    assert block.extrinsics == [first, later]
    assert chain.executive.account_nonce(ALICE.public_key) == 2
    assert block.header["parent_hash"] == chain.block_hash(0)
    empty = chain.produce_block()
    assert empty.header["parent_hash"] == block.hash and empty.number == 2
    assert empty.header["state_root"] != block.header["state_root"]  # System.Number etc. changed


def test_reads_at_an_old_block(chain):
    key = chain.storage.key("System", "Account", (ALICE.public_key,))
    before = chain.storage_at(key, 0)
    chain.submit(sign(chain, ALICE, remark(b"x"), 0))
    chain.produce_block()
    assert chain.storage_at(key, 1) != before
    assert chain.storage_at(key, 0) == before
    prefix = chain.storage.prefix("System", "Account")
    assert len(chain.keys_paged(prefix, 1000, b"", 0)) == len(chain.keys_paged(prefix, 1000, b"", 1)) == 12


def test_pool_refusals(chain):
    xt = sign(chain, BOB, remark(b"1"), 0)
    chain.submit(xt)
    with pytest.raises(InvalidTransaction) as info:
        chain.submit(xt)
    assert info.value.code == 1013
    with pytest.raises(InvalidTransaction) as info:
        chain.submit(sign(chain, BOB, remark(b"2"), 0))
    assert info.value.code == 1014
    chain.produce_block()
    with pytest.raises(InvalidTransaction) as info:
        chain.submit(sign(chain, BOB, remark(b"3"), 0))
    assert (info.value.code, info.value.data) == (1010, "Transaction is outdated")
    tampered = bytearray(sign(chain, BOB, remark(b"4"), 1))
    tampered[-1] ^= 1
    with pytest.raises(InvalidTransaction) as info:
        chain.submit(bytes(tampered))
    assert info.value.data == "Transaction has a bad signature"


def test_restart_resumes_state(tmp_path):
    path = tmp_path / "c.sqlite"
    c = Chain(runtime("full"), ChainDatabase(path))
    c.submit(sign(c, ALICE, remark(b"persist"), 0))
    block = c.produce_block()
    c.store.close()
    again = Chain(runtime("full"), ChainDatabase(path))
    assert (again.best_number, again.best_hash) == (1, block.hash)
    assert again.executive.account_nonce(ALICE.public_key) == 1
    assert again.extrinsics(1) == block.extrinsics
    again.store.close()


def test_block_takes_each_senders_run_of_nonces_and_leaves_gaps_waiting(chain):
    a = [sign(chain, ALICE, remark(bytes([i])), i) for i in range(3)]
    b_gap = sign(chain, BOB, remark(b"b2"), 2)  # Bob's nonce 0 and 1 have not arrived
    b0 = sign(chain, BOB, remark(b"b0"), 0)
    for xt in (a[2], b_gap, a[0], b0, a[1]):
        chain.submit(xt)
    block = chain.produce_block()
    assert sorted(block.extrinsics) == sorted([*a, b0])
    assert block.extrinsics.index(a[0]) < block.extrinsics.index(a[1]) < block.extrinsics.index(a[2])
    assert len(chain.pool) == 1 and not chain.has_ready()
    chain.submit(sign(chain, BOB, remark(b"b1"), 1))
    assert chain.has_ready()
    assert len(chain.produce_block().extrinsics) == 2 and len(chain.pool) == 0
