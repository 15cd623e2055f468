"""The chain: genesis, the transaction pool, block production and reads at any block.

Synchronous and socket-free; :mod:`decentralml_core.devnet.server` drives it from the event loop and
tells subscribers what each produced :class:`Block` changed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from substrateinterface import Keypair

from .codec import compact_bytes, decode_compact
from .executive import STALE, Executive, Extrinsic, InvalidTransaction, invalid
from .hashing import blake2_256
from .metadata import Runtime
from .pallets.balances import EXISTENTIAL_DEPOSIT
from .state import State, TypedStorage
from .store import BlockStore

DEV_ACCOUNTS = ["Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie"]
DEV_ENDOWMENT = 1 << 60  # what node-template gives each dev account
POOL_LIMIT = 50_000
MAX_BLOCK_EXTRINSICS = 4_096
GENESIS_BLOCK_HASH_PLACEHOLDER = b"\x45" * 32  # frame_system's hash69() until block 1 writes the real one


@dataclass
class Block:
    number: int
    hash: bytes
    header: dict
    extrinsics: list[bytes]
    changes: dict[bytes, bytes | None] = field(default_factory=dict)
    included: list[bytes] = field(default_factory=list)  # extrinsic hashes
    dropped: list[bytes] = field(default_factory=list)  # pool entries found invalid while building


class Pool:
    """Signed extrinsics waiting for a block, in arrival order, one per (sender, nonce)."""

    def __init__(self) -> None:
        self.by_hash: OrderedDict[bytes, Extrinsic] = OrderedDict()
        self.by_sender_nonce: dict[tuple[bytes, int], bytes] = {}

    def __len__(self) -> int:
        return len(self.by_hash)

    def add(self, xt: Extrinsic) -> None:
        if xt.hash in self.by_hash:
            raise InvalidTransaction(1013, "Transaction Already Imported", "")
        slot = (xt.signer, xt.nonce)
        if slot in self.by_sender_nonce:
            raise InvalidTransaction(1014, "Priority is too low", "(0 vs 0)")
        if len(self.by_hash) >= POOL_LIMIT:
            raise InvalidTransaction(1016, "Immediately Dropped", "the pool is full")
        self.by_hash[xt.hash] = xt
        self.by_sender_nonce[slot] = xt.hash

    def remove(self, tx_hash: bytes) -> None:
        xt = self.by_hash.pop(tx_hash, None)
        if xt is not None:
            self.by_sender_nonce.pop((xt.signer, xt.nonce), None)


class Chain:
    """One devnet chain: runtime + state + blocks, optionally persisted."""

    def __init__(self, runtime: Runtime, store: BlockStore, clock=time.time) -> None:
        self.runtime = runtime
        self.store = store
        self.clock = clock
        self.pool = Pool()
        mode = store.meta("pallet_mode")
        if mode is not None and mode.decode() != runtime.pallet_mode:
            raise ValueError(f"the database holds a chain with --pallet {mode.decode()}, "
                             f"not {runtime.pallet_mode}")
        best = store.best()
        self.state = State(store.load_state() if best else {})
        self.storage = TypedStorage(runtime, self.state)
        if best is None:
            self._genesis()
            best = store.best()
        self.best_number, self.best_hash, header = best
        self.best_header = runtime.codec.decode(runtime.types.header, header)
        self.genesis_hash = store.block(0)[0]
        self.executive = Executive(runtime, self.state, self.genesis_hash, self.block_hash)
        self.executive.block_number = self.best_number + 1

    # -- genesis --------------------------------------------------------------------------------
    def _genesis(self) -> None:
        s = self.storage
        total = 0
        for name in DEV_ACCOUNTS:
            for uri in (f"//{name}", f"//{name}//stash"):
                who = Keypair.create_from_uri(uri).public_key
                s.set("System", "Account", who, {
                    "nonce": 0, "consumers": 0, "providers": 1, "sufficients": 0,
                    "data": {"free": DEV_ENDOWMENT, "reserved": 0, "frozen": 0, "flags": 1 << 127}})
                total += DEV_ENDOWMENT
        s.set("Balances", "TotalIssuance", total)
        s.set("Sudo", "Key", Keypair.create_from_uri("//Alice").public_key)
        s.set("System", "BlockHash", 0, GENESIS_BLOCK_HASH_PLACEHOLDER)
        s.set("System", "ParentHash", GENESIS_BLOCK_HASH_PLACEHOLDER)
        s.set("System", "LastRuntimeUpgrade", {"spec_version": 100, "spec_name": "node-template"})
        changes = dict(self.state.committed)
        header = self._header(bytes(32), 0, self._state_root(bytes(32), changes), [])
        self.store.set_meta("pallet_mode", self.runtime.pallet_mode.encode())
        self._commit(0, header, [], changes)

    # -- reads ----------------------------------------------------------------------------------
    def block_hash(self, number: int) -> bytes | None:
        if number == self.best_number:
            return self.best_hash
        row = self.store.block(number) if 0 <= number < self.best_number else None
        return row[0] if row else None

    def block_number(self, block_hash: bytes | None) -> int | None:
        if block_hash is None or block_hash == self.best_hash:
            return self.best_number
        return self.store.number_of(block_hash)

    def header(self, number: int) -> dict | None:
        if number == self.best_number:
            return self.best_header
        row = self.store.block(number)
        return self.runtime.codec.decode(self.runtime.types.header, row[1]) if row else None

    def extrinsics(self, number: int) -> list[bytes] | None:
        row = self.store.block(number)
        return _split(row[2]) if row else None

    def storage_at(self, key: bytes, number: int) -> bytes | None:
        if number == self.best_number:
            return self.state.get(key)
        return self.store.value_at(key, number)

    def keys_paged(self, prefix: bytes, count: int, start: bytes, number: int) -> list[bytes]:
        if number == self.best_number:
            out = []
            for key in self.state.keys_with_prefix(prefix):
                if key > start:
                    out.append(key)
                    if len(out) >= count:
                        break
            return out
        return self.store.keys_at(prefix, number, start, count)

    def account_next_index(self, who: bytes) -> int:
        """The next nonce to use, counting the sender's transactions already in the pool."""
        nonce = self.executive.account_nonce(who)
        while (who, nonce) in self.pool.by_sender_nonce:
            nonce += 1
        return nonce

    # -- writes ---------------------------------------------------------------------------------
    def submit(self, raw: bytes) -> tuple[bytes, bool]:
        """Admit a signed extrinsic to the pool; returns (hash, ready now?) or raises InvalidTransaction."""
        tx_hash = blake2_256(raw)
        if tx_hash in self.pool.by_hash:
            raise InvalidTransaction(1013, "Transaction Already Imported", "")
        xt = self.executive.validate(raw)
        self.pool.add(xt)
        ready = xt.nonce == self.executive.account_nonce(xt.signer) or (
            (xt.signer, xt.nonce - 1) in self.pool.by_sender_nonce)
        return xt.hash, ready

    def has_ready(self) -> bool:
        nonce_of = self.executive.account_nonce
        return any(xt.nonce == nonce_of(xt.signer) for xt in self.pool.by_hash.values())

    def produce_block(self) -> Block:
        """Build, commit and return the next block from the ready part of the pool."""
        number = self.best_number + 1
        ex = self.executive
        ex.initialize_block(number, int(self.clock() * 1000))
        ex.storage.set("System", "ParentHash", self.best_hash)
        ex.storage.set("System", "BlockHash", number - 1, self.best_hash)
        included, dropped, bodies = [], [], []
        progress = True
        while progress and len(bodies) < MAX_BLOCK_EXTRINSICS:
            progress = False
            for tx_hash, xt in list(self.pool.by_hash.items()):
                if len(bodies) >= MAX_BLOCK_EXTRINSICS:
                    break
                nonce = ex.account_nonce(xt.signer)
                if xt.nonce < nonce:
                    dropped.append(tx_hash)
                    self.pool.remove(tx_hash)
                elif xt.nonce == nonce:
                    if ex.apply(xt, len(bodies)):
                        bodies.append(xt.raw)
                        included.append(tx_hash)
                        progress = True
                    else:
                        dropped.append(tx_hash)
                    self.pool.remove(tx_hash)
        changes = ex.finalize_block()
        header = self._header(self.best_hash, number, self._state_root(self.best_header["state_root"], changes),
                              bodies)
        ex.state.commit_layer()
        block = self._commit(number, header, bodies, changes)
        block.included, block.dropped = included, dropped
        ex.block_number = number + 1
        return block

    def _header(self, parent: bytes, number: int, state_root: bytes, bodies: list[bytes]) -> dict:
        extrinsics_root = blake2_256(b"".join(blake2_256(b) for b in bodies))
        return {"parent_hash": parent, "number": number, "state_root": state_root,
                "extrinsics_root": extrinsics_root, "digest": {"logs": []}}

    @staticmethod
    def _state_root(parent_root: bytes, changes: dict[bytes, bytes | None]) -> bytes:
        """A commitment to the state: the parent's root chained with this block's sorted changes.

        Not a Merkle-Patricia trie root (clients do not check it against proofs here), but it is
        deterministic and changes with every state change."""
        h = [parent_root]
        for key in sorted(changes):
            value = changes[key]
            h.append(key + (b"\x01" + value if value is not None else b"\x00"))
        return blake2_256(b"".join(h))

    def _commit(self, number: int, header: dict, bodies: list[bytes], changes: dict) -> Block:
        header_bytes = self.runtime.codec.encode(self.runtime.types.header, header)
        block_hash = blake2_256(header_bytes)
        self.store.commit_block(number, block_hash, header_bytes, _join(bodies), changes)
        self.best_number, self.best_hash, self.best_header = number, block_hash, header
        return Block(number, block_hash, header, bodies, changes)


def _join(bodies: list[bytes]) -> bytes:
    """Extrinsics as a SCALE ``Vec<OpaqueExtrinsic>``: each already carries its length prefix."""
    return compact_bytes(len(bodies)) + b"".join(bodies)


def _split(blob: bytes) -> list[bytes]:
    count, off = decode_compact(blob, 0)
    out = []
    for _ in range(count):
        length, body = decode_compact(blob, off)
        out.append(blob[off:body + length])
        off = body + length
    return out


__all__ = ["Block", "Chain", "Pool", "EXISTENTIAL_DEPOSIT", "STALE", "invalid"]
