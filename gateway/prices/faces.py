"""The *face*: what a shelf label for a SKU shows at an instant — its rule as one SQL text and
its values. :class:`gateway.prices.book.PriceBook` is the one that runs it (and the label
planner embeds it through the book, set-based); nothing else decides what a SKU shows.

A face is canonical JSON built by SQLite — price, name, unit price, the promotion in force with
its window and its reference ("was") price — and the renderer draws exactly that: nothing is
added on the way, so the label pipeline, ``label preview``, ``label show`` and ``storegw
prices`` cannot disagree.

Promotions overlap by design; at any instant the one from the latest batch version wins (then
the latest start), and a cancelled promotion is gone. A promotion's face keeps the unit price
(98/6/EC): that of its price — HQ's ``unit_price`` on the promotion, or else derived from the
regular price and unit price by the SQL function ``promotional_unit_price``
(:mod:`gateway.prices.unit_price`, registered on every connection).

A "was" price (HQ's ``reference_price`` or the stored prior price,
:mod:`gateway.prices.prior_price`) is on the face only when it is above the promotion's price:
one that is not would announce a reduction that is none. Until the prior price a face needs is
worked out (between a batch's commit and the next) the face is not *ready*.

A face changes only at a *boundary*: a live promotion's start or end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "BOUNDARIES",
    "PRECEDENCE",
    "SKU_FACES",
    "ShelfFace",
    "ShelfPrice",
    "WasPrice",
    "faces_sql",
    "next_boundary_sql",
]

WasPrice = Literal["hq", "lowest_30_days"]

#: Of the promotions in force at an instant, the first in this order wins.
PRECEDENCE = "version DESC, effective_from DESC"


def faces_sql(subjects: str) -> str:
    """Faces at ?1 of ``subjects`` (rows of ``label``, ``sku``), which may use ``wanted_skus``
    (?2, a JSON array of SKUs, NULL: any) and ``wanted_labels`` (?3, likewise labels); ?4 is
    the ``was_price`` setting. A SKU without a price shows "price unavailable" whatever its
    promotions; ``ready`` is false while the prior price the face needs is being worked out.
    Columns: label, sku, face, version, ready.
    """
    return f"""
WITH
  wanted_skus AS (SELECT value AS sku FROM json_each(coalesce(?2, '[]'))),
  wanted_labels AS (SELECT value AS label FROM json_each(coalesce(?3, '[]'))),
  subjects AS ({subjects}),
  promo AS (
    SELECT sku, id, price, currency, reference_price, prior_price, reduction_from,
      unit_price, effective_from, effective_to, version,
      row_number() OVER (PARTITION BY sku ORDER BY {PRECEDENCE}) AS rn
    FROM promotions
    WHERE cancelled_version IS NULL AND effective_from <= ?1 AND effective_to > ?1
      AND (?2 IS NULL OR sku IN (SELECT sku FROM wanted_skus))
  )
SELECT s.label AS label, s.sku AS sku,
  CASE WHEN p.sku IS NULL THEN json_object('sku', s.sku, 'price', NULL)
       WHEN pr.id IS NULL THEN json_object(
         'sku', s.sku, 'name', p.name, 'price', p.price, 'currency', p.currency,
         'unit_price', p.unit_price, 'unit', p.unit)
       ELSE json_object(
         'sku', s.sku, 'name', p.name, 'price', pr.price, 'currency', pr.currency,
         'unit_price', CASE WHEN p.unit IS NOT NULL THEN coalesce(pr.unit_price,
           promotional_unit_price(pr.price, p.price,
             CASE WHEN pr.currency = p.currency THEN p.unit_price END)) END,
         'unit', p.unit,
         'reference_price', (SELECT was FROM (SELECT coalesce(pr.reference_price,
           CASE WHEN ?4 = 'lowest_30_days' THEN pr.prior_price END) AS was)
           WHERE money_above(was, pr.price)),
         'promotion', pr.id, 'promotion_from', pr.effective_from,
         'promotion_until', pr.effective_to)
  END AS face,
  CASE WHEN p.sku IS NULL THEN 0 ELSE coalesce(pr.version, p.version) END AS version,
  NOT (p.sku IS NOT NULL AND pr.id IS NOT NULL AND pr.reference_price IS NULL
    AND ?4 = 'lowest_30_days' AND pr.reduction_from IS NULL) AS ready
FROM subjects s
LEFT JOIN price_book p ON p.sku = s.sku
LEFT JOIN promo pr ON pr.sku = s.sku AND pr.rn = 1
"""  # noqa: S608 - constant fragments


#: Faces of the SKUs in ?2 (a JSON array) at ?1, bound or not (label NULL; ?3 unused, NULL);
#: ?4 the ``was_price`` setting.
SKU_FACES = faces_sql("SELECT DISTINCT NULL AS label, sku FROM wanted_skus")


def _starts_and_ends(condition: Callable[[str], str]) -> str:
    """The boundaries (columns at, sku) of the live promotions whose edge (start or end
    column) meets ``condition``."""
    return (
        "SELECT effective_from AS at, sku FROM promotions "  # noqa: S608 - constant fragments
        f"WHERE cancelled_version IS NULL AND {condition('effective_from')} "
        "UNION ALL SELECT effective_to AS at, sku FROM promotions "
        f"WHERE cancelled_version IS NULL AND {condition('effective_to')}"
    )


#: The boundaries in (?1, ?2] with their SKUs (columns at, sku), in time order.
BOUNDARIES = (
    "SELECT DISTINCT at, sku FROM ("  # noqa: S608 - constant fragments
    + _starts_and_ends(lambda edge: f"{edge} > ?1 AND {edge} <= ?2")
    + ") ORDER BY at"
)


def next_boundary_sql(sku: str, after: str) -> str:
    """An SQL expression: the first boundary of SKU ``sku`` after ``after`` (both SQL
    expressions), when a face shown from ``after`` stops being correct (NULL: none)."""
    later = _starts_and_ends(lambda edge: f"sku = {sku} AND {edge} > {after}")
    return f"(SELECT min(at) FROM ({later}))"  # noqa: S608 - constant fragments


@dataclass(frozen=True, slots=True)
class ShelfFace:
    """What a label for ``sku`` shows at an instant: ``face`` (canonical JSON, what the
    planner stores and the renderer draws), the price version it comes from (0: no price)
    and whether it is ready (False while its prior price is being worked out)."""

    sku: str
    face: str
    version: int
    ready: bool = True

    def as_dict(self) -> dict[str, Any]:
        face: dict[str, Any] = json.loads(self.face)
        return face

    def shelf_price(self) -> ShelfPrice | None:
        face = self.as_dict()
        if face.get("price") is None:
            return None
        return ShelfPrice(
            sku=self.sku,
            price=face["price"],
            currency=face["currency"],
            reference_price=face.get("reference_price"),
            unit_price=face.get("unit_price"),
            unit=face.get("unit"),
            name=face.get("name"),
            version=self.version,
            promotion=face.get("promotion"),
        )


@dataclass(frozen=True, slots=True)
class ShelfPrice:
    """The prices of a face, as ``storegw prices`` lists them."""

    sku: str
    price: str
    currency: str
    reference_price: str | None
    unit_price: str | None
    unit: str | None
    name: str | None
    version: int
    promotion: str | None = None  # id of the promotion in force, if any

    def as_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "price": self.price,
            "currency": self.currency,
            "reference_price": self.reference_price,
            "unit_price": self.unit_price,
            "unit": self.unit,
            "name": self.name,
            "version": self.version,
            "promotion": self.promotion,
        }
