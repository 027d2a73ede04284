"""A label's face on the labels' side: the planned face (canonical JSON from the price book,
:mod:`gateway.prices.faces`) as the renderer's input, and the blank face of an unbound label.

Jobs, scheduled flips, ``label show`` and ``label preview`` all carry the planned JSON and turn
it into a :class:`LabelFace` with :func:`face_to_label` only — the one conversion, which adds
nothing: how money and dates are written is the renderer's (the store's locale and time zone).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

__all__ = ["BLANK_FACE", "LabelFace", "face_to_label"]

#: The planned face of an unbound label: a neutral "not in use" face (no SKU, no price). Its
#: jobs carry the SKU "" and price version 0.
BLANK_FACE = '{"sku":"","blank":true}'


@dataclass(frozen=True, slots=True)
class LabelFace:
    """What one label should show (from the price book at an instant)."""

    sku: str
    name: str | None
    price: str | None  # None: no price known for the SKU
    currency: str = "EUR"
    unit_price: str | None = None  # of ``price``: on a promotion, of the promotional price
    unit: str | None = None
    reference_price: str | None = None  # shown struck through ("was"), promotions only
    promotion: str | None = None  # id of the promotion in force
    promotion_until: datetime | None = None  # its end (aware), shown in the store's locale
    blank: bool = False  # an unbound label: "not in use", nothing of the SKU or price

    @classmethod
    def not_in_use(cls) -> LabelFace:
        """The neutral face of a label no SKU is bound to."""
        return cls(sku="", name=None, price=None, blank=True)


def face_to_label(face_json: str) -> LabelFace:
    """A planned face (canonical JSON from the price book) as the renderer's input; the blank
    face of an unbound label is the "not in use" face."""
    face = json.loads(face_json)
    if face.get("blank"):
        return LabelFace.not_in_use()
    until = face.get("promotion_until")
    return LabelFace(
        sku=str(face["sku"]),
        name=face.get("name"),
        price=face.get("price"),
        currency=face.get("currency") or "EUR",
        unit_price=face.get("unit_price"),
        unit=face.get("unit"),
        reference_price=face.get("reference_price"),
        promotion=face.get("promotion"),
        promotion_until=datetime.fromisoformat(until) if until else None,
    )
