"""pallet_sudo: one key (//Alice on the devnet) may dispatch any call as root."""

from __future__ import annotations

from typing import Any

from .balances import lookup
from .base import DispatchError, Env, Origin, PalletCall, signed


def _require_key(env: Env, origin: Origin) -> bytes:
    key: bytes = env.get("Sudo", "Key")
    if signed(origin) != key:
        raise DispatchError("Sudo", "RequireSudo")
    return key


def _result(error: Any) -> object:
    return "Ok" if error is None else {"Err": error}


def sudo(env: Env, origin: Origin, *, call: dict[str, Any], weight: Any = None) -> None:
    _require_key(env, origin)
    env.deposit_event("Sudo", "Sudid", {"sudo_result": _result(env.dispatch_as_root(call))})


def sudo_as(env: Env, origin: Origin, *, who: dict[str, Any], call: dict[str, Any]) -> None:
    _require_key(env, origin)
    env.deposit_event("Sudo", "SudoAsDone", {"sudo_result": _result(env.dispatch(lookup(who), call))})


def set_key(env: Env, origin: Origin, *, new: dict[str, Any]) -> None:
    old = _require_key(env, origin)
    env.set("Sudo", "Key", lookup(new))
    env.deposit_event("Sudo", "KeyChanged", {"old_sudoer": old})


CALLS: dict[tuple[str, str], PalletCall] = {
    ("Sudo", "sudo"): sudo,
    ("Sudo", "sudo_unchecked_weight"): sudo,
    ("Sudo", "sudo_as"): sudo_as,
    ("Sudo", "set_key"): set_key,
}
