"""What can go wrong talking to a chain, as types a caller can act on.

A :class:`DispatchFailed` is final (the chain ran the call and refused it: never retry it); a
:class:`TransactionRejected` was refused by the pool before inclusion; :class:`ConnectionLost` and
:class:`InclusionTimeout` leave the outcome to be found out from the chain.
"""

from __future__ import annotations

import json


class ChainError(Exception):
    """Base of every chain client error."""


class FieldTooLong(ChainError, ValueError):
    """A value exceeds the pallet's bound for its field; caught before anything is signed."""

    def __init__(self, field: str, limit: int, actual: int, unit: str = "bytes") -> None:
        super().__init__(f"{field} is {actual} {unit}, the chain accepts at most {limit}")
        self.field, self.limit, self.actual = field, limit, actual


class DispatchFailed(ChainError):
    """The extrinsic was included but its call failed: a pallet's error (``pallet`` is the pallet's name)
    or one of ``sp_runtime``'s (``pallet`` is ``Token``, ``Arithmetic``, ``Transactional`` or ``System``;
    see :data:`RUNTIME_ERRORS`)."""

    def __init__(self, pallet: str, error: str, docs: str = "", block_number: int | None = None) -> None:
        super().__init__(f"{pallet}.{error}" + (f": {docs}" if docs else ""))
        self.pallet, self.error, self.docs, self.block_number = pallet, error, docs, block_number


INVALID_TRANSACTION = {
    "call": "Transaction call is not expected",
    "payment": "Inability to pay some fees (e.g. account balance too low)",
    "future": "Transaction will be valid in the future",
    "stale": "Transaction is outdated",
    "badProof": "Transaction has a bad signature",
    "ancientBirthBlock": "Transaction has an ancient birth block",
    "exhaustsResources": "Transaction would exhaust the block limits",
    "badSigner": "Invalid signing address",
}
"""sp_runtime's ``InvalidTransaction`` variants and the message a node sends for each (its ``Display``)."""


def refusal_cause(message: str, data: str = "") -> str:
    """Why a pool refused an extrinsic, in sp_runtime's words: a node sends them as ``data``; chopsticks
    (a real runtime without a node's RPC server) sends the variant's JSON as ``message``
    (``{"invalid":{"stale":null}}``) and no data."""
    if data:
        return data
    try:
        (kind, detail), = json.loads(message).items()
        (variant, _), = detail.items()
    except (ValueError, AttributeError, TypeError):
        return message
    return INVALID_TRANSACTION.get(variant, f"{kind}.{variant}")


class TransactionRejected(ChainError):
    """The node's pool refused the extrinsic (bad signature, stale nonce, cannot pay fees, …)."""

    def __init__(self, code: int, message: str, data: str = "") -> None:
        super().__init__(f"{message} ({code})" + (f": {data}" if data else ""))
        self.code, self.message, self.data = code, message, data
        self.cause = refusal_cause(message, data)

    @property
    def cannot_pay_fees(self) -> bool:
        """The account's balance cannot cover the fee (``Inability to pay some fees``): fund it, then retry."""
        return self.code == 1010 and "pay" in f"{self.message} {self.cause}".lower()

    @property
    def is_nonce_conflict(self) -> bool:
        """Stale nonce, or another extrinsic with the same nonce already waits: resync and re-sign.
        Read from the cause, so chopsticks' wording counts too (a CI run's creator was refused
        ``{"invalid":{"stale":null}}`` and gave up where a node's "Transaction is outdated" resyncs)."""
        return self.code == 1014 or (self.code == 1010 and "outdated" in self.cause.lower())

    @property
    def already_imported(self) -> bool:
        """The pool holds these very bytes already."""
        return self.code == 1013

    @property
    def needs_new_signature(self) -> bool:
        """These bytes can never be valid again, but the call can: a bad proof (another genesis or era),
        an ancient birth block, or bytes the pool banned after dropping them (1012)."""
        cause = self.cause.lower()
        return self.code == 1012 or (self.code == 1010 and ("bad signature" in cause or "ancient" in cause))


