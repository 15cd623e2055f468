"""The chain: genesis, the transaction pool, block production and reads at any block.

Synchronous and socket-free; :mod:`decentralml_core.devnet.server` drives it from the event loop and
tells subscribers what each produced :class:`Block` changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..keys import DEV_PUBLIC_KEYS
from .codec import compact_bytes, decode_compact
from .executive import STALE, Executive, Extrinsic, InvalidTransaction, invalid
from .hashing import blake2_256
from .metadata import EXISTENTIAL_DEPOSIT, DeclaredRuntime
from .state import State, TypedStorage
from .store import ChainDatabase

DEV_ENDOWMENT = 1 << 60  # what node-template gives each dev account
POOL_LIMIT = 50_000
MAX_BLOCK_EXTRINSICS = 4_096
GENESIS_BLOCK_HASH_PLACEHOLDER = b"\x45" * 32  # frame_system's hash69() until block 1 writes the real one


@dataclass
class Block:
    number: int
    hash: bytes
    header: dict[str, Any]
    extrinsics: list[bytes]
    changes: dict[bytes, bytes | None] = field(default_factory=dict)
    included: list[bytes] = field(default_factory=list)  # extrinsic hashes
    dropped: list[bytes] = field(default_factory=list)  # pool entries found invalid while building


class Pool:
    """Signed extrinsics waiting for a block: one per (sender, nonce), senders in arrival order.

    Indexed by sender, so building a block walks each sender's run of consecutive nonces
    (work proportional to what is included) instead of rescanning the whole pool.
    """

    def __init__(self) -> None:
        self.by_hash: dict[bytes, Extrinsic] = {}
        self.senders: dict[bytes, dict[int, bytes]] = {}  # sender -> nonce -> hash; senders in arrival order

    def __len__(self) -> int:
        return len(self.by_hash)

    def add(self, xt: Extrinsic) -> None:
        if xt.hash in self.by_hash:
            raise InvalidTransaction(1013, "Transaction Already Imported", "")
        waiting = self.senders.setdefault(xt.signer, {})
        if xt.nonce in waiting:
            raise InvalidTransaction(1014, "Priority is too low", "(0 vs 0)")
        if len(self.by_hash) >= POOL_LIMIT:
            if not waiting:
                del self.senders[xt.signer]
            raise InvalidTransaction(1016, "Immediately Dropped", "the pool is full")
        self.by_hash[xt.hash] = xt
        waiting[xt.nonce] = xt.hash

    def get(self, sender: bytes, nonce: int) -> Extrinsic | None:
        tx_hash = self.senders.get(sender, {}).get(nonce)
        return None if tx_hash is None else self.by_hash[tx_hash]

    def stale(self, sender: bytes, nonce: int) -> list[Extrinsic]:
        """The sender's extrinsics with a nonce below ``nonce``: they can never be included."""
        return [self.by_hash[h] for n, h in self.senders.get(sender, {}).items() if n < nonce]

    def remove(self, tx_hash: bytes) -> None:
        xt = self.by_hash.pop(tx_hash, None)
        if xt is not None:
            waiting = self.senders[xt.signer]
            del waiting[xt.nonce]
            if not waiting:
                del self.senders[xt.signer]


class Chain:
    """One devnet chain: runtime + state + blocks, optionally persisted."""

    def __init__(self, runtime: DeclaredRuntime, store: ChainDatabase, clock: Callable[[], float] = time.time) -> None:
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
            assert best is not None, "genesis was just committed"
        self.best_number, self.best_hash, header = best
        self.best_header: dict[str, Any] = runtime.codec.decode(runtime.types.header, header)
        genesis = store.block(0)
        assert genesis is not None, "a chain with a best block has its genesis"
        self.genesis_hash = genesis[0]
        self.executive = Executive(runtime, self.state, self.genesis_hash, self.block_hash)
        self.executive.block_number = self.best_number + 1

    # -- genesis --------------------------------------------------------------------------------
    def _genesis(self) -> None:
        s = self.storage
        total = 0
        for keys in DEV_PUBLIC_KEYS.values():
            for who in map(bytes.fromhex, keys):
                s.set("System", "Account", who, {
                    "nonce": 0, "consumers": 0, "providers": 1, "sufficients": 0,
                    "data": {"free": DEV_ENDOWMENT, "reserved": 0, "frozen": 0, "flags": 1 << 127}})
                total += DEV_ENDOWMENT
        s.set("Balances", "TotalIssuance", total)
        s.set("Sudo", "Key", bytes.fromhex(DEV_PUBLIC_KEYS["Alice"][0]))
        s.set("System", "BlockHash", 0, GENESIS_BLOCK_HASH_PLACEHOLDER)
        s.set("System", "ParentHash", GENESIS_BLOCK_HASH_PLACEHOLDER)
        s.set("System", "LastRuntimeUpgrade", {"spec_version": 100, "spec_name": "node-template"})
        changes: dict[bytes, bytes | None] = dict(self.state.committed)
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

    def header(self, number: int) -> dict[str, Any] | None:
        if number == self.best_number:
            return self.best_header
        row = self.store.block(number)
        if row is None:
            return None
        header: dict[str, Any] = self.runtime.codec.decode(self.runtime.types.header, row[1])
        return header

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
        while self.pool.get(who, nonce) is not None:
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
            self.pool.get(xt.signer, xt.nonce - 1) is not None)
        return xt.hash, ready

    def has_ready(self) -> bool:
        nonce_of = self.executive.account_nonce
        return any(self.pool.get(who, nonce_of(who)) is not None for who in self.pool.senders)

    def produce_block(self) -> Block:
        """Build, commit and return the next block from the ready part of the pool.

        Each sender's run of consecutive nonces goes in, senders in arrival order; an extrinsic whose
        nonce is already used is dropped, one that can no longer pay is dropped with its successors
        left waiting.
        """
        number = self.best_number + 1
        ex = self.executive
        ex.initialize_block(number, int(self.clock() * 1000))
        ex.storage.set("System", "ParentHash", self.best_hash)
        ex.storage.set("System", "BlockHash", number - 1, self.best_hash)
        included: list[bytes] = []
        dropped: list[bytes] = []
        bodies: list[bytes] = []
        for sender in list(self.pool.senders):
            nonce = ex.account_nonce(sender)
            for stale in self.pool.stale(sender, nonce):
                dropped.append(stale.hash)
                self.pool.remove(stale.hash)
            while len(bodies) < MAX_BLOCK_EXTRINSICS and (xt := self.pool.get(sender, nonce)) is not None:
                self.pool.remove(xt.hash)
                if not ex.apply(xt, len(bodies)):
                    dropped.append(xt.hash)
                    break
                bodies.append(xt.raw)
                included.append(xt.hash)
                nonce += 1
            if len(bodies) >= MAX_BLOCK_EXTRINSICS:
                break
        changes = ex.finalize_block()
        header = self._header(self.best_hash, number, self._state_root(self.best_header["state_root"], changes),
                              bodies)
        ex.state.commit_layer()
        block = self._commit(number, header, bodies, changes)
        block.included, block.dropped = included, dropped
        ex.block_number = number + 1
        return block

    def _header(self, parent: bytes, number: int, state_root: bytes, bodies: list[bytes]) -> dict[str, Any]:
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

    def _commit(self, number: int, header: dict[str, Any], bodies: list[bytes], changes: dict[bytes, bytes | None]) -> Block:
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
