"""pallet_sudo: one key (//Alice on the devnet) may dispatch any call as root."""

from __future__ import annotations

from .balances import lookup
from .base import DispatchError, signed


def _require_key(env, origin) -> bytes:
    key = env.get("Sudo", "Key")
    if signed(origin) != key:
        raise DispatchError("Sudo", "RequireSudo")
    return key


def _result(error) -> object:
    return "Ok" if error is None else {"Err": error}


def sudo(env, origin, *, call: dict, weight=None) -> None:
    _require_key(env, origin)
    env.deposit_event("Sudo", "Sudid", {"sudo_result": _result(env.dispatch_as_root(call))})


def sudo_as(env, origin, *, who: dict, call: dict) -> None:
    _require_key(env, origin)
    env.deposit_event("Sudo", "SudoAsDone", {"sudo_result": _result(env.dispatch(lookup(who), call))})


def set_key(env, origin, *, new: dict) -> None:
    old = _require_key(env, origin)
    env.set("Sudo", "Key", lookup(new))
    env.deposit_event("Sudo", "KeyChanged", {"old_sudoer": old})


CALLS = {
    ("Sudo", "sudo"): sudo,
    ("Sudo", "sudo_unchecked_weight"): sudo,
    ("Sudo", "sudo_as"): sudo_as,
    ("Sudo", "set_key"): set_key,
}
