"""Weight units to grams, and the plausibility bound that keeps absurd values out of stock."""

from __future__ import annotations

import math
from enum import StrEnum

__all__ = ["GRAMS_PER_UNIT", "WeightUnit", "is_plausible", "to_grams", "unit_from_text"]


class WeightUnit(StrEnum):
    MG = "mg"
    G = "g"
    KG = "kg"
    T = "t"
    CT = "ct"
    OZ = "oz"
    LB = "lb"


GRAMS_PER_UNIT: dict[WeightUnit, float] = {
    WeightUnit.MG: 0.001,
    WeightUnit.G: 1.0,
    WeightUnit.KG: 1000.0,
    WeightUnit.T: 1_000_000.0,
    WeightUnit.CT: 0.2,
    WeightUnit.OZ: 28.349523125,
    WeightUnit.LB: 453.59237,
}

# How scale heads spell their units on the wire (case-insensitive).
_SPELLINGS: dict[str, WeightUnit] = {
    "mg": WeightUnit.MG,
    "g": WeightUnit.G,
    "gr": WeightUnit.G,
    "kg": WeightUnit.KG,
    "t": WeightUnit.T,
    "ct": WeightUnit.CT,
    "oz": WeightUnit.OZ,
    "lb": WeightUnit.LB,
    "lbs": WeightUnit.LB,
}


def unit_from_text(text: str) -> WeightUnit | None:
    """The unit a device wrote (``"kg"``, ``" g"``, ``"LB"``), or None if it is no weight unit
    (count mode ``pcs``, percent, an unknown custom unit)."""
    return _SPELLINGS.get(text.strip().lower())


def to_grams(value: float, unit: WeightUnit) -> float:
    return value * GRAMS_PER_UNIT[unit]


def is_plausible(grams: float | None, max_grams: float) -> bool:
    """False for NaN, infinities and magnitudes beyond what the installation can carry: such a
    value is a fault (a corrupt register, a mis-set decimal point), never stock."""
    if grams is None:
        return True
    return math.isfinite(grams) and abs(grams) <= max_grams
