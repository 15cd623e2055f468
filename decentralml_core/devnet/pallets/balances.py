"""pallet_balances on frame_system accounts: free balance, existential deposit, transfers.

Accounts live in ``System.Account`` (``AccountInfo`` with ``AccountData``), as in a polkadot-v1.0.0
runtime. An account exists while its free balance is at least the existential deposit; falling
below it reaps the account (its dust is burned), as ``transfer_allow_death`` allows.

A refused transfer fails with the ``DispatchError`` polkadot-v1.0.0's pallet_balances gives, decided in
the same order: its calls go through ``fungible::Mutate::transfer`` (``can_withdraw`` of the source,
then ``can_deposit`` of the destination), and ``Currency::transfer`` — what pallets such as DecentralML
call — is the same after a no-op for a zero amount or a transfer to oneself. So the pallet's own
``InsufficientBalance`` / ``ExistentialDeposit`` / ``Expendability`` never come from a transfer:

| condition, checked in this order | error |
|---|---|
| amount above the total issuance | ``Arithmetic(Underflow)`` |
| amount above the sender's free balance | ``Token(FundsUnavailable)`` |
| keep-alive, and the sender would fall below the existential deposit | ``Token(NotExpendable)`` |
| the receiver's balance would overflow u128 | ``Arithmetic(Overflow)`` |
| the receiver would hold less than the existential deposit | ``Token(BelowMinimum)`` |
"""

from __future__ import annotations

from typing import Any

from ..metadata import EXISTENTIAL_DEPOSIT
from .base import Env, Origin, PalletCall, RuntimeDispatchError, arithmetic_error, root, signed, token_error

U128_MAX = (1 << 128) - 1


def lookup(address: dict[str, Any]) -> bytes:
    """The AccountId of a MultiAddress; only ``Id`` (and ``Address32``) name an account here, any other
    fails as ``AccountIdLookup`` does: ``DispatchError::CannotLookup``."""
    if isinstance(address, dict):
        for kind in ("Id", "Address32"):
            if kind in address:
                account: bytes = address[kind]
                return account
    raise RuntimeDispatchError("CannotLookup")


def free(env: Env, who: bytes) -> int:
    balance: int = env.get("System", "Account", who)["data"]["free"]
    return balance


def _write(env: Env, who: bytes, account: dict[str, Any]) -> None:
    """Store an account, creating or reaping it by the existential deposit."""
    existed = account["providers"] > 0
    if account["data"]["free"] >= EXISTENTIAL_DEPOSIT:
        if not existed:
            account["providers"] = 1
            env.deposit_event("System", "NewAccount", {"account": who})
            env.deposit_event("Balances", "Endowed", {"account": who, "free_balance": account["data"]["free"]})
        env.set("System", "Account", who, account)
    elif existed or account["data"]["free"]:
        dust = account["data"]["free"]
        env.remove("System", "Account", who)
        if dust:
            env.set("Balances", "TotalIssuance", env.get("Balances", "TotalIssuance") - dust)
            env.deposit_event("Balances", "DustLost", {"account": who, "amount": dust})
        env.deposit_event("System", "KilledAccount", {"account": who})


def check_transfer(env: Env, source: bytes, dest: bytes, amount: int, keep_alive: bool) -> None:
    """``can_withdraw(source).into_result(keep_alive)`` then ``can_deposit(dest)``: the table above."""
    if amount == 0:
        return
    if env.get("Balances", "TotalIssuance") < amount:
        raise arithmetic_error("Underflow")
    remaining = free(env, source) - amount
    if remaining < 0:
        raise token_error("FundsUnavailable")
    if keep_alive and remaining < EXISTENTIAL_DEPOSIT:
        raise token_error("NotExpendable")
    received = free(env, dest) + amount
    if received > U128_MAX:
        raise arithmetic_error("Overflow")
    if received < EXISTENTIAL_DEPOSIT:
        raise token_error("BelowMinimum")


def fungible_transfer(env: Env, source: bytes, dest: bytes, amount: int, keep_alive: bool) -> None:
    """``fungible::Mutate::transfer`` (Preserve if ``keep_alive``, else Expendable): the Balances calls'
    transfer. A zero amount passes the checks and is reported as a ``Transfer`` of 0, as upstream."""
    check_transfer(env, source, dest, amount, keep_alive)
    if source == dest:
        return
    src = env.get("System", "Account", source)
    src["data"]["free"] -= amount
    _write(env, source, src)
    dst = env.get("System", "Account", dest)
    dst["data"]["free"] += amount
    _write(env, dest, dst)
    env.deposit_event("Balances", "Transfer", {"from": source, "to": dest, "amount": amount})


def transfer(env: Env, source: bytes, dest: bytes, amount: int, keep_alive: bool = True) -> None:
    """``Currency::transfer`` (``KeepAlive`` if ``keep_alive``, else ``AllowDeath``), what pallets call:
    a no-op for a zero amount or oneself, otherwise :func:`fungible_transfer`."""
    if amount == 0 or source == dest:
        return
    fungible_transfer(env, source, dest, amount, keep_alive)


def set_free(env: Env, who: bytes, amount: int) -> None:
    """Root's ``force_set_balance``; total issuance follows."""
    account = env.get("System", "Account", who)
    delta = amount - account["data"]["free"]
    account["data"]["free"] = amount
    env.set("Balances", "TotalIssuance", env.get("Balances", "TotalIssuance") + delta)
    _write(env, who, account)
    env.deposit_event("Balances", "BalanceSet", {"who": who, "free": amount})


def _transfer_allow_death(env: Env, origin: Origin, *, dest: dict[str, Any], value: int) -> None:
    fungible_transfer(env, signed(origin), lookup(dest), value, keep_alive=False)


def _transfer_keep_alive(env: Env, origin: Origin, *, dest: dict[str, Any], value: int) -> None:
    fungible_transfer(env, signed(origin), lookup(dest), value, keep_alive=True)


def _transfer_all(env: Env, origin: Origin, *, dest: dict[str, Any], keep_alive: bool) -> None:
    """The reducible balance: all of it, or all but the existential deposit with ``keep_alive``."""
    who = signed(origin)
    amount = free(env, who) - (EXISTENTIAL_DEPOSIT if keep_alive else 0)
    fungible_transfer(env, who, lookup(dest), max(amount, 0), keep_alive)


def _force_transfer(env: Env, origin: Origin, *, source: dict[str, Any], dest: dict[str, Any], value: int) -> None:
    root(origin)
    fungible_transfer(env, lookup(source), lookup(dest), value, keep_alive=False)


def _force_set_balance(env: Env, origin: Origin, *, who: dict[str, Any], new_free: int) -> None:
    root(origin)
    set_free(env, lookup(who), new_free)


CALLS: dict[tuple[str, str], PalletCall] = {
    ("Balances", "transfer_allow_death"): _transfer_allow_death,
    ("Balances", "transfer"): _transfer_allow_death,
    ("Balances", "transfer_keep_alive"): _transfer_keep_alive,
    ("Balances", "transfer_all"): _transfer_all,
    ("Balances", "force_transfer"): _force_transfer,
    ("Balances", "force_set_balance"): _force_set_balance,
}
