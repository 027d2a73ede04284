"""The price book: the one owner of ``price_book``, ``price_history``, ``promotions`` and
``promotion_history``, and of the question "what does a label for SKU X show at instant T".

Every change to those tables goes through :class:`PriceBook`: the price downlink hands it a
version's items, deletions, promotions and cancellations and commits the statements it returns
in the version's own transaction (set-based: a 50 000-item list is two statements over one JSON
array, whatever its size); the prior prices and the retention are its own. Nothing else writes
them (``tests/prices/test_book_owner.py``).

What a SKU shows — its *face* — is the rule of :mod:`gateway.prices.faces`, which the book runs
for one SKU or many (``label preview``, ``storegw prices``, ``label show``) and hands to the
label planner as SQL to embed (:meth:`PriceBook.faces_of`, :meth:`PriceBook.face_params`) so
that 60 000 labels are planned in one statement; the promotion boundaries, when a face changes,
come from here too.

**Prior price** (:mod:`gateway.prices.prior_price`): worked out per promotion and stored
(``promotions.prior_price``, ``reduction_from``) after every price batch, for the live
promotions of the SKUs the batch touched; faces read it from there. A change of the prior price
alone (a price applied before a scheduled sale begins, an earlier sale cancelled before it ran)
therefore changes the face like a price change does: re-planned, re-rendered, pre-rendered
flips included. Until it is worked out (between the batch's commit and the next) the face is
not *ready*, and the planner leaves the label's job as it is.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from gateway.clock import isoformat_utc
from gateway.prices import _book_sql as sql
from gateway.prices.batch import Promotion
from gateway.prices.faces import (
    BOUNDARIES,
    SKU_FACES,
    ShelfFace,
    ShelfPrice,
    WasPrice,
    faces_sql,
    next_boundary_sql,
)
from gateway.prices.prior_price import PRIOR_PRICE_DAYS, AppliedRevision, BasePrice, prior_price
from gateway.store.database import Database

__all__ = ["FaceParams", "ItemRow", "PriceBook", "ShelfFace", "ShelfPrice", "WasPrice"]

Statement = tuple[str, Sequence[Any]]

#: The parameters ?1 to ?4 of a face query (:meth:`PriceBook.face_params`).
FaceParams = tuple[str, str | None, str | None, WasPrice]

#: An item as the book stores it: sku, price, currency, unit_price, unit, name, reference_price.
ItemRow = tuple[str, str, str, str | None, str | None, str | None, str | None]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


class PriceBook:
    """``was_price`` says where a promotion's reference ("was") price comes from: only HQ's
    value (``hq``), or HQ's value else the prior price (``lowest_30_days``). With neither, a
    promotion shows no "was" price — never an invented one."""

    def __init__(self, database: Database, *, was_price: WasPrice = "hq") -> None:
        self._db = database
        self.was_price: WasPrice = was_price

    async def head_version(self) -> int:
        row = await self._db.fetchone("SELECT value FROM meta WHERE key = 'price_head'")
        return int(row["value"]) if row is not None else 0

    # --- faces --------------------------------------------------------------------------

    async def faces(self, skus: Collection[str], at: datetime) -> dict[str, ShelfFace]:
        """The faces of ``skus`` at ``at`` (every SKU named gets one, priced or not)."""
        rows = await self._db.fetchall(
            SKU_FACES,
            (isoformat_utc(at), json.dumps(sorted(set(skus))), None, self.was_price),
        )
        return {
            str(r["sku"]): ShelfFace(
                str(r["sku"]), str(r["face"]), int(r["version"]), bool(r["ready"])
            )
            for r in rows
        }

    async def face(self, sku: str, at: datetime) -> ShelfFace:
        """What a label for ``sku`` shows at ``at``."""
        return (await self.faces([sku], at))[sku]

    async def shelf_price(self, sku: str, at: datetime) -> ShelfPrice | None:
        """The prices a label for ``sku`` shows at ``at`` (None: the SKU has no price)."""
        return (await self.face(sku, at)).shelf_price()

    @staticmethod
    def faces_of(subjects: str) -> str:
        """The face query of ``subjects`` (an SQL select of ``label, sku``) for another owner's
        statement to embed, set-based (columns label, sku, face, version, ready); its
        parameters are :meth:`face_params`. ``subjects`` may narrow itself with the CTEs
        ``wanted_skus`` (?2) and ``wanted_labels`` (?3)."""
        return faces_sql(subjects)

    def face_params(
        self,
        at: datetime | str,
        *,
        skus: Collection[str] | None = None,
        labels: Collection[str] | None = None,
    ) -> FaceParams:
        """The parameters ?1 to ?4 of a face query: the instant, the SKUs and labels wanted
        (None: any) and where "was" prices come from."""
        return (
            at if isinstance(at, str) else isoformat_utc(at),
            None if skus is None else json.dumps(sorted(skus)),
            None if labels is None else json.dumps(sorted(labels)),
            self.was_price,
        )

    async def boundaries(self, after: datetime, until: datetime) -> list[tuple[str, set[str]]]:
        """The instants in (``after``, ``until``] at which faces change (a live promotion
        starts or ends), in time order, each with the SKUs whose face changes then."""
        rows = await self._db.fetchall(BOUNDARIES, (isoformat_utc(after), isoformat_utc(until)))
        boundaries: dict[str, set[str]] = {}
        for row in rows:
            boundaries.setdefault(str(row["at"]), set()).add(str(row["sku"]))
        return sorted(boundaries.items())

    @staticmethod
    def next_boundary_of(sku: str, after: str) -> str:
        """An SQL expression for another owner's statement: the first instant after ``after``
        at which the face of ``sku`` changes (NULL: none); both are SQL expressions."""
        return next_boundary_sql(sku, after)

    async def unpriced(self, skus: Collection[str]) -> set[str]:
        """Those of ``skus`` without a price (their labels show "price unavailable")."""
        rows = await self._db.fetchall(
            "SELECT value AS sku FROM json_each(?) WHERE value NOT IN (SELECT sku FROM price_book)",
            (json.dumps(sorted(skus)),),
        )
        return {str(r["sku"]) for r in rows}

    async def promotion_skus(self, ids: Collection[str]) -> set[str]:
        """The SKUs of the promotions ``ids`` (cancelled ones too, until pruned)."""
        rows = await self._db.fetchall(
            "SELECT sku FROM promotions WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(ids)),),
        )
        return {str(r["sku"]) for r in rows}

    # --- changing the book ----------------------------------------------------------------

    def version_statements(
        self,
        *,
        version: int,
        full: bool,
        items: str,
        exact: Sequence[ItemRow],
        listed: Collection[str],
        deletes: Sequence[str],
        promotions: Sequence[Promotion],
        cancels: Sequence[str],
        now: datetime,
    ) -> list[Statement]:
        """The statements that apply price ``version`` to the book, for the caller to commit in
        the version's transaction. ``items`` is a JSON array of :data:`ItemRow` (every item
        listed whose text holds no NUL character; those are in ``exact``), ``listed`` every
        SKU of the version (a ``full`` one removes the others), ``deletes`` the SKUs a delta
        removes. The history records what changed; the prior prices of the promotions this
        may change are worked out again (:meth:`settle_prior_prices`, after the commit)."""
        now_text = isoformat_utc(now)
        statements: list[Statement] = []
        if full:
            every = json.dumps(sorted(listed))
            statements += [
                (sql.HISTORY_DELETE_MISSING, (version, now_text, every)),
                (sql.DELETE_MISSING, (every,)),
            ]
        for sku in deletes:
            statements += [(sql.HISTORY_DELETE, (sku, version, now_text)), (sql.DELETE, (sku,))]
        if items != "[]":
            statements += [
                (sql.HISTORY_SET, (version, now_text, items)),
                (sql.UPSERT_BOOK, (version, now_text, items)),
            ]
        for r in exact:
            statements += [
                (sql.HISTORY_SET_ONE, (r[0], version, r[1], r[2], r[6], now_text)),
                (sql.UPSERT_ONE, (*r, version, now_text)),
            ]
        statements += [(sql.UPSERT_PROMOTION, _promotion_row(p, version)) for p in promotions]
        statements += [(sql.CANCEL_PROMOTION, (pid, version)) for pid in cancels]
        touched = None if full else {*listed, *deletes, *(p.sku for p in promotions)}
        return statements + self._revision_statements(
            version=version, promotions=promotions, cancels=cancels, skus=touched, now=now_text
        )

    @staticmethod
    def _revision_statements(
        *,
        version: int,
        promotions: Sequence[Promotion],
        cancels: Sequence[str],
        skus: Collection[str] | None,
        now: str,
    ) -> list[Statement]:
        """The promotions' revisions into the history (the ones they replace, and the
        cancelled ones, stop now), and the prior prices to work out again — of the live
        promotions of ``skus`` (None: all) and of the cancelled ones' SKUs."""
        statements: list[Statement] = []
        for promotion in promotions:
            statements += [
                (sql.END_REVISION, (promotion.id, now)),
                (
                    sql.ADD_REVISION,
                    (
                        promotion.id,
                        version,
                        promotion.sku,
                        promotion.price,
                        promotion.currency,
                        isoformat_utc(promotion.effective_from),
                        isoformat_utc(promotion.effective_to),
                        int(promotion.progressive),
                        now,
                    ),
                ),
            ]
        statements += [(sql.END_REVISION, (pid, now)) for pid in cancels]
        stale = (
            now,
            None if skus is None else json.dumps(sorted(skus)),
            json.dumps(sorted(cancels)),
        )
        statements.append((sql.PRIOR_STALE, stale))
        return statements

    async def settle_prior_prices(self) -> set[str]:
        """Work out the prior prices not known yet (one read of the history for all of them,
        one transaction); returns the SKUs whose promotions got one."""
        pending = await self._db.fetchall(
            "SELECT id, version, sku, currency, effective_from FROM promotions "
            "WHERE reduction_from IS NULL AND cancelled_version IS NULL"
        )
        if not pending:
            return set()
        skus = sorted({str(r["sku"]) for r in pending})
        wanted = json.dumps(skus)
        history: dict[str, list[BasePrice]] = {sku: [] for sku in skus}
        for row in await self._db.fetchall(
            "SELECT sku, change, price, currency, at FROM price_history "
            "WHERE sku IN (SELECT value FROM json_each(?)) ORDER BY sku, at, version",
            (wanted,),
        ):
            deleted = row["change"] != "set"
            history[str(row["sku"])].append(
                BasePrice(
                    _at(row["at"]),
                    None if deleted else row["price"],
                    None if deleted else row["currency"],
                )
            )
        revisions: dict[str, list[AppliedRevision]] = {sku: [] for sku in skus}
        for row in await self._db.fetchall(sql.REVISIONS, (wanted,)):
            start = max(_at(row["effective_from"]), _at(row["applied_at"]))
            end = _at(row["effective_to"])
            if row["ended_at"] is not None:
                end = min(end, _at(row["ended_at"]))
            if start < end:
                revisions[str(row["sku"])].append(
                    AppliedRevision(
                        str(row["id"]),
                        int(row["version"]),
                        str(row["price"]),
                        str(row["currency"]),
                        start,
                        end,
                        bool(row["progressive"]),
                    )
                )
        statements: list[Statement] = []
        for row in pending:
            sku = str(row["sku"])
            price, began = prior_price(
                history[sku],
                revisions[sku],
                promotion=str(row["id"]),
                version=int(row["version"]),
                currency=str(row["currency"]),
                starts=_at(row["effective_from"]),
            )
            statements.append(
                (sql.SET_PRIOR, (price, isoformat_utc(began), row["id"], row["version"]))
            )
        await self._db.submit_atomic(statements)
        return set(skus)

    async def prune_statements(self, *, now: datetime, keep: timedelta) -> list[Statement]:
        """Forget history older than ``keep``, except what a prior price may still need (the
        30 days before the earliest live reduction) and the price in force at the cut; and
        promotions that ended (or were cancelled and had begun) more than ``keep`` ago."""
        row = await self._db.fetchone(
            "SELECT min(coalesce(reduction_from, effective_from)) AS began FROM promotions "
            "WHERE cancelled_version IS NULL AND effective_to > ?",
            (isoformat_utc(now),),
        )
        window = timedelta(days=PRIOR_PRICE_DAYS)
        cutoff = min(now - keep, now - window)
        if row is not None and row["began"] is not None:
            cutoff = min(cutoff, _at(row["began"]) - window)
        cut = isoformat_utc(cutoff)
        return [
            (sql.PRUNE_BASE, (cut,)),
            (sql.PRUNE_DELETED, (cut,)),
            (sql.PRUNE_REVISIONS, (cut,)),
            (sql.PRUNE_PROMOTIONS, (isoformat_utc(now - keep),)),
        ]

    # --- listing ------------------------------------------------------------------------

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
        faces = await self.faces(skus, at) if skus else {}
        prices = [shelf.as_dict() for s in skus if (shelf := faces[s].shelf_price()) is not None]
        scheduled = [
            dict(r) | {"progressive": bool(r["progressive"])}
            for r in await self._db.fetchall(
                "SELECT id, sku, price, currency, reference_price, effective_from, effective_to, "
                "version, progressive, prior_price, reduction_from FROM promotions "
                "WHERE cancelled_version IS NULL AND effective_to > ? "
                "AND (? IS NULL OR sku = ?) ORDER BY effective_from, sku LIMIT ?",
                (isoformat_utc(at), sku, sku, limit),
            )
        ]
        result: dict[str, Any] = {
            "head_version": await self.head_version(),
            "at": isoformat_utc(at),
            "was_price": self.was_price,
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


def _promotion_row(promotion: Promotion, version: int) -> tuple[Any, ...]:
    return (
        promotion.id,
        promotion.sku,
        promotion.price,
        promotion.currency,
        promotion.reference_price,
        isoformat_utc(promotion.effective_from),
        isoformat_utc(promotion.effective_to),
        version,
        int(promotion.progressive),
        promotion.unit_price,
    )
