"""Functions the gateway's SQL calls, registered on every connection (deterministic): what
SQLite cannot do itself, such as decimal arithmetic on money strings (its numbers are floats).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.prices.unit_price import money_above, promotional_unit_price

__all__ = ["SQL_FUNCTIONS"]

#: (name, number of arguments, function)
SQL_FUNCTIONS: tuple[tuple[str, int, Callable[..., Any]], ...] = (
    # The unit price of a promotional price: (price, regular price, regular unit price).
    ("promotional_unit_price", 3, promotional_unit_price),
    # Whether a money string is above another, exactly: (amount, other) → 1 or 0.
    ("money_above", 2, money_above),
)
