"""The EU prior price (Directive 98/6/EC art. 6a): the lowest price *applied* in the 30 days
before a reduction began — base prices and earlier promotions alike — or, for a progressive
reduction HQ flags as such, the prior price from before its first step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.clock import FakeClock, isoformat_utc
from gateway.prices.book import PriceBook
from gateway.prices.prior_price import AppliedRevision, BasePrice, prior_price
from gateway.prices.unit_price import money_above
from gateway.store import Database
from gateway.store.migrations import MIGRATIONS
from tests.prices.support import Store, batch, item, store

SKU = "4006381333931"


@dataclass
class Days:
    """A store on a calendar: day 0 is when the test starts."""

    s: Store
    start: datetime
    version: int = 0

    def day(self, n: float) -> datetime:
        return self.start + timedelta(days=n)

    def go_to(self, n: float) -> None:
        seconds = (self.day(n) - self.s.clock.utc_now()).total_seconds()
        assert seconds >= 0, "the calendar only moves forward"
        self.s.clock.advance(seconds)

    async def push(self, items: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        self.version += 1
        kind = extra.pop("kind", "delta")
        for payload in batch(self.s.clock, self.version, items or [], kind=kind, **extra):
            await self.s.receive(payload)
        row = await self.s.db.fetchone("SELECT value FROM meta WHERE key = 'price_head'")
        assert row is not None
        assert int(row["value"]) == self.version, "batch not applied"

    def sale(self, pid: str, price: str, from_day: float, to_day: float, **extra: Any) -> Any:
        return {
            "id": pid,
            "sku": SKU,
            "price": price,
            "currency": "EUR",
            "effective_from": isoformat_utc(self.day(from_day)),
            "effective_to": isoformat_utc(self.day(to_day)),
            **extra,
        }

    async def shelf(self, n: float) -> tuple[str, str | None]:
        """(price, prior price of the promotion in force) on day ``n``; the prior price is the
        "was" price the shelf shows when it is above the price (:meth:`was`)."""
        shelf = await PriceBook(self.s.db, was_price="lowest_30_days").shelf_price(SKU, self.day(n))
        assert shelf is not None
        if shelf.promotion is None:
            return shelf.price, shelf.reference_price
        row = await self.s.db.fetchone(
            "SELECT prior_price FROM promotions WHERE id = ?", (shelf.promotion,)
        )
        assert row is not None
        prior = row["prior_price"]
        assert shelf.reference_price == (prior if money_above(prior, shelf.price) else None)
        return shelf.price, prior

    async def was(self, n: float) -> str | None:
        """The "was" price the shelf shows on day ``n``."""
        shelf = await PriceBook(self.s.db, was_price="lowest_30_days").shelf_price(SKU, self.day(n))
        assert shelf is not None
        return shelf.reference_price


@asynccontextmanager
async def calendar(tmp_path: Path) -> AsyncIterator[Days]:
    async with store(tmp_path, signed=False) as s:
        days = Days(s, s.clock.utc_now())
        await days.push([item(SKU, "2.20")], kind="full", signer=None)
        yield days


async def test_a_second_sale_shows_the_first_sales_price_as_its_prior_price(
    tmp_path: Path,
) -> None:
    async with calendar(tmp_path) as days:
        days.go_to(35)
        await days.push(
            promotions=[days.sale("a", "1.99", 40, 47), days.sale("b", "1.79", 55, 60)],
            signer=None,
        )
        assert await days.shelf(41) == ("1.99", "2.20")
        # 1.99 was applied on days 40-47, inside the 30 days before the second sale began.
        assert await days.shelf(56) == ("1.79", "1.99")
        days.go_to(56)  # the same once it is history rather than plan
        assert await days.shelf(56) == ("1.79", "1.99")


async def test_a_progressive_reduction_keeps_the_prior_price_from_before_its_first_step(
    tmp_path: Path,
) -> None:
    async with calendar(tmp_path) as days:
        days.go_to(35)
        await days.push(
            promotions=[
                days.sale("a", "1.99", 40, 47),
                days.sale("b", "1.79", 47, 54, progressive=True),
                days.sale("c", "1.49", 54, 60, progressive=True),
            ],
            signer=None,
        )
        assert await days.shelf(41) == ("1.99", "2.20")
        assert await days.shelf(50) == ("1.79", "2.20")
        assert await days.shelf(55) == ("1.49", "2.20")


async def test_progressive_holds_only_for_an_uninterrupted_growing_reduction(
    tmp_path: Path,
) -> None:
    async with calendar(tmp_path) as days:
        days.go_to(35)
        await days.push(
            promotions=[
                days.sale("a", "1.99", 40, 47),
                # a day at the full price between: a new reduction, prior from the 30 days
                days.sale("b", "1.79", 48, 54, progressive=True),
                # a smaller reduction than the step before is no progressive step either
                days.sale("c", "1.89", 54, 60, progressive=True),
            ],
            signer=None,
        )
        assert await days.shelf(50) == ("1.79", "1.99")
        assert await days.shelf(55) == ("1.89", "1.79")
        assert await days.was(55) is None  # 1.79 is no reduction of 1.89: no "was" shown


async def test_a_sale_cancelled_early_counts_for_the_days_it_ran_only(tmp_path: Path) -> None:
    async with calendar(tmp_path) as days:
        days.go_to(35)
        await days.push(
            promotions=[
                days.sale("a", "1.79", 40, 47),
                days.sale("never", "1.49", 44, 46),
                days.sale("b", "1.99", 50, 55),
            ],
            signer=None,
        )
        days.go_to(42)
        await days.push(cancel_promotions=["a", "never"], signer=None)
        assert await days.shelf(43) == ("2.20", None)
        # "a" applied on days 40-42; "never" was cancelled before it began.
        assert await days.shelf(51) == ("1.99", "1.79")
        days.go_to(60)  # cancelling a promotion that has ended does not rewrite history
        await days.push(cancel_promotions=["b"], signer=None)
        await days.push(promotions=[days.sale("c", "1.89", 75, 80)], signer=None)
        assert await days.shelf(76) == ("1.89", "1.99")  # "b" ran on days 50-55


async def test_a_promotion_sent_again_longer_continues_but_at_a_new_price_is_a_new_reduction(
    tmp_path: Path,
) -> None:
    async with calendar(tmp_path) as days:
        days.go_to(35)
        await days.push(promotions=[days.sale("a", "1.99", 40, 50)], signer=None)
        days.go_to(45)
        await days.push(promotions=[days.sale("a", "1.99", 40, 55)], signer=None)
        assert await days.shelf(52) == ("1.99", "2.20")  # one reduction since day 40
        days.go_to(53)
        await days.push(promotions=[days.sale("a", "1.79", 40, 58)], signer=None)
        # 1.99 was applied from day 40 until HQ changed the price on day 53.
        assert await days.shelf(54) == ("1.79", "1.99")


async def test_the_window_ends_where_the_reduction_began_not_today(tmp_path: Path) -> None:
    async with store(tmp_path, signed=False) as s:
        days = Days(s, s.clock.utc_now())
        await days.push([item(SKU, "1.50")], kind="full", signer=None)
        days.go_to(20)
        await days.push([item(SKU, "2.20")], signer=None)
        days.go_to(44)
        await days.push(promotions=[days.sale("long", "1.99", 45, 90)], signer=None)
        days.go_to(46)
        assert await days.shelf(46) == ("1.99", "1.50")  # 1.50 was in force until day 20
        days.go_to(80)
        assert await days.shelf(80) == ("1.99", "1.50")


async def test_history_a_running_promotion_needs_outlives_the_retention(tmp_path: Path) -> None:
    async with store(tmp_path, signed=False) as s:
        s.downlink.settings = type(s.downlink.settings)(history_days=40)
        days = Days(s, s.clock.utc_now())
        await days.push([item(SKU, "1.50")], kind="full", signer=None)
        days.go_to(20)
        await days.push([item(SKU, "2.20")], signer=None)
        days.go_to(44)
        await days.push(promotions=[days.sale("long", "1.99", 45, 120)], signer=None)
        days.go_to(100)
        await s.downlink.prune_history()
        await days.push([item(SKU, "2.30")], signer=None)  # the SKU changes: worked out again
        assert await days.shelf(101) == ("1.99", "1.50")
        days.go_to(130)
        await s.downlink.prune_history()
        kept = await s.db.fetchall("SELECT price FROM price_history ORDER BY at")
        # The price in force 40 days ago (2.20, since day 20) is kept with what followed.
        assert [r["price"] for r in kept] == ["2.20", "2.30"]


async def test_promotions_kept_before_the_upgrade_get_their_history_and_prior_prices(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    now = clock.utc_now()

    def day(n: float) -> str:
        return isoformat_utc(now + timedelta(days=n))

    async with Database.running(tmp_path / "g.db", clock=clock, migrations=MIGRATIONS[:10]) as db:
        for version, kind, decided in ((1, "full", -40), (2, "delta", -25), (3, "delta", -18)):
            await db.write(
                "INSERT INTO price_versions (version, kind, state, received_at, decided_at) "
                "VALUES (?, ?, 'applied', ?, ?)",
                (version, kind, day(decided), day(decided)),
            )
        await db.write(
            "INSERT INTO price_book (sku, price, currency, version, updated_at) "
            "VALUES (?, '2.20', 'EUR', 1, ?)",
            (SKU, day(-40)),
        )
        await db.write(
            "INSERT INTO price_history (sku, version, change, price, currency, at) "
            "VALUES (?, 1, 'set', '2.20', 'EUR', ?)",
            (SKU, day(-40)),
        )
        await db.write_many(
            "INSERT INTO promotions (id, sku, price, currency, effective_from, effective_to, "
            "version, cancelled_version) VALUES (?, ?, ?, 'EUR', ?, ?, ?, ?)",
            [
                ("ran", SKU, "1.79", day(-20), day(-15), 2, 3),  # cancelled on day -18
                ("now", SKU, "1.99", day(-2), day(5), 3, None),
            ],
        )
    async with store(tmp_path, signed=False) as s:  # the upgrade, then the downlink's load
        revisions = await s.db.fetchall(
            "SELECT id, applied_at, ended_at FROM promotion_history ORDER BY id"
        )
        assert [tuple(r) for r in revisions] == [
            ("now", day(-18), None),
            ("ran", day(-25), day(-18)),
        ]
        shelf = await PriceBook(s.db, was_price="lowest_30_days").shelf_price(SKU, now)
        assert shelf is not None
        assert shelf.promotion == "now"
        prior = await s.db.fetchone("SELECT prior_price FROM promotions WHERE id = 'now'")
        assert prior is not None
        assert (shelf.price, prior["prior_price"]) == ("1.99", "1.79")  # "ran": days -20..-18
        assert shelf.reference_price is None  # 1.79 is below 1.99: no "was" price shown


# --- property: what is applied after a reduction began never changes its prior price --------

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOURS = st.integers(0, 400)
PRICES = st.sampled_from(["1.49", "1.79", "1.99", "2.20", "2.50"])


def hour(n: int) -> datetime:
    return T0 + timedelta(hours=n)


def revisions_strategy(min_version: int) -> st.SearchStrategy[list[AppliedRevision]]:
    return st.lists(
        st.builds(
            lambda pid, version, price, start, hours, progressive: AppliedRevision(
                pid, version, price, "EUR", hour(start), hour(start + hours), progressive
            ),
            st.sampled_from(["a", "b", "c"]),
            st.integers(min_version, min_version + 5),
            PRICES,
            HOURS,
            st.integers(1, 200),
            st.booleans(),
        ),
        max_size=6,
    )


def in_precedence(revisions: list[AppliedRevision]) -> list[AppliedRevision]:
    return sorted(revisions, key=lambda r: (-r.version, -r.start.timestamp()))


@given(
    history=st.lists(st.tuples(HOURS, st.none() | PRICES), min_size=1, max_size=6),
    revisions=revisions_strategy(1).filter(bool),
    pick=st.integers(0, 5),
    later_history=st.lists(st.tuples(st.integers(1, 300), st.none() | PRICES), max_size=4),
    later_revisions=revisions_strategy(10),
    cut_after=st.none() | st.integers(1, 300),
)
def test_the_prior_price_is_final_once_the_promotion_applies(
    history: list[tuple[int, str | None]],
    revisions: list[AppliedRevision],
    pick: int,
    later_history: list[tuple[int, str | None]],
    later_revisions: list[AppliedRevision],
    cut_after: int | None,
) -> None:
    """Batches only add what applies from now on (a price, a promotion, a cancellation ending
    one now): none of that, after a promotion began to apply, changes its prior price."""
    ordered = in_precedence(revisions)
    promotion = ordered[pick % len(ordered)]
    assume(next(r for r in ordered if r.start <= promotion.start < r.end) is promotion)
    base = sorted(
        (BasePrice(hour(at), price, "EUR" if price else None) for at, price in history),
        key=lambda b: b.at,
    )

    def prior(base: list[BasePrice], revisions: list[AppliedRevision]) -> Any:
        return prior_price(
            base,
            in_precedence(revisions),
            promotion=promotion.promotion,
            version=promotion.version,
            currency="EUR",
            starts=promotion.start,
        )

    before = prior(base, ordered)
    after = promotion.start
    added_base = [
        BasePrice(after + timedelta(hours=h), p, "EUR" if p else None) for h, p in later_history
    ]
    added = [
        replace(
            r,
            start=after + (r.start - T0) + timedelta(hours=1),
            end=after + (r.end - T0) + timedelta(hours=1),
        )
        for r in later_revisions
    ]
    cut = None if cut_after is None else after + timedelta(hours=cut_after)
    # a cancellation now (at ``cut``) ends what runs and drops what has not begun
    kept = [
        replace(r, end=min(r.end, cut)) if cut is not None else r
        for r in ordered
        if cut is None or r.start < cut
    ]
    assert prior(sorted(base + added_base, key=lambda b: b.at), kept + added) == before


async def test_a_was_price_not_above_the_sale_price_is_not_shown(tmp_path: Path) -> None:
    async with calendar(tmp_path) as days:
        # Two back-to-back promotions at one price with different ids (weekly flyers): the
        # second one's prior price is the first one's price, which is no reduction of it.
        await days.push(promotions=[days.sale("w1", "1.79", 40, 47)], signer=None)
        await days.push(promotions=[days.sale("w2", "1.79", 47, 54)], signer=None)
        assert (await days.shelf(41), await days.was(41)) == (("1.79", "2.20"), "2.20")
        assert (await days.shelf(48), await days.was(48)) == (("1.79", "1.79"), None)
        # HQ's own reference price is held to the same rule.
        await days.push(
            promotions=[days.sale("w3", "1.59", 54, 60, reference_price="1.59")], signer=None
        )
        assert await days.was(55) is None
        await days.push(
            promotions=[days.sale("w4", "1.49", 60, 66, reference_price="1.590")], signer=None
        )
        assert await days.was(61) == "1.590"
