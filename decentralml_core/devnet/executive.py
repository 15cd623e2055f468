"""Checking and applying signed extrinsics, the way a FRAME runtime's executive does.

Pure: no sockets, no clocks. The node feeds it bytes and block context; it answers with a typed
verdict (:class:`InvalidTransaction` with Substrate's code and message) or applies the call,
recording events. The signed payload, era and nonce rules follow ``frame_system``'s extensions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ed25519_zebra
import sr25519
import structlog

from .codec import CodecError, compact_bytes, decode_compact
from .hashing import blake2_256
from .metadata import EXISTENTIAL_DEPOSIT, SPEC_VERSION, TRANSACTION_VERSION, Arg, DeclaredRuntime
from .pallets import balances, decentralml, sudo, system
from .pallets.base import ROOT, BadOrigin, DispatchError, Origin, PalletCall, RuntimeDispatchError, signed
from .state import State, TypedStorage

log = structlog.get_logger(__name__)

BASE_WEIGHT = 125_000_000  # ExtrinsicBaseWeight-like ref_time; fees are IdentityFee(weight) + length
CALL_WEIGHT = 10_000_000


class InvalidTransaction(Exception):
    """A transaction the pool refuses, with the JSON-RPC error Substrate gives for it."""

    def __init__(self, code: int, message: str, data: str) -> None:
        super().__init__(f"{message}: {data}")
        self.code, self.message, self.data = code, message, data


def bad_format(detail: str) -> InvalidTransaction:
    return InvalidTransaction(1001, "Extrinsic has invalid format", detail)


def invalid(data: str) -> InvalidTransaction:
    return InvalidTransaction(1010, "Invalid Transaction", data)


BAD_PROOF = "Transaction has a bad signature"
STALE = "Transaction is outdated"
PAYMENT = "Inability to pay some fees (e.g. account balance too low)"
ANCIENT = "Transaction has an ancient birth block"
CALL = "Transaction call is not expected"


@dataclass
class Extrinsic:
    """A decoded signed extrinsic and what validating it established."""

    raw: bytes
    hash: bytes
    signer: bytes
    nonce: int
    tip: int
    call: dict[str, Any]  # {pallet: {call_name: {arg: value}}}
    call_index: tuple[int, int]
    fee: int


def era_birth(era: Any, current: int) -> tuple[int, int | None]:
    """(birth block, death block or None) of an era at block ``current``; Substrate's arithmetic."""
    if era == "Immortal":
        return 0, None
    (name, high), = era.items()
    encoded = int(name[len("Mortal"):]) + (high << 8)
    period = 2 << (encoded % (1 << 4))
    quantize = max(period >> 12, 1)
    phase = (encoded >> 4) * quantize
    if period < 4 or phase >= period:
        raise bad_format("invalid era")
    birth = (max(current, phase) - phase) // period * period + phase
    return birth, birth + period


