"""pallet_balances on frame_system accounts: free balance, existential deposit, transfers.

Accounts live in ``System.Account`` (``AccountInfo`` with ``AccountData``), as in a polkadot-v1.0.0
runtime. An account exists while its free balance is at least the existential deposit; falling
below it reaps the account (its dust is burned), as ``transfer_allow_death`` allows.
"""

from __future__ import annotations

from .base import DispatchError, root, signed

EXISTENTIAL_DEPOSIT = 500


def lookup(address: dict) -> bytes:
    """The AccountId of a MultiAddress; only ``Id`` (and ``Address32``) name an account here."""
    if isinstance(address, dict):
        for kind in ("Id", "Address32"):
            if kind in address:
                return address[kind]
    raise DispatchError("System", "CallFiltered", "unsupported address kind")


def free(env, who: bytes) -> int:
    return env.get("System", "Account", who)["data"]["free"]


def _write(env, who: bytes, account: dict) -> None:
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


def transfer(env, source: bytes, dest: bytes, amount: int, keep_alive: bool = True) -> None:
    """Move ``amount`` of free balance; named pallet errors for every refusal."""
    if amount < 0:
        raise DispatchError("Balances", "InsufficientBalance")
    src = env.get("System", "Account", source)
    if src["data"]["free"] < amount:
        raise DispatchError("Balances", "InsufficientBalance")
    remaining = src["data"]["free"] - amount
    if keep_alive and remaining < EXISTENTIAL_DEPOSIT:
        raise DispatchError("Balances", "Expendability")
    if source == dest or amount == 0:
        return
    dst = env.get("System", "Account", dest)
    if dst["data"]["free"] + amount < EXISTENTIAL_DEPOSIT:
        raise DispatchError("Balances", "ExistentialDeposit")
    src["data"]["free"] = remaining
    _write(env, source, src)
    dst = env.get("System", "Account", dest)
    dst["data"]["free"] += amount
    _write(env, dest, dst)
    env.deposit_event("Balances", "Transfer", {"from": source, "to": dest, "amount": amount})


def set_free(env, who: bytes, amount: int) -> None:
    """Root's ``force_set_balance``; total issuance follows."""
    account = env.get("System", "Account", who)
    delta = amount - account["data"]["free"]
    account["data"]["free"] = amount
    env.set("Balances", "TotalIssuance", env.get("Balances", "TotalIssuance") + delta)
    _write(env, who, account)
    env.deposit_event("Balances", "BalanceSet", {"who": who, "free": amount})


def _transfer_allow_death(env, origin, *, dest: dict, value: int) -> None:
    transfer(env, signed(origin), lookup(dest), value, keep_alive=False)


def _transfer_keep_alive(env, origin, *, dest: dict, value: int) -> None:
    transfer(env, signed(origin), lookup(dest), value, keep_alive=True)


def _transfer_all(env, origin, *, dest: dict, keep_alive: bool) -> None:
    who = signed(origin)
    amount = free(env, who) - (EXISTENTIAL_DEPOSIT if keep_alive else 0)
    transfer(env, who, lookup(dest), max(amount, 0), keep_alive)


def _force_transfer(env, origin, *, source: dict, dest: dict, value: int) -> None:
    root(origin)
    transfer(env, lookup(source), lookup(dest), value, keep_alive=False)


def _force_set_balance(env, origin, *, who: dict, new_free: int) -> None:
    root(origin)
    set_free(env, lookup(who), new_free)


CALLS = {
    ("Balances", "transfer_allow_death"): _transfer_allow_death,
    ("Balances", "transfer"): _transfer_allow_death,
    ("Balances", "transfer_keep_alive"): _transfer_keep_alive,
    ("Balances", "transfer_all"): _transfer_all,
    ("Balances", "force_transfer"): _force_transfer,
    ("Balances", "force_set_balance"): _force_set_balance,
}