class ConnectionLost(ChainError):
    """The node could not be reached, even after retrying."""


class InclusionTimeout(ChainError):
    """The extrinsic was accepted by the pool but not seen in a block in time. The client still holds
    it (resent should the node have lost it), so it may land later: read the chain before doing the
    step again."""


class ExtrinsicDropped(ChainError):
    """An extrinsic the client held can never land: its nonce was used by another extrinsic of the
    account (one signed elsewhere with the same key), or the pool refused it when it was resent. The
    step that sent it may be tried again after reading the chain."""


class ChainChanged(ChainError):
    """The node now serves another chain (another genesis hash): nothing signed for the old one can land
    there, and an agent's journal no longer describes it. Final."""


class UnsupportedCall(ChainError):
    """The node's runtime does not offer a call this operation needs."""


RUNTIME_ERRORS: dict[tuple[str, str], str] = {
    # DispatchError::Token(TokenError): what balance transfers report since polkadot-v1.0.0
    ("Token", "FundsUnavailable"): "the account's free balance is below the amount to move",
    ("Token", "OnlyProvider"): "the balance is the account's only provider reference and cannot be moved",
    ("Token", "BelowMinimum"): "the receiving account would hold less than the existential deposit",
    ("Token", "CannotCreate"): "the receiving account cannot be created",
    ("Token", "UnknownAsset"): "the asset is unknown",
    ("Token", "Frozen"): "the funds exist but are frozen",
    ("Token", "Unsupported"): "the asset does not support this operation",
    ("Token", "CannotCreateHold"): "the account cannot be created to record an amount on hold",
    ("Token", "NotExpendable"): "the sender would fall below the existential deposit (a keep-alive transfer)",
    ("Token", "Blocked"): "the receiving account cannot receive the assets",
    # DispatchError::Arithmetic(ArithmeticError)
    ("Arithmetic", "Underflow"): "an amount is larger than what it is taken from (e.g. above the total issuance)",
    ("Arithmetic", "Overflow"): "an amount would exceed its type's maximum",
    ("Arithmetic", "DivisionByZero"): "a division by zero",
    # DispatchError::Transactional(TransactionalError)
    ("Transactional", "LimitReached"): "too many nested storage transactions",
    ("Transactional", "NoLayer"): "a storage transaction was committed or rolled back without being started",
    # DispatchError's fieldless variants
    ("System", "Other"): "the runtime failed without naming the error",
    ("System", "CannotLookup"): "an address names no account this chain can look up",
    ("System", "BadOrigin"): "the call needs another origin (e.g. root)",
    ("System", "ConsumerRemaining"): "the account still has consumer references",
    ("System", "NoProviders"): "the account has no provider references",
    ("System", "TooManyConsumers"): "the account has too many consumer references",
    ("System", "Exhausted"): "a resource of the runtime is exhausted",
    ("System", "Corruption"): "the chain's state is corrupt",
    ("System", "Unavailable"): "a resource is temporarily unavailable",
    ("System", "RootNotAllowed"): "the root origin may not make this call",
}
"""Plain messages for ``sp_runtime::DispatchError``'s own variants (``Token(FundsUnavailable)`` …), keyed
as :class:`DispatchFailed` names them; the wording follows sp_runtime's docs for each variant."""


def runtime_dispatch_error(error: object, block_number: int | None = None) -> DispatchFailed:
    """The :class:`DispatchFailed` of a decoded non-Module ``DispatchError``: ``"BadOrigin"``,
    ``{"Token": "FundsUnavailable"}``, ``{"Arithmetic": "Underflow"}`` …"""
    if isinstance(error, dict) and len(error) == 1:
        (kind, inner), = error.items()
        if isinstance(inner, str):
            return DispatchFailed(str(kind), inner, RUNTIME_ERRORS.get((str(kind), inner), ""), block_number)
        error = kind
    name = str(error)
    return DispatchFailed("System", name, RUNTIME_ERRORS.get(("System", name), ""), block_number)
