"""The price book as the rest of the gateway reads it: what a shelf label for a SKU shows at an
instant (its *face*), the promotions, the price history, and each promotion's prior price.

**The face has one owner, this module.** :data:`FACES` (the faces of bound labels, set-based:
the label planner) and :data:`SKU_FACES` (SKUs, bound or not: ``label preview``, ``storegw
prices``) are one SQL text, and ``label show`` runs it too. A face is canonical JSON built by
SQLite — price, name, unit price, the promotion in force with its window and its reference
("was") price — and the renderer draws exactly that: nothing is added on the way, so the
pipeline, the preview and ``label show`` cannot disagree.

Promotions overlap by design; at any instant the one from the latest batch version wins (then
the latest start), and a cancelled promotion is gone. A promotion's face keeps the unit price
(98/6/EC): that of its price — HQ's ``unit_price`` on the promotion, or else derived from the
regular price and unit price by the SQL function ``promotional_unit_price``
(:mod:`gateway.prices.unit_price`, registered on every connection).

A "was" price (HQ's ``reference_price`` or the prior price below) is on the face only when it
is above the promotion's price: one that is not would announce a reduction that is none.

**Prior price** (Directive 98/6/EC art. 6a): a promotion without HQ's ``reference_price`` shows,
with ``[downlink] was_price = "lowest_30_days"``, the lowest price *applied* in the 30 days
before its reduction began: base prices and earlier promotions alike, from the store's own
history (``price_history``; ``promotion_history`` keeps every revision of a promotion and when
it stopped, so a sale counts for the time it really ran, also when it was cancelled or changed
later). The reduction begins when the promotion's price is first applied; the promotion sent
again at the same price (say, extended) continues it, at another price it is a new reduction.
A promotion HQ flags ``progressive`` continues the reduction in force right before it, if that
one runs up to it and is not deeper: the prior price from before the first step stays (EU
guidance 2021/C 526/02).

What was applied before now cannot change, so a promotion's prior price depends only on the
history before its reduction began, never on today's date. It is worked out per promotion and
stored (``promotions.prior_price``, ``reduction_from``) after every price batch, for the live
promotions of the SKUs the batch touched; faces read it from there. A change of the prior price
alone (a price applied before a scheduled sale begins, an earlier sale cancelled before it ran)
therefore changes the face like a price change does: re-planned, re-rendered, pre-rendered
flips included. Until it is worked out (between the batch's commit and the next) the face is
not *ready*, and the planner leaves the label's job as it is.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from gateway.clock import isoformat_utc
from gateway.store.database import Database

__all__ = [
    "FACES",
    "PRIOR_PRICE_DAYS",
    "SKU_FACES",
    "AppliedRevision",
    "BasePrice",
    "PriceBook",
    "ShelfFace",
    "ShelfPrice",
    "WasPrice",
    "prior_price",
]

WasPrice = Literal["hq", "lowest_30_days"]
PRIOR_PRICE_DAYS = 30

Statement = tuple[str, Sequence[Any]]

# Of the promotions in force at an instant, the first in this order wins.
_PRECEDENCE = "version DESC, effective_from DESC"


def _faces(subjects: str) -> str:
    """Faces at ?1 of ``subjects`` (rows of ``label``, ``sku``), which may use ``wanted_skus``
    (?2, a JSON array of SKUs, NULL: any) and ``wanted_labels`` (?3, likewise labels); ?4 is
    the ``was_price`` setting. A SKU without a price shows "price unavailable" whatever its
    promotions; ``ready`` is false while the prior price the face needs is being worked out.
    """
    return f"""