class Executive:
    """Validates and applies extrinsics against a :class:`State` for one runtime."""

    def __init__(self, runtime: DeclaredRuntime, state: State, genesis_hash: bytes,
                 block_hash_at: Callable[[int], bytes | None]) -> None:
        self.runtime = runtime
        self.state = state
        self.storage = TypedStorage(runtime, state)
        self.genesis_hash = genesis_hash
        self.block_hash_at = block_hash_at
        codec, t = runtime.codec, runtime.types
        self._dec_address = codec.decoder(t.multi_address)
        self._dec_signature = codec.decoder(t.multi_signature)
        self._dec_era = codec.decoder(t.era)
        self._dec_call = codec.decoder(runtime.runtime_call)
        self._enc_call = codec.encoder(runtime.runtime_call)
        self._dispatchers = _dispatch_table(runtime)
        self.block_number = 0  # the block being built
        self.upstream = runtime.pallet_mode == "upstream"
        self.events: list[dict[str, Any]] = []
        self.extrinsic_index: int | None = None

    # -- decoding and validation ----------------------------------------------------------------
    def decode(self, raw: bytes) -> tuple[Extrinsic, Any, Any, bytes]:
        """Decode an opaque extrinsic; returns it with its era, signature and call bytes."""
        try:
            length, off = decode_compact(raw, 0)
            if length != len(raw) - off:
                raise bad_format(f"length prefix says {length} bytes, {len(raw) - off} follow")
            version = raw[off]
            off += 1
            if version & 0x7F != 4:
                raise bad_format(f"unsupported extrinsic version {version & 0x7F}")
            if not version & 0x80:
                call_start = off
                self._decode_call(raw, off)
                raise invalid(CALL)  # unsigned: only inherents are, and users cannot send those
            address, off = self._dec_address(raw, off)
            signature, off = self._dec_signature(raw, off)
            era, off = self._dec_era(raw, off)
            nonce, off = decode_compact(raw, off)
            tip, off = decode_compact(raw, off)
            call_start = off
            call, index = self._decode_call(raw, off)
        except CodecError as exc:
            raise bad_format(str(exc)) from None
        except IndexError:
            raise bad_format("truncated extrinsic") from None
        except RecursionError:  # a call nested in Sudo.sudo thousands of times
            raise bad_format("call nested too deeply") from None
        if not (isinstance(address, dict) and "Id" in address):
            raise InvalidTransaction(1011, "Unknown Transaction Validity",
                                     "Could not lookup information required to validate the transaction")
        fee = BASE_WEIGHT + CALL_WEIGHT + len(raw) + tip
        xt = Extrinsic(raw, blake2_256(raw), address["Id"], nonce, tip, call, index, fee)
        return xt, era, signature, raw[call_start:]

    def _decode_call(self, raw: bytes, off: int) -> tuple[dict[str, Any], tuple[int, int]]:
        if off + 2 > len(raw):
            raise bad_format("truncated call")
        index = (raw[off], raw[off + 1])
        if index not in self.runtime.calls_by_index:
            raise bad_format(f"no call with index {index}")
        call, end = self._dec_call(raw, off)
        if end != len(raw):
            raise bad_format(f"{len(raw) - end} trailing bytes after the call")
        pallet, decl = self.runtime.calls_by_index[index]
        args = call[pallet.name][decl.name] or {}
        for arg in decl.args:
            _check_bound(decl.name, arg, args.get(arg.name))
        return call, index

    def validate(self, raw: bytes) -> Extrinsic:
        """Everything the pool checks before admitting a transaction, except the nonce's future."""
        xt, era, signature, call_bytes = self.decode(raw)
        current = self.block_number - 1  # the best block, as the pool sees it
        birth, death = era_birth(era, current)
        birth_hash = self.block_hash_at(birth) if death is None or birth <= current else None
        if birth_hash is None:
            raise invalid(ANCIENT)
        extra = (self.runtime.codec.encode(self.runtime.types.era, era) + compact_bytes(xt.nonce)
                 + compact_bytes(xt.tip))
        payload = (call_bytes + extra + SPEC_VERSION.to_bytes(4, "little")
                   + TRANSACTION_VERSION.to_bytes(4, "little") + self.genesis_hash + birth_hash)
        if len(payload) > 256:
            payload = blake2_256(payload)
        if not _verify(signature, payload, xt.signer):
            raise invalid(BAD_PROOF)
        nonce, free = self.nonce_and_free(xt.signer)
        if xt.nonce < nonce:
            raise invalid(STALE)
        if free < xt.fee + EXISTENTIAL_DEPOSIT:
            raise invalid(PAYMENT)
        return xt

    def nonce_and_free(self, who: bytes) -> tuple[int, int]:
        """An account's nonce and free balance, read at their fixed offsets in ``AccountInfo``
        (nonce u32 first; free u128 after four u32 counters) instead of decoding the whole value."""
        raw = self.storage.raw("System", "Account", who)
        if raw is None:
            return 0, 0
        return int.from_bytes(raw[0:4], "little"), int.from_bytes(raw[16:32], "little")

    def account_nonce(self, who: bytes) -> int:
        return self.nonce_and_free(who)[0]

    # -- block building -------------------------------------------------------------------------
    def initialize_block(self, number: int, timestamp_ms: int) -> None:
        self.block_number = number
        self.events = []
        self.extrinsic_index = None
        self.state.begin()
        self.storage.set("System", "Number", number)
        self.storage.set("Timestamp", "Now", timestamp_ms)
        self._on_initialize()

    def _on_initialize(self) -> None:
        """The pallets' block hooks (deadlines falling due), in their own layer: a bug there is logged and
        rolled back, never stops block production."""
        self.state.begin()
        try:
            decentralml.on_initialize(self)
        except Exception:
            log.exception("on_initialize_failed", block=self.block_number)
            self.state.rollback()
            self.events.clear()
            return
        self.state.commit_layer()

    def apply(self, xt: Extrinsic, index: int) -> bool:
        """Apply a validated extrinsic at position ``index``; False if it is no longer valid."""
        nonce, free = self.nonce_and_free(xt.signer)
        if xt.nonce != nonce or free < xt.fee + EXISTENTIAL_DEPOSIT:
            return False
        account = self.storage.get("System", "Account", xt.signer)
        self.extrinsic_index = index
        account["nonce"] += 1
        account["data"]["free"] -= xt.fee
        self.storage.set("System", "Account", xt.signer, account)
        self.storage.set("Balances", "TotalIssuance",
                         self.storage.get("Balances", "TotalIssuance") - xt.fee)
        self.deposit_event("Balances", "Withdraw", {"who": xt.signer, "amount": xt.fee})
        error = self.dispatch(xt.signer, xt.call)
        self.deposit_event("TransactionPayment", "TransactionFeePaid",
                           {"who": xt.signer, "actual_fee": xt.fee, "tip": xt.tip})
        info = {"weight": {"ref_time": BASE_WEIGHT + CALL_WEIGHT, "proof_size": 0},
                "class": "Normal", "pays_fee": "Yes"}
        if error is None:
            self.deposit_event("System", "ExtrinsicSuccess", {"dispatch_info": info})
        else:
            self.deposit_event("System", "ExtrinsicFailed", {"dispatch_error": error, "dispatch_info": info})
        return True

    def dispatch(self, origin: bytes | str, call: dict[str, Any]) -> Any:
        """Run a call in its own storage layer; returns None or the DispatchError value."""
        (pallet, inner), = call.items()
        (name, args), = inner.items()
        handler = self._dispatchers.get((pallet, name))
        mark = len(self.events)
        self.state.begin()
        try:
            if handler is None:
                raise DispatchError("System", "CallFiltered")
            handler(self, origin, **(args or {}))
        except DispatchError as exc:
            self.state.rollback()
            del self.events[mark:]
            index, error = self.runtime.error_index[(exc.pallet, exc.error)]
            return {"Module": {"index": index, "error": bytes([error, 0, 0, 0])}}
        except BadOrigin:
            self.state.rollback()
            del self.events[mark:]
            return "BadOrigin"
        except RuntimeDispatchError as exc:  # Token(…), Arithmetic(…), CannotLookup
            self.state.rollback()
            del self.events[mark:]
            return exc.value
        except Exception:  # a bug in a pallet: this call fails, the chain goes on
            log.exception("dispatch_internal_error", pallet=pallet, call=name)
            self.state.rollback()
            del self.events[mark:]
            return "Other"
        self.state.commit_layer()
        return None

    def dispatch_as_root(self, call: dict[str, Any]) -> Any:
        return self.dispatch(ROOT, call)

    def finalize_block(self) -> dict[bytes, bytes | None]:
        """Write the block's events; returns the block's storage changes (not yet committed)."""
        self.extrinsic_index = None
        self.storage.set("System", "Events", self.events)
        self.storage.set("System", "EventCount", len(self.events))
        return self.state.layers[-1]

    # -- the Env the pallets see ----------------------------------------------------------------
    def declares_event(self, pallet: str, name: str) -> bool:
        return (pallet, name) in self.runtime.event_index

    def deposit_event(self, pallet: str, name: str, fields: Any = None) -> None:
        if (pallet, name) not in self.runtime.event_index:
            raise LookupError(f"the runtime declares no event {pallet}.{name}")
        phase = "Initialization" if self.extrinsic_index is None else {"ApplyExtrinsic": self.extrinsic_index}
        event = {name: fields} if fields is not None else name
        self.events.append({"phase": phase, "event": {pallet: event}, "topics": []})

    def get(self, pallet: str, item: str, *keys: Any) -> Any:
        return self.storage.get(pallet, item, *keys)

    def set(self, pallet: str, item: str, *keys_and_value: Any) -> None:
        self.storage.set(pallet, item, *keys_and_value)

    def remove(self, pallet: str, item: str, *keys: Any) -> None:
        self.storage.remove(pallet, item, *keys)

    def free_balance(self, who: bytes) -> int:
        return balances.free(self, who)

    def transfer(self, source: bytes, dest: bytes, amount: int, keep_alive: bool = True) -> None:
        balances.transfer(self, source, dest, amount, keep_alive)


