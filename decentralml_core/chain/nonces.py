"""Local nonce bookkeeping, so one account has many extrinsics in flight without a round trip each.

Pure: the client fetches the chain's next index when the book has none (or after a conflict) and
holds the account's lock from :meth:`NonceBook.take` until the pool has answered.
"""

from __future__ import annotations


class NonceBook:
    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def known(self, account: str) -> bool:
        return account in self._next

    def set(self, account: str, next_nonce: int) -> None:
        """What the chain says (``system_accountNextIndex``, which counts the pool too)."""
        self._next[account] = next_nonce

    def take(self, account: str) -> int:
        nonce = self._next[account]
        self._next[account] = nonce + 1
        return nonce

    def give_back(self, account: str, nonce: int) -> None:
        """The extrinsic with ``nonce`` never reached the pool: the next one reuses its nonce."""
        if self._next.get(account) == nonce + 1:
            self._next[account] = nonce

    def forget(self, account: str) -> None:
        self._next.pop(account, None)