WITH
  wanted_skus AS (SELECT value AS sku FROM json_each(coalesce(?2, '[]'))),
  wanted_labels AS (SELECT value AS label FROM json_each(coalesce(?3, '[]'))),
  subjects AS ({subjects}),
  promo AS (
    SELECT sku, id, price, currency, reference_price, prior_price, reduction_from,
      unit_price, effective_from, effective_to, version,
      row_number() OVER (PARTITION BY sku ORDER BY {_PRECEDENCE}) AS rn
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


#: Faces of bound labels at ?1, only for the SKUs (?2) or labels (?3) given as JSON arrays
#: (NULL: every bound label); ?4 the ``was_price`` setting. Columns: label, sku, face,
#: version, ready.
FACES = _faces(
    "SELECT label, sku FROM label_bindings "
    "WHERE (?2 IS NULL OR sku IN (SELECT sku FROM wanted_skus)) "
    "AND (?3 IS NULL OR label IN (SELECT label FROM wanted_labels))"
)
#: Faces of the SKUs in ?2 (a JSON array) at ?1, bound or not (label NULL; ?3 unused, NULL);
#: ?4 the ``was_price`` setting.
SKU_FACES = _faces("SELECT DISTINCT NULL AS label, sku FROM wanted_skus")

# --- writing promotions (the price downlink's transaction) ---------------------------------

# The revision a promotion sent again or cancelled replaces stops applying now (?2).
_END_REVISION = "UPDATE promotion_history SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL"
_ADD_REVISION = (
    "INSERT OR REPLACE INTO promotion_history (id, version, sku, price, currency, "
    "effective_from, effective_to, progressive, applied_at, ended_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
)
# The live promotions of the SKUs a batch touched (?2 JSON array, NULL: all; ?3 the ids it
# cancels) get their prior price worked out again. ?1 now.
_PRIOR_STALE = """
UPDATE promotions SET prior_price = NULL, reduction_from = NULL
WHERE cancelled_version IS NULL AND effective_to > ?1 AND (?2 IS NULL
  OR sku IN (SELECT value FROM json_each(?2))
  OR sku IN (SELECT sku FROM promotions WHERE id IN (SELECT value FROM json_each(?3))))
"""
# History before the cut ?1 goes, except the price in force at the cut (a SKU deleted by
# then has none: its "deleted" row goes too); so do revisions that stopped before it.
_PRUNE_BASE = (
    "DELETE FROM price_history WHERE at < ?1 AND version < (SELECT max(version) "
    "FROM price_history h WHERE h.sku = price_history.sku AND h.at < ?1)"
)
_PRUNE_DELETED = "DELETE FROM price_history WHERE at < ? AND change = 'delete'"
_PRUNE_REVISIONS = (
    "DELETE FROM promotion_history WHERE min(effective_to, coalesce(ended_at, effective_to)) < ?"
)
# The revisions of the SKUs in ?1 (a JSON array), by SKU in precedence order.
_REVISIONS = f"""
SELECT id, version, sku, price, currency, effective_from, effective_to, progressive, applied_at,
  ended_at
FROM promotion_history WHERE sku IN (SELECT value FROM json_each(?1))
ORDER BY sku, {_PRECEDENCE}
"""  # noqa: S608 - constant fragments
_SET_PRIOR = (
    "UPDATE promotions SET prior_price = ?1, reduction_from = ?2 "
    "WHERE id = ?3 AND version = ?4 AND reduction_from IS NULL"
)


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


# --- the prior price (pure) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BasePrice:
    """A row of the price history: from ``at`` the SKU's base price (None: deleted)."""

    at: datetime
    price: str | None
    currency: str | None


@dataclass(frozen=True, slots=True)
class AppliedRevision:
    """A promotion revision as applied: its price held over [start, end) unless a promotion
    of higher precedence held at the same time."""

    promotion: str
    version: int
    price: str
    currency: str
    start: datetime
    end: datetime
    progressive: bool


@dataclass(slots=True)
class _Run:
    """A stretch of time with one applied price: one promotion's, or the base price."""

    start: datetime
    end: datetime | None
    price: str | None
    currency: str | None
    promotion: str | None
    progressive: bool
    revisions: set[tuple[str, int]] = field(default_factory=set)


def _applied_runs(history: Sequence[BasePrice], revisions: Sequence[AppliedRevision]) -> list[_Run]:
    """The SKU's applied price over time, as runs of one price. ``history`` in time order,
    ``revisions`` in precedence order (the first one holding at an instant wins)."""
    instants = sorted({b.at for b in history} | {t for r in revisions for t in (r.start, r.end)})
    runs: list[_Run] = []
    base: BasePrice | None = None
    next_base = 0
    for index, instant in enumerate(instants):
        while next_base < len(history) and history[next_base].at <= instant:
            base, next_base = history[next_base], next_base + 1
        end = instants[index + 1] if index + 1 < len(instants) else None
        revision = next((r for r in revisions if r.start <= instant < r.end), None)
        key: tuple[str | None, str | None, str | None]
        if revision is not None:
            key = (revision.price, revision.currency, revision.promotion)
            progressive = revision.progressive
        elif base is not None:
            key, progressive = (base.price, base.currency, None), False
        else:
            key, progressive = (None, None, None), False
        last = runs[-1] if runs else None
        if last is not None and (last.price, last.currency, last.promotion) == key:
            last.end = end
            last.progressive = last.progressive or progressive
        else:
            last = _Run(instant, end, key[0], key[1], key[2], progressive)
            runs.append(last)
        if revision is not None:
            last.revisions.add((revision.promotion, revision.version))
    return runs


def _continues(earlier: _Run, later: _Run) -> bool:
    """Whether ``later`` (a progressive step) continues the reduction of ``earlier``."""
    return (
        earlier.promotion is not None
        and earlier.price is not None
        and later.price is not None
        and earlier.currency == later.currency
        and Decimal(earlier.price) >= Decimal(later.price)
    )


def prior_price(
    history: Sequence[BasePrice],
    revisions: Sequence[AppliedRevision],
    *,
    promotion: str,
    version: int,
    currency: str,
    starts: datetime,
    days: int = PRIOR_PRICE_DAYS,
) -> tuple[str | None, datetime]:
    """(the lowest price applied in ``currency`` during the ``days`` before the reduction of
    revision (``promotion``, ``version``) began, when it began). The reduction begins where
    the revision's price is first applied — at ``starts`` if it never is — or, for a
    progressive step, where the reduction it continues began. None: no price known then."""
    runs = _applied_runs(history, revisions)
    first = next((i for i, run in enumerate(runs) if (promotion, version) in run.revisions), None)
    began = starts
    if first is not None:
        while runs[first].progressive and first > 0 and _continues(runs[first - 1], runs[first]):
            first -= 1
        began = runs[first].start
    window_start = began - timedelta(days=days)
    prices = [
        run.price
        for run in runs
        if run.price is not None
        and run.currency == currency
        and run.start < began
        and (run.end is None or run.end > window_start)
    ]
    if not prices:
        return None, began
    return min(prices, key=Decimal), began


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

    # --- the prior price ----------------------------------------------------------------

    def promotion_statements(
        self,
        *,
        version: int,
        promotions: Sequence[Any],
        cancels: Sequence[str],
        skus: Collection[str] | None,
        now: datetime,
    ) -> list[Statement]:
        """For a batch's transaction: the promotions' revisions into the history (the ones
        they replace, and the cancelled ones, stop now), and the prior prices to work out
        again — of the live promotions of ``skus`` (None: all) and of the cancelled ones'
        SKUs. ``promotions`` are :class:`gateway.prices.batch.Promotion` values."""
        now_text = isoformat_utc(now)
        statements: list[Statement] = []
        for promotion in promotions:
            statements += [
                (_END_REVISION, (promotion.id, now_text)),
                (
                    _ADD_REVISION,
                    (
                        promotion.id,
                        version,
                        promotion.sku,
                        promotion.price,
                        promotion.currency,
                        isoformat_utc(promotion.effective_from),
                        isoformat_utc(promotion.effective_to),
                        int(promotion.progressive),
                        now_text,
                    ),
                ),
            ]
        statements += [(_END_REVISION, (pid, now_text)) for pid in cancels]
        statements.append(
            (
                _PRIOR_STALE,
                (
                    now_text,
                    None if skus is None else json.dumps(sorted(skus)),
                    json.dumps(sorted(cancels)),
                ),
            )
        )
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
        for row in await self._db.fetchall(_REVISIONS, (wanted,)):
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
                (_SET_PRIOR, (price, isoformat_utc(began), row["id"], row["version"]))
            )
        await self._db.submit_atomic(statements)
        return set(skus)

    async def prune_statements(self, *, now: datetime, keep: timedelta) -> list[Statement]:
        """Forget history older than ``keep``, except what a prior price may still need (the
        30 days before the earliest live reduction) and the price in force at the cut."""
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
            (_PRUNE_BASE, (cut,)),
            (_PRUNE_DELETED, (cut,)),
            (_PRUNE_REVISIONS, (cut,)),
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