def _check_bound(call: str, arg: Arg, value: Any) -> None:
    if value is None or arg.max_len is None:
        return
    if len(value) > arg.max_len:
        raise bad_format(f"{call}.{arg.name} has {len(value)} entries, the bound is {arg.max_len}")
    if arg.item_max_len is not None:
        for i, item in enumerate(value):
            if len(item) > arg.item_max_len:
                raise bad_format(f"{call}.{arg.name}[{i}] has {len(item)} bytes, the bound is {arg.item_max_len}")


def _verify(signature: Any, payload: bytes, signer: bytes) -> bool:
    (scheme, sig), = signature.items()
    try:
        if scheme == "Sr25519":
            return bool(sr25519.verify(sig, payload, signer))
        if scheme == "Ed25519":
            return bool(ed25519_zebra.ed_verify(sig, payload, signer))
    except (ValueError, TypeError):
        return False
    return False  # ECDSA signers are blake2(pubkey) accounts: not supported by the devnet


def _decentralml_call(fn: Callable[..., object]) -> PalletCall:
    def call(env: Executive, origin: Origin, **args: Any) -> object:
        return fn(env, signed(origin), **args)
    return call


def _dispatch_table(runtime: DeclaredRuntime) -> dict[tuple[str, str], PalletCall]:
    table: dict[tuple[str, str], PalletCall] = {**system.CALLS, **balances.CALLS, **sudo.CALLS}
    for _, call in runtime.calls_by_index.values():
        fn = getattr(decentralml, call.name, None)
        if (("DecentralMLModule", call.name) not in table and fn is not None
                and any(p.name == "DecentralMLModule" and call in (p.calls or []) for p in runtime.pallets)):
            table[("DecentralMLModule", call.name)] = _decentralml_call(fn)
    return table
