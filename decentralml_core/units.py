"""Amounts as people type and read them: UNIT (the chain's token, 12 decimals) or planck (its smallest part).

The chain counts planck; people think in UNIT. ``parse_amount("1.5")`` is 1.5 UNIT; ``"1.5 UNIT"``,
``"1.5unit"`` say so explicitly and ``"1500000000000 planck"`` gives planck. Anything else — a
negative, more than 12 decimals, more than the chain's u128 holds — is refused with the reason,
before anything is published or signed.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

DECIMALS = 12
UNIT = 10**DECIMALS
MAX_PLANCK = 2**128 - 1
MIN_FEE_BALANCE = 10**10
"""0.01 UNIT: an account below this cannot be counted on to pay a call's fee (a devnet extrinsic costs
~10⁸–10⁹ planck); agents and their checks wait for or ask for at least this."""
_AMOUNT = re.compile(r"\s*([0-9][0-9_,]*(?:\.[0-9_]*)?|\.[0-9_]+)\s*(unit|planck)?\s*", re.IGNORECASE)


class AmountError(ValueError):
    """Not an amount the chain can carry; the message says what was typed and what is accepted."""


def parse_amount(text: str) -> int:
    """Planck for ``text``: a number of UNIT (the default) or of planck (``… planck``)."""
    match = _AMOUNT.fullmatch(str(text))
    if match is None:
        raise AmountError(f"{text!r} is not an amount: give UNIT (e.g. 1.5) or planck (e.g. 1500000000000planck)")
    number, unit = match.group(1).replace("_", "").replace(",", ""), (match.group(2) or "unit").lower()
    try:
        value = Decimal(number) * (UNIT if unit == "unit" else 1)
    except InvalidOperation:
        raise AmountError(f"{text!r} is not an amount") from None
    if value != value.to_integral_value():
        smallest = "an integer number of planck" if unit == "planck" else f"at most {DECIMALS} decimals"
        raise AmountError(f"{text!r} is finer than the chain counts: give {smallest}")
    if value > MAX_PLANCK:
        raise AmountError(f"{text!r} is more than the chain can hold")
    return int(value)


def format_units(planck: int) -> str:
    """``1.5 UNIT`` for 1_500_000_000_000 planck: exact, no trailing zeros."""
    whole, part = divmod(int(planck), UNIT)
    fraction = f"{part:0{DECIMALS}d}".rstrip("0")
    return f"{whole:,}{'.' + fraction if fraction else ''} UNIT"
