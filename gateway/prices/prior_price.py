"""The EU prior price of a promotion (Directive 98/6/EC art. 6a), pure: worked out from the
price history, no I/O. :class:`gateway.prices.book.PriceBook` feeds it and stores the result.

A promotion without HQ's ``reference_price`` shows, with ``[downlink] was_price =
"lowest_30_days"``, the lowest price *applied* in the 30 days before its reduction began: base
prices and earlier promotions alike, from the store's own history (``price_history``;
``promotion_history`` keeps every revision of a promotion and when it stopped, so a sale counts
for the time it really ran, also when it was cancelled or changed later). The reduction begins
when the promotion's price is first applied; the promotion sent again at the same price (say,
extended) continues it, at another price it is a new reduction. A promotion HQ flags
``progressive`` continues the reduction in force right before it, if that one runs up to it and
is not deeper: the prior price from before the first step stays (EU guidance 2021/C 526/02).

What was applied before now cannot change, so a promotion's prior price depends only on the
history before its reduction began, never on today's date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

__all__ = ["PRIOR_PRICE_DAYS", "AppliedRevision", "BasePrice", "prior_price"]

PRIOR_PRICE_DAYS = 30


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
