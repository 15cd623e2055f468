"""Every extrinsic a client signed, kept until it is included or known dead, and the account's next nonce.

A node's pool is not durable: a restart, an eviction or a switch of endpoint drops what it held. The
client therefore keeps each signed extrinsic's bytes here and, when the pool may have lost them (a
reconnect, or an account whose extrinsics stopped landing), plans a recovery with :meth:`InFlight.plan`:
resend the same bytes of every extrinsic whose nonce is still unused, in nonce order, and fill any
nonce nobody holds any more, so that one lost extrinsic never leaves the later ones waiting behind a
gap (an independent kill -9 campaign lost finished work exactly that way: the send at nonce 18 waited
129 blocks behind a lost assign at 17, until its task expired).

The nonce of a new extrinsic is never one an in-flight extrinsic holds, even when the node (which
forgot it) says it is free: two different extrinsics with one nonce can never both land, so reusing
it would silently drop one of them.

Pure bookkeeping: no I/O, no clock of its own; the client passes ``now`` and does the talking.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Signed:
    """One signed extrinsic in flight. ``hashes``: every signed form of it, the original first — a
    form re-signed with the same nonce (its old bytes could no longer be valid) is an alias, and
    whichever lands settles it."""

    account: str
    nonce: int
    label: str  # "Pallet.call", for logs
    raw: bytes
    hashes: list[str]
    future: asyncio.Future[Any]  # its Receipt, or the error that ended it
    keypair: Any = None  # what re-signing needs
    pallet: str = ""
    call: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    filler: bool = False  # signed only to fill a nonce another extrinsic left unused
    key: str | None = None  # what the call does (e.g. "verdict:12"): a retry of the same step joins it

    @property
    def hash(self) -> str:
        return self.hashes[-1]


@dataclass
class Plan:
    """What recovering one account means, given the on-chain nonce as of a block the follower has
    processed: ``replaced`` were not included although their nonce is used (another extrinsic of the
    account took it: they can never land); ``resend`` lists every nonce from the on-chain one up to the
    highest in flight, in order, each with the extrinsic holding it, or None where none does (a gap to
    fill)."""

    replaced: list[Signed]
    resend: list[tuple[int, Signed | None]]


class InFlight:
    def __init__(self) -> None:
        self._by_hash: dict[str, Signed] = {}
        self._by_account: dict[str, dict[int, Signed]] = {}
        self._next: dict[str, int] = {}
        self._progress: dict[str, float] = {}  # when an account last sent or saw one of its extrinsics land

    def __len__(self) -> int:
        return sum(len(held) for held in self._by_account.values())

    # -- nonces ---------------------------------------------------------------------------------------
    def known(self, account: str) -> bool:
        return account in self._next

    def set_next(self, account: str, chain_next: int) -> None:
        """What the node says is next (``system_accountNextIndex`` counts its pool), but never a nonce an
        extrinsic of ours still holds: a node that lost them would hand out their nonces again."""
        held = self._by_account.get(account)
        self._next[account] = max(chain_next, max(held) + 1) if held else chain_next

    def take(self, account: str) -> int:
        nonce = self._next[account]
        self._next[account] = nonce + 1
        return nonce

    def give_back(self, account: str, nonce: int) -> None:
        """The extrinsic with ``nonce`` never reached the pool: the next one reuses its nonce."""
        if self._next.get(account) == nonce + 1 and nonce not in self._by_account.get(account, {}):
            self._next[account] = nonce

    def forget(self, account: str) -> None:
        self._next.pop(account, None)

    # -- the extrinsics ----------------------------------------------------------------------------------
    def add(self, signed: Signed, now: float) -> None:
        held = self._by_account.setdefault(signed.account, {})
        if signed.nonce in held:
            raise ValueError(f"nonce {signed.nonce} of {signed.account} is held by {held[signed.nonce].label}")
        held[signed.nonce] = signed
        for xt_hash in signed.hashes:
            self._by_hash[xt_hash] = signed
        self._progress[signed.account] = now

    def alias(self, signed: Signed, raw: bytes, xt_hash: str) -> None:
        """``signed`` re-signed with its nonce: the new bytes are sent, either form settles it."""
        signed.raw = raw
        signed.hashes.append(xt_hash)
        self._by_hash[xt_hash] = signed

    def find(self, xt_hash: str) -> Signed | None:
        return self._by_hash.get(xt_hash)

    def keyed(self, account: str, key: str) -> Signed | None:
        """The held extrinsic doing ``key`` for ``account``: a step retried after an inclusion timeout waits
        for it instead of signing a second one that the chain would refuse as done already (a fee, and a
        duplicate in the books)."""
        return next((s for s in self._by_account.get(account, {}).values() if s.key == key), None)

    def remove(self, signed: Signed, now: float | None = None) -> None:
        """Included (``now`` given: the account made progress) or dead: no longer held."""
        for xt_hash in signed.hashes:
            self._by_hash.pop(xt_hash, None)
        held = self._by_account.get(signed.account, {})
        if held.get(signed.nonce) is signed:
            del held[signed.nonce]
        if not held:
            self._by_account.pop(signed.account, None)
        if now is not None:
            self._progress[signed.account] = now

    def of(self, account: str) -> list[Signed]:
        return [held for _, held in sorted(self._by_account.get(account, {}).items())]

    def accounts(self) -> list[str]:
        return list(self._by_account)

    def stalled(self, now: float, after: float) -> list[str]:
        """Accounts holding extrinsics that have neither been sent nor seen landing for ``after`` seconds."""
        return [a for a in self._by_account if now - self._progress.get(a, now) >= after]

    def touch(self, account: str, now: float) -> None:
        """A recovery ran: the next stall is counted from now."""
        self._progress[account] = now

    def plan(self, account: str, onchain_nonce: int) -> Plan:
        held = self._by_account.get(account, {})
        replaced = [held[n] for n in sorted(held) if n < onchain_nonce]
        top = max(held, default=onchain_nonce - 1)
        return Plan(replaced, [(n, held.get(n)) for n in range(onchain_nonce, top + 1)])
