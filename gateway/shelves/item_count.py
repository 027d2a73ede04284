"""Turning grams into items: the one rule that decides a count or refuses to.

A change of ``grams`` on a slot whose items weigh ``unit_grams`` is ``k`` items only when

1. it is a whole number of units within the slot's tolerance: ``|grams/unit - k| <= tolerance``
   (the classic rounding test, tolerance ≈ 0.25 of a unit), and
2. no other item count could explain it: ``k`` items may weigh anywhere in
   ``k * unit * (1 ± item_spread) ± margin`` (``item_spread``: how much single items differ,
   look-alike SKUs included; ``margin``: measurement noise), and exactly one ``k`` fits.

Less than ``tolerance`` of a unit is a touch (0 items). Otherwise the change is *ambiguous*:
reported as such, never rounded into a wrong count. The second test is what keeps large
multi-item changes honest: 8 items of 108 g (864 g) are also 9 items of 96 g once the spread
allows both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["CountDecision", "decide_count"]


@dataclass(frozen=True, slots=True)
class CountDecision:
    """``items`` is the signed item count, or None when the change is ambiguous."""

    items: int | None
    ratio: float  # grams / unit_grams
    candidates: tuple[int, ...]  # every item count (unsigned) the weight could be
    confidence: float  # 1.0 exactly on a multiple, 0.5 at the tolerance's edge, 0 ambiguous


def decide_count(
    grams: float, *, unit_grams: float, tolerance: float, item_spread: float, margin_grams: float
) -> CountDecision:
    """How many items ``grams`` is (signed: negative grams are removed items)."""
    ratio = grams / unit_grams
    size = abs(grams)
    low_unit = unit_grams * (1.0 - item_spread)
    high_unit = unit_grams * (1.0 + item_spread)
    first = max(0, math.floor((size - margin_grams) / high_unit))
    last = max(first, math.ceil((size + margin_grams) / low_unit))
    candidates = tuple(
        k
        for k in range(first, last + 1)
        if k * low_unit - margin_grams <= size <= k * high_unit + margin_grams
    )
    nearest = round(abs(ratio))
    off = abs(abs(ratio) - nearest)
    if nearest == 0 and off <= tolerance and 1 not in candidates:
        return CountDecision(0, ratio, (0,), round(1.0 - 0.5 * off / tolerance, 3))  # a touch
    if off <= tolerance and candidates == (nearest,):
        items = nearest if grams >= 0 else -nearest
        confidence = round(1.0 - 0.5 * off / tolerance, 3) if tolerance > 0 else 1.0
        return CountDecision(items, ratio, candidates, confidence)
    return CountDecision(None, ratio, candidates, 0.0)
