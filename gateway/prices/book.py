"""The price book as later features read it: current price per SKU, promotions resolved for an
instant, history. Promotions overlap by design; at any instant the one from the latest batch
version wins, and a cancelled promotion is gone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from gateway.clock import isoformat_utc
from gateway.store.database import Database

__all__ = ["PriceBook", "ShelfPrice"]


@dataclass(frozen=True, slots=True)
class ShelfPrice:
    """What a shelf should show for a SKU at an instant."""

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


_ACTIVE_PROMOTION = (
    "SELECT id, price, currency, reference_price, version, effective_from FROM promotions "
    "WHERE sku = ?1 AND cancelled_version IS NULL AND effective_from <= ?2 AND effective_to > ?2 "
    "ORDER BY version DESC, effective_from DESC LIMIT 1"
)


WasPrice = Literal["hq", "lowest_30_days"]


class PriceBook:
    """``was_price`` says where a promotion's reference ("was") price comes from: only HQ's
    value (``hq``), or HQ's value else the lowest price of the 30 days before the promotion
    began, from the gateway's own price history (``lowest_30_days``, EU Price Indication
    Directive art. 6a). With neither, a promotion shows no "was" price — never an invented
    one."""

    def __init__(self, database: Database, *, was_price: WasPrice = "hq") -> None:
        self._db = database
        self._was_price = was_price

    async def head_version(self) -> int:
        row = await self._db.fetchone("SELECT value FROM meta WHERE key = 'price_head'")
        return int(row["value"]) if row is not None else 0

    async def shelf_price(self, sku: str, at: datetime) -> ShelfPrice | None:
        row = await self._db.fetchone("SELECT * FROM price_book WHERE sku = ?", (sku,))
        if row is None:
            return None
        base = ShelfPrice(
            sku=sku,
            price=row["price"],
            currency=row["currency"],
            reference_price=row["reference_price"],
            unit_price=row["unit_price"],
            unit=row["unit"],
            name=row["name"],
            version=int(row["version"]),
        )
        promotion = await self._db.fetchone(_ACTIVE_PROMOTION, (sku, isoformat_utc(at)))
        if promotion is None:
            return base
        reference = promotion["reference_price"]
        if reference is None and self._was_price == "lowest_30_days":
            began = datetime.fromisoformat(promotion["effective_from"])
            reference = await self.lowest_price_before(sku, began, promotion["currency"])
        return ShelfPrice(
            sku=sku,
            price=promotion["price"],
            currency=promotion["currency"],
            reference_price=reference,
            unit_price=None,  # the base unit price does not hold for the promotional price
            unit=base.unit,
            name=base.name,
            version=int(promotion["version"]),
            promotion=promotion["id"],
        )

    async def lowest_price_before(
        self, sku: str, instant: datetime, currency: str, days: int = 30
    ) -> str | None:
        """The lowest price ``sku`` had in ``currency`` during the ``days`` before ``instant``
        (the price in force at the window's start counts), from the price history."""
        start = isoformat_utc(instant - timedelta(days=days))
        end = isoformat_utc(instant)
        rows = await self._db.fetchall(
            "SELECT price, currency FROM price_history WHERE sku = ?1 AND change = 'set' AND ("
            "(at >= ?2 AND at < ?3) OR version = (SELECT max(version) FROM price_history "
            "WHERE sku = ?1 AND at < ?2))",
            (sku, start, end),
        )
        prices = [Decimal(r["price"]) for r in rows if r["currency"] == currency and r["price"]]
        if not prices:
            return None
        lowest = min(prices)
        return next(str(r["price"]) for r in rows if r["price"] and Decimal(r["price"]) == lowest)

    async def listing(
        self, at: datetime, sku: str | None = None, limit: int = 200
    ) -> dict[str, Any]:
        """Current prices (all, or one SKU), the promotions in force or still to come, and for
        one SKU its history — what ``storegw prices`` shows."""
        skus = (
            [sku]
            if sku is not None
            else [
                str(r["sku"])
                for r in await self._db.fetchall(
                    "SELECT sku FROM price_book ORDER BY sku LIMIT ?", (limit,)
                )
            ]
        )
        prices = [p.as_dict() for s in skus if (p := await self.shelf_price(s, at)) is not None]
        scheduled = [
            dict(r)
            for r in await self._db.fetchall(
                "SELECT id, sku, price, currency, reference_price, effective_from, effective_to, "
                "version FROM promotions WHERE cancelled_version IS NULL AND effective_to > ? "
                "AND (? IS NULL OR sku = ?) ORDER BY effective_from, sku LIMIT ?",
                (isoformat_utc(at), sku, sku, limit),
            )
        ]
        result: dict[str, Any] = {
            "head_version": await self.head_version(),
            "at": isoformat_utc(at),
            "prices": prices,
            "promotions": scheduled,
            "total_skus": int(
                (await self._db.fetchone("SELECT count(*) AS n FROM price_book") or {"n": 0})["n"]
            ),
        }
        if sku is not None:
            result["history"] = [
                dict(r)
                for r in await self._db.fetchall(
                    "SELECT version, change, price, currency, reference_price, at "
                    "FROM price_history WHERE sku = ? ORDER BY version DESC LIMIT ?",
                    (sku, limit),
                )
            ]
        return result
