"""What a pallet sees while it dispatches a call: storage, balances, events, errors.

Pallets are pure Python over this interface, so their rules are tested without sockets or SCALE.
Values follow the devnet codec's conventions (see ``decentralml_core.devnet.codec``):
ints for integers and compacts, ``bytes`` for ``Vec<u8>``/``BoundedVec<u8>``/``[u8; N]`` and for
AccountId (32 bytes), ``None`` or the value for ``Option``, a ``dict`` for a struct with named fields,
the variant name (``str``) for a fieldless enum variant, ``{"Name": fields}`` for a variant with fields,
a ``list`` for a non-byte sequence or array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class DispatchError(Exception):
    """A named pallet error, reported on chain as ``DispatchError::Module { index, error }``."""

    def __init__(self, pallet: str, error: str, detail: str = "") -> None:
        super().__init__(f"{pallet}.{error}" + (f": {detail}" if detail else ""))
        self.pallet = pallet
        self.error = error


class BadOrigin(Exception):
    """The call needs another origin (e.g. root for sudo-only calls); ``DispatchError::BadOrigin``."""


class RuntimeDispatchError(Exception):
    """A ``DispatchError`` of ``sp_runtime`` itself rather than a pallet's: ``Token(TokenError)``,
    ``Arithmetic(ArithmeticError)``, ``CannotLookup`` … ``value`` is the error as the devnet codec encodes
    it (``{"Token": "FundsUnavailable"}``, ``"CannotLookup"``)."""

    def __init__(self, value: Any) -> None:
        super().__init__(str(value))
        self.value = value


def token_error(name: str) -> RuntimeDispatchError:
    """``DispatchError::Token(name)``: what ``fungible`` code reports (``FundsUnavailable``, ``BelowMinimum`` …)."""
    return RuntimeDispatchError({"Token": name})


def arithmetic_error(name: str) -> RuntimeDispatchError:
    """``DispatchError::Arithmetic(name)``: ``Underflow``, ``Overflow``, ``DivisionByZero``."""
    return RuntimeDispatchError({"Arithmetic": name})


Origin = bytes | str
"""Who dispatches a call: a signer's 32-byte AccountId, or :data:`ROOT`."""

PalletCall = Callable[..., object]
"""A dispatchable: ``call(env, origin, **args)``; it raises a dispatch error to refuse."""

ROOT = "root"
"""The origin of a call dispatched by sudo; a signed origin is the signer's 32-byte AccountId."""


def signed(origin: Origin) -> bytes:
    """The signer of a signed origin; any other origin is refused."""
    if not isinstance(origin, bytes):
        raise BadOrigin()
    return origin


def root(origin: Origin) -> None:
    if origin != ROOT:
        raise BadOrigin()


class Env(Protocol):
    """The runtime's services during one dispatch; changes are rolled back if the call raises."""

    block_number: int
    upstream: bool
    """True for ``--pallet upstream``: storage laid out exactly as upstream's (see the pallet)."""

    def get(self, pallet: str, item: str, *keys: Any) -> Any:
        """The stored value; for an absent OptionQuery entry ``None``, for ValueQuery its default."""

    def set(self, pallet: str, item: str, *keys_and_value: Any) -> None:
        """Store a value: ``set(p, item, value)`` for a plain item, ``set(p, item, key, value)`` for a map."""

    def remove(self, pallet: str, item: str, *keys: Any) -> None:
        """Delete an entry."""

    def declares_event(self, pallet: str, name: str) -> bool:
        """Whether the runtime has this event (``--pallet upstream`` lacks the ones we added)."""

    def deposit_event(self, pallet: str, name: str, fields: Any = None) -> None:
        """Emit ``pallet.name``; ``fields`` is a dict for named fields, a tuple for unnamed ones."""

    def free_balance(self, who: bytes) -> int:
        """The account's free balance."""

    def dispatch(self, origin: Origin, call: dict[str, Any]) -> Any:
        """Run a decoded call as ``origin``; the dispatch error, or ``None`` on success."""

    def dispatch_as_root(self, call: dict[str, Any]) -> Any:
        """Run a decoded call as root (what sudo does)."""

    def transfer(self, source: bytes, dest: bytes, amount: int, keep_alive: bool = True) -> None:
        """Move ``amount`` as ``Currency::transfer`` does; raises the :class:`RuntimeDispatchError`
        (``Token(FundsUnavailable)`` …) a polkadot-v1.0.0 pallet_balances gives."""
