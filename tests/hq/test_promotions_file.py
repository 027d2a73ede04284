"""HQ's promotions files for ``storegw hq push-prices --promotions``: CSV or JSON, absolute or
relative instants, every bad row reported at once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from gateway.hq.prices import build_price_messages, read_promotions
from gateway.prices.batch import parse_price_batch

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HEADER = "id,sku,price,currency,effective_from,effective_to\n"


def test_csv_with_relative_instants_becomes_a_flash_sale_starting_in_a_minute() -> None:
    text = (
        "id,sku,price,currency,reference_price,effective_from,effective_to\n"
        "flash-1,4006381333955,1.99,EUR,2.49,+1m,+30m\n"
        "week-48,4006381333931,1.49,EUR,,2026-11-24T00:00:00+01:00,+2d\n"
    )
    flash, week = read_promotions(text, now=NOW, filename="promos.csv")
    assert flash == {
        "id": "flash-1",
        "sku": "4006381333955",
        "price": "1.99",
        "currency": "EUR",
        "reference_price": "2.49",
        "effective_from": "2026-11-23T09:01:00.000+00:00",
        "effective_to": "2026-11-23T09:30:00.000+00:00",
    }
    assert "reference_price" not in week
    assert week["effective_from"] == "2026-11-23T23:00:00.000+00:00"
    # They travel in a batch the store's parser accepts.
    [message] = build_price_messages(
        [], version=3, kind="delta", issued_at=NOW, stores=["s1"], promotions=[flash, week]
    )
    batch = parse_price_batch(message)
    assert [p.id for p in batch.promotions] == ["flash-1", "week-48"]


def test_json_list_or_object() -> None:
    row = {
        "id": "p",
        "sku": "1",
        "price": "1.00",
        "currency": "EUR",
        "effective_from": "+0s",
        "effective_to": "+1h",
    }
    assert read_promotions(json.dumps([row]), now=NOW) == read_promotions(
        json.dumps({"promotions": [row]}), now=NOW
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id,sku,price,currency,effective_from,effective_to\np,1,1.00,EUR,+1m,+1m\n", "after"),
        ("id,sku,price,currency,effective_from,effective_to\np,1,1.00,EUR,+5m,+1m\n", "after"),
        ("id,sku,price,currency,effective_from,effective_to\np,1,1.00,EUR,soon,+1m\n", "row 1"),
        ("id,sku,price,currency,effective_from,effective_to\np,1,1.00,EUR,+1w,+1m\n", "row 1"),
        ("id,sku,price,currency,effective_from,effective_to\np,1,-1.00,EUR,+1m,+2m\n", "row 1"),
        (HEADER + "p,1,1.00,EUR,2026-11-23T09:00:00,+2m\n", "row 1"),  # no offset
        ("id,sku,price,currency\n p!,1,1.00,EUR\n", "row 1"),
        ('{"promotions": 3}', "must be a list"),
        ("[1, 2]", "not an object"),
    ],
)
def test_garbage_is_refused_with_the_row(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        read_promotions(text, now=NOW)


def test_every_bad_row_is_reported_at_once() -> None:
    text = (
        "id,sku,price,currency,effective_from,effective_to\n"
        "a,1,1.00,EUR,+1m,+2m\n"
        "b,1,x,EUR,+1m,+2m\n"
        "c,1,1.00,EURO,+1m,+2m\n"
    )
    with pytest.raises(ValueError, match=r"row 2.*\n.*row 3") as raised:
        read_promotions(text, now=NOW)
    assert "row 1" not in str(raised.value)


def test_a_progressive_step_is_flagged_and_the_flag_stays_off_the_wire_when_false() -> None:
    text = (
        "id,sku,price,currency,effective_from,effective_to,progressive\n"
        "step-1,1,1.99,EUR,+0s,+7d,false\n"
        "step-2,1,1.79,EUR,+7d,+14d,TRUE\n"
        "plain,2,1.00,EUR,+0s,+1d,\n"
    )
    first, second, plain = read_promotions(text, now=NOW, filename="steps.csv")
    assert "progressive" not in first  # a store without the flag takes the batch as before
    assert second["progressive"] is True
    assert "progressive" not in plain
    rows = [{**second, "effective_from": "+7d", "effective_to": "+14d"}]
    assert read_promotions(json.dumps(rows), now=NOW)[0]["progressive"] is True
    [message] = build_price_messages(
        [], version=3, kind="delta", issued_at=NOW, stores=["s1"], promotions=[first, second]
    )
    batch = parse_price_batch(message)
    assert [p.progressive for p in batch.promotions] == [False, True]


@pytest.mark.parametrize("flag", ["yes", "1", "progressive", " "])
def test_a_progressive_flag_that_is_not_true_or_false_is_refused(flag: str) -> None:
    text = HEADER.replace("\n", ",progressive\n") + f"p,1,1.00,EUR,+0s,+1d,{flag}\n"
    with pytest.raises(ValueError, match=r"row 1.*progressive"):
        read_promotions(text, now=NOW, filename="p.csv")
    row = {"id": "p", "sku": "1", "price": "1.00", "currency": "EUR"}
    json_row = {**row, "effective_from": "+0s", "effective_to": "+1d", "progressive": flag}
    with pytest.raises(ValueError, match=r"row 1.*progressive"):
        read_promotions(json.dumps([json_row]), now=NOW)
