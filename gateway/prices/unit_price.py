"""The unit price of a promotional price (Directive 98/6/EC: the unit price goes with every
selling price, a reduced one too).

HQ sends a SKU's unit price with its regular price; a promotion carries only its price. The
quantity does not change with the price, so the promotional unit price is the promotional price
scaled as the regular one is: ``promotion * unit_price / price``, rounded half up to as many
decimals as HQ's unit price has (two at least). Without a regular unit price, or with a regular
price of zero, there is none (never an invented one).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

__all__ = ["money_above", "promotional_unit_price"]

_MONEY = re.compile(r"\d{1,12}(?:\.\d{1,6})?")  # as price batches carry it (batch.Money)


def promotional_unit_price(
    promotion_price: str, regular_price: str | None, regular_unit_price: str | None
) -> str | None:
    """``0.99`` with a regular ``1.99`` at ``7.96``/kg → ``3.96``."""
    # Also an SQL function: SQLite may hand it anything a column holds.
    if not (
        isinstance(promotion_price, str)
        and isinstance(regular_price, str)
        and isinstance(regular_unit_price, str)
    ):
        return None
    if not all(_MONEY.fullmatch(v) for v in (promotion_price, regular_price, regular_unit_price)):
        return None
    regular, unit = Decimal(regular_price), Decimal(regular_unit_price)
    if regular == 0:
        return None
    decimals = max(2, len(regular_unit_price.partition(".")[2]))
    scaled = Decimal(promotion_price) * unit / regular
    try:
        return str(scaled.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))
    except InvalidOperation:  # beyond 28 digits: no shelf has such a unit price
        return None


def money_above(amount: str | None, other: str | None) -> bool:
    """Whether the money string ``amount`` is above ``other``, exactly (False when either is
    not a price): a "was" price is shown only above the price it was reduced to."""
    if not (isinstance(amount, str) and isinstance(other, str)):
        return False
    if not (_MONEY.fullmatch(amount) and _MONEY.fullmatch(other)):
        return False
    return Decimal(amount) > Decimal(other)
