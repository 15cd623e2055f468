"""What can go wrong talking to a chain, as types a caller can act on.

A :class:`DispatchFailed` is final (the chain ran the call and refused it: never retry it); a
:class:`TransactionRejected` was refused by the pool before inclusion; :class:`ConnectionLost` and
:class:`InclusionTimeout` leave the outcome to be found out from the chain.
"""

from __future__ import annotations


class ChainError(Exception):
    """Base of every chain client error."""


class FieldTooLong(ChainError, ValueError):
    """A value exceeds the pallet's bound for its field; caught before anything is signed."""

    def __init__(self, field: str, limit: int, actual: int, unit: str = "bytes") -> None:
        super().__init__(f"{field} is {actual} {unit}, the chain accepts at most {limit}")
        self.field, self.limit, self.actual = field, limit, actual


class DispatchFailed(ChainError):
    """The extrinsic was included but its call failed with a named pallet error."""

    def __init__(self, pallet: str, error: str, docs: str = "", block_number: int | None = None) -> None:
        super().__init__(f"{pallet}.{error}" + (f": {docs}" if docs else ""))
        self.pallet, self.error, self.docs, self.block_number = pallet, error, docs, block_number


class TransactionRejected(ChainError):
    """The node's pool refused the extrinsic (bad signature, stale nonce, cannot pay fees, …)."""

    def __init__(self, code: int, message: str, data: str = "") -> None:
        super().__init__(f"{message} ({code})" + (f": {data}" if data else ""))
        self.code, self.message, self.data = code, message, data

    @property
    def cannot_pay_fees(self) -> bool:
        """The account's balance cannot cover the fee (``Inability to pay some fees``): fund it, then retry."""
        return self.code == 1010 and "pay" in f"{self.message} {self.data}".lower()

    @property
    def is_nonce_conflict(self) -> bool:
        """Stale nonce, or another extrinsic with the same nonce already waits: resync and re-sign."""
        return self.code == 1014 or (self.code == 1010 and "outdated" in self.data.lower())


class ConnectionLost(ChainError):
    """The node could not be reached, even after retrying."""


class InclusionTimeout(ChainError):
    """The extrinsic was accepted by the pool but not seen in a block in time."""


class UnsupportedCall(ChainError):
    """The node's runtime does not offer a call this operation needs."""
