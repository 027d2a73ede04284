"""The unit price stays on a promotion (Directive 98/6/EC): derived from the regular price and
unit price, the same in the price book (``label preview``, ``prices``) and in the faces the
label planner builds."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.labels.faces import face_to_label
from gateway.prices.batch import Promotion
from gateway.prices.book import PriceBook
from gateway.prices.unit_price import promotional_unit_price
from tests.labels.support import item, label_store, later, promo


def test_the_promotional_unit_price_scales_with_the_price() -> None:
    assert promotional_unit_price("0.99", "1.99", "7.96") == "3.96"  # 250 g
    assert promotional_unit_price("0.99", "1.49", "2.98") == "1.98"  # 500 g
    assert promotional_unit_price("1.00", "3.00", "1.00") == "0.33"  # rounded half up...
    assert promotional_unit_price("2.00", "3.00", "1.00") == "0.67"
    assert promotional_unit_price("0.99", "1.99", "7.965") == "3.962"  # ...to HQ's decimals
    assert promotional_unit_price("100", "200", "50") == "25.00"  # two at least
    assert promotional_unit_price("1.99", "1.99", "7.96") == "7.96"


def test_without_a_regular_unit_price_there_is_none_never_an_invented_one() -> None:
    assert promotional_unit_price("0.99", "1.99", None) is None
    assert promotional_unit_price("0.99", None, "7.96") is None
    assert promotional_unit_price("0.99", "0", "7.96") is None
    assert promotional_unit_price("0.99", "0.00", "7.96") is None
    assert promotional_unit_price("0.99", "abc", "7.96") is None
    assert promotional_unit_price("0.99", "NaN", "7.96") is None
    assert promotional_unit_price("0.99", "1.99", "Infinity") is None
    assert promotional_unit_price("0.99", "1.99", "-1") is None
    assert promotional_unit_price("0.99", "1.99", "1e-999999") is None
    assert promotional_unit_price("1e999999", "1e-999999", "1") is None
    assert promotional_unit_price("999999999999", "0.000001", "999999999999") is None


MONEY = st.from_regex(r"\d{1,6}(\.\d{1,6})?", fullmatch=True)


@given(
    promotion=st.text(max_size=12) | MONEY,
    regular=st.none() | st.text(max_size=12) | MONEY,
    unit=st.none() | st.text(max_size=12) | MONEY,
)
def test_garbage_gives_none_or_a_decimal_never_an_error(
    promotion: str, regular: str | None, unit: str | None
) -> None:
    result = promotional_unit_price(promotion, regular, unit)
    if result is not None:
        assert Decimal(result).is_finite()
        assert Decimal(result) >= 0


async def test_a_promotion_keeps_its_unit_price_in_the_book_and_on_the_label(
    tmp_path: Path,
) -> None:
    async with label_store(tmp_path) as store:
        await store.bindings.bind("L1", "a", "hq")
        await store.bindings.bind("L2", "b", "hq")
        start, end = later(store.clock, minutes=-1), later(store.clock, hours=2)
        await store.prices(
            [item("a", "1.99", unit_price="7.96", unit="kg"), item("b", "1.00")],
            kind="full",
            promotions=[
                promo("p", "a", "0.99", start, end, reference_price="1.99"),
                promo("q", "b", "0.50", start, end),
            ],
        )
        await store.settle()
        during = store.clock.utc_now() + timedelta(minutes=1)
        shelf = await PriceBook(store.db).shelf_price("a", during)
        assert shelf is not None
        assert (shelf.price, shelf.promotion, shelf.unit_price, shelf.unit) == (
            "0.99",
            "p",
            "3.96",
            "kg",
        )
        face = face_to_label(str((await store.job("L1"))["face"]))
        assert (face.price, face.unit_price, face.unit) == ("0.99", "3.96", "kg")
        # No regular unit price: none on the promotion either.
        assert (await PriceBook(store.db).shelf_price("b", during)).unit_price is None  # type: ignore[union-attr]
        assert face_to_label(str((await store.job("L2"))["face"])).unit_price is None


async def test_a_promotion_in_another_currency_shows_no_derived_unit_price(
    tmp_path: Path,
) -> None:
    async with label_store(tmp_path) as store:
        await store.bindings.bind("L1", "a", "hq")
        start, end = later(store.clock, minutes=-1), later(store.clock, hours=2)
        sale = promo("p", "a", "0.99", start, end) | {"currency": "CHF"}
        await store.prices(
            [item("a", "1.99", unit_price="7.96", unit="kg")], kind="full", promotions=[sale]
        )
        await store.settle()
        shelf = await PriceBook(store.db).shelf_price("a", store.clock.utc_now())
        assert shelf is not None
        assert (shelf.currency, shelf.unit_price) == ("CHF", None)
        face = face_to_label(str((await store.job("L1"))["face"]))
        assert (face.currency, face.unit_price) == ("CHF", None)


async def test_hq_s_own_promotional_unit_price_wins_over_the_derived_one(tmp_path: Path) -> None:
    # 0.49 for 15 g is 32.666… €/kg, which HQ sends rounded as 32.67; derived from that, a
    # promotion at 0.29 would read 19.34 €/kg, while 0.29 for 15 g is 19.33 €/kg.
    assert promotional_unit_price("0.29", "0.49", "32.67") == "19.34"
    async with label_store(tmp_path) as store:
        await store.bindings.bind("L1", "a", "hq")
        await store.bindings.bind("L2", "b", "hq")
        start, end = later(store.clock, minutes=-1), later(store.clock, hours=2)
        await store.prices(
            [item("a", "0.49", unit_price="32.67", unit="kg"), item("b", "1.00")],
            kind="full",
            promotions=[
                promo("p", "a", "0.29", start, end, unit_price="19.33"),
                promo("q", "b", "0.50", start, end, unit_price="1.00"),  # b has no unit
            ],
        )
        await store.settle()
        shelf = await PriceBook(store.db).shelf_price("a", store.clock.utc_now())
        assert shelf is not None
        assert (shelf.price, shelf.unit_price, shelf.unit) == ("0.29", "19.33", "kg")
        face = face_to_label(str((await store.job("L1"))["face"]))
        assert (face.unit_price, face.unit) == ("19.33", "kg")
        # A unit price needs the SKU's unit: none is invented for b.
        assert face_to_label(str((await store.job("L2"))["face"])).unit_price is None


@pytest.mark.parametrize("unit_price", ["19,33", 19.33, "-1", "", "1e3"])
def test_a_promotions_unit_price_is_money_or_the_batch_is_rejected(unit_price: object) -> None:
    promotion = {
        "id": "p",
        "sku": "a",
        "price": "0.29",
        "currency": "EUR",
        "unit_price": unit_price,
        "effective_from": "2026-11-23T09:00:00+00:00",
        "effective_to": "2026-11-24T09:00:00+00:00",
    }
    with pytest.raises(ValidationError):
        Promotion.model_validate(promotion)
