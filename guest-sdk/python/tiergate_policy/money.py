"""Exact amounts: the contract's decimals as `decimal.Decimal`, never float."""

from __future__ import annotations

import re
from decimal import (
    Clamped,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    Subnormal,
    Underflow,
)

__all__ = ["MONEY", "PositiveAmount", "parse_decimal"]

# The contract's grammar: an optional `-`, digits, optionally `.` and digits.
_GRAMMAR = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_MAX_SCALE = 28
_MAX_DIGITS = 29

# Arithmetic on money in a policy runs in this context: wide enough for any
# sum of contract decimals, and any result that would be rounded raises
# instead (the host then applies the tenant's failure tier), so no amount is
# ever silently approximated.
MONEY = Context(
    prec=60,
    traps=[
        Inexact,
        Rounded,
        InvalidOperation,
        DivisionByZero,
        Overflow,
        Underflow,
        Subnormal,
        Clamped,
    ],
)


def parse_decimal(text: str) -> Decimal:
    """An exact decimal in the contract's grammar (`89.00`, `0.02`, `5000`).

    Refuses exponents, `+`, spaces, `NaN` and anything outside the 96-bit
    range the host keeps (28 digits after the point, 29 significant), so a
    policy reads exactly what the host sent and nothing else.
    """
    if not isinstance(text, str) or _GRAMMAR.fullmatch(text) is None:
        raise ValueError(
            f"invalid amount {text!r}: write digits with an optional `.` and "
            "more digits, such as 50.00"
        )
    whole, _, fraction = text.lstrip("-").partition(".")
    if len(fraction) > _MAX_SCALE:
        raise ValueError(
            f"invalid amount {text!r}: more than {_MAX_SCALE} digits after the point"
        )
    significant = (whole + fraction).lstrip("0")
    if len(significant) > _MAX_DIGITS:
        raise ValueError(
            f"invalid amount {text!r}: more than {_MAX_DIGITS} significant digits"
        )
    return Decimal(text)


class PositiveAmount(Decimal):
    """A decimal greater than zero: a limit, a ceiling, a budget.

    Read from configuration as a string or an exact number; zero and negative
    amounts are refused when the document is read. It keeps the scale it was
    written with, so messages show a limit as the tenant wrote it
    (`PositiveAmount("50.00")` prints `50.00`).
    """

    __slots__ = ()

    def __new__(cls, value: str | int | Decimal) -> PositiveAmount:
        if isinstance(value, bool):
            raise ValueError("an amount here must be a decimal, not a boolean")
        if isinstance(value, str):
            amount = parse_decimal(value)
        elif isinstance(value, (int, Decimal)):
            amount = Decimal(value)
            if not amount.is_finite():
                raise ValueError(f"an amount here must be finite, not {value}")
        else:
            raise ValueError(
                f"an amount here must be a decimal string or number, not {type(value).__name__}"
            )
        if amount <= 0:
            raise ValueError(f"an amount here must be positive, not {amount}")
        return super().__new__(cls, amount)

    def __repr__(self) -> str:
        return f"PositiveAmount({str(self)!r})"
