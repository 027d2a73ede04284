"""One face per SKU and instant: the label pipeline, ``label preview`` and ``label show`` all
take it from the price book, "was" price (HQ's or the EU prior price) included; a change of the
prior price alone re-plans the label like a price change."""

from __future__ import annotations

import base64
import json
import string
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.clock import FakeClock
from gateway.drivers.contracts import LabelReport, LabelReportKind
from gateway.labels.preview import parse_model, preview_label
from gateway.labels.render import PANEL_SIZES
from gateway.prices.book import WasPrice
from tests.labels.support import LabelStore, item, label_store, later, promo

SKU = "4006381333931"
MODEL = "296x128:bwr"


async def png_of(s: LabelStore, content_hash: str) -> bytes:
    row = await s.db.fetchone(
        "SELECT png FROM label_images WHERE content_hash = ?", (content_hash,)
    )
    assert row is not None, f"no image {content_hash}"
    return bytes(row["png"])


async def preview_png(s: LabelStore, *, model: str = MODEL, at: Any = None) -> bytes:
    result = await preview_label(
        s.pipeline.book,
        s.pipeline,
        sku=SKU,
        model=model,
        at=at if at is not None else s.clock.utc_now(),
    )
    return base64.b64decode(result["png_base64"])


async def test_label_show_reports_the_was_price_the_label_shows(tmp_path: Path) -> None:
    clock = FakeClock()
    async with label_store(tmp_path, clock=clock, was_price="lowest_30_days") as s:
        await s.prices([item(SKU, "2.50")], kind="full")
        clock.advance(3600)
        now = clock.utc_now()
        await s.prices([], promotions=[promo("sale", SKU, "1.99", now, later(clock, days=2))])
        await s.bindings.bind("L1", SKU, "hq")
        await s.settle()
        shown = await s.pipeline.show("L1")
        face = shown["should_show"]["face"]
        assert (face["price"], face["reference_price"]) == ("1.99", "2.50")
        assert shown["should_show"]["ready"] is True
        assert json.loads((await s.job("L1"))["face"]) == face  # what was rendered


async def test_the_preview_is_the_image_the_label_gets(tmp_path: Path) -> None:
    clock = FakeClock()
    async with label_store(
        tmp_path, clock=clock, was_price="lowest_30_days", timezone="Europe/Berlin"
    ) as s:
        await s.prices([item(SKU, "2.50", unit_price="10.00", unit="kg")], kind="full")
        clock.advance(3600)
        now = clock.utc_now()
        await s.prices([], promotions=[promo("sale", SKU, "1.99", now, later(clock, days=2))])
        await s.bindings.bind("L1", SKU, "hq")
        await s.settle()
        job = await s.job("L1")
        assert await preview_png(s) == await png_of(s, str(job["content_hash"]))


async def test_a_price_applied_before_a_sale_begins_re_renders_its_flip(tmp_path: Path) -> None:
    """The prior price of a scheduled sale changes with no change to the sale itself: its
    pre-rendered flip must follow (it kept the old "was" price before)."""
    clock = FakeClock()
    async with label_store(tmp_path, clock=clock, was_price="lowest_30_days") as s:
        await s.prices([item(SKU, "2.20")], kind="full")
        clock.advance(timedelta(days=40).total_seconds())
        start, end = later(clock, minutes=10), later(clock, days=2)
        await s.prices([], promotions=[promo("sale", SKU, "1.99", start, end)])
        await s.bindings.bind("L1", SKU, "hq")
        await s.settle()
        assert await s.pipeline.scheduler_pass()
        await s.pipeline.render_all()
        [flip] = await s.db.fetchall("SELECT face, content_hash FROM label_schedule")
        assert json.loads(flip["face"])["reference_price"] == "2.20"
        clock.advance(60)
        await s.prices([item(SKU, "2.10")])  # lowered once more before the sale
        await s.settle()
        assert await s.pipeline.scheduler_pass()
        await s.pipeline.render_all()
        [again] = await s.db.fetchall("SELECT face, content_hash FROM label_schedule")
        assert json.loads(again["face"])["reference_price"] == "2.10"
        assert again["content_hash"] != flip["content_hash"]
        assert await png_of(s, str(again["content_hash"])) == await preview_png(s, at=start)
        clock.advance(10 * 60)
        await s.pipeline.scheduler_pass()
        job = await s.job("L1")
        assert (json.loads(job["face"])["reference_price"], job["content_hash"]) == (
            "2.10",
            again["content_hash"],
        )


async def test_a_face_waits_while_its_prior_price_is_worked_out(tmp_path: Path) -> None:
    clock = FakeClock()
    async with label_store(tmp_path, clock=clock, was_price="lowest_30_days") as s:
        await s.prices([item(SKU, "2.50")], kind="full")
        await s.bindings.bind("L1", SKU, "hq")
        await s.settle()
        clock.advance(3600)
        now = clock.utc_now()
        await s.prices([], promotions=[promo("sale", SKU, "1.99", now, later(clock, days=2))])
        # As between the batch's commit and the one with its prior prices:
        await s.db.write("UPDATE promotions SET prior_price = NULL, reduction_from = NULL")
        await s.settle()
        assert json.loads((await s.job("L1"))["face"])["price"] == "2.50"  # left as it was
        assert (await s.pipeline.show("L1"))["should_show"]["ready"] is False
        await s.downlink.settle_prior_prices()  # the downlink's tick: planned again
        await s.settle()
        face = json.loads((await s.job("L1"))["face"])
        assert (face["price"], face["reference_price"]) == ("1.99", "2.50")


# --- property: preview and pipeline draw the same bytes -------------------------------------

MODELS = [f"{w}x{h}:{p}" for w, h in PANEL_SIZES for p in ("bw", "bwr", "bwy", "bwry")]
MONEY = st.integers(1, 99_999).map(lambda cents: f"{cents // 100}.{cents % 100:02d}")
PROMOTIONS = st.lists(
    st.fixed_dictionaries(
        {
            "price": MONEY,
            "from_h": st.integers(-72, 72),
            "hours": st.integers(1, 96),
            "reference_price": st.none() | MONEY,
            "progressive": st.booleans(),
        }
    ),
    max_size=3,
)


@pytest.mark.slow
@pytest.mark.timeout(300)  # about 1 s an example idle: a store is set up for each
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    earlier=st.none() | MONEY,
    base=MONEY,
    unit=st.none() | st.tuples(MONEY, st.sampled_from(["kg", "l", "100 g"])),
    name=st.text(string.ascii_letters + string.digits + " äöüß-", max_size=40),
    promotions=PROMOTIONS,
    after_h=st.integers(0, 120),
    was_price=st.sampled_from(["hq", "lowest_30_days"]),
    timezone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    model=st.sampled_from(MODELS),
)
async def test_preview_and_pipeline_draw_identical_bytes(
    earlier: str | None,
    base: str,
    unit: tuple[str, str] | None,
    name: str,
    promotions: list[dict[str, Any]],
    after_h: int,
    was_price: WasPrice,
    timezone: str,
    model: str,
) -> None:
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as directory:
        async with label_store(
            Path(directory),
            clock=clock,
            was_price=was_price,
            timezone=timezone,
            default_model=model,
            lookahead_s=86_400,
            heard_on_bind=False,  # L1 checks in below, with the panel drawn
        ) as s:
            if earlier is not None:
                await s.prices([item(SKU, earlier)], kind="full")
                clock.advance(timedelta(days=10).total_seconds())
            extra: dict[str, Any] = {"name": name or None}
            if unit is not None:
                extra |= {"unit_price": unit[0], "unit": unit[1]}
            await s.prices([item(SKU, base, **extra)], kind="full")
            clock.advance(3600)
            sales = []
            for n, sale in enumerate(promotions):
                start = later(clock, hours=sale["from_h"])
                fields = {"progressive": sale["progressive"]}
                if sale["reference_price"] is not None:
                    fields["reference_price"] = sale["reference_price"]
                sales.append(
                    promo(
                        f"p{n}",
                        SKU,
                        sale["price"],
                        start,
                        start + timedelta(hours=sale["hours"]),
                        **fields,
                    )
                )
            if sales:
                await s.prices([], promotions=sales)
            clock.advance(after_h * 3600)
            s.pipeline.on_reading(
                "esl",
                LabelReport(
                    "L1",
                    LabelReportKind.SEEN,
                    clock.monotonic(),
                    clock.utc_now(),
                    model=parse_model(model),
                ),
            )
            await s.pipeline.process_reports()
            await s.bindings.bind("L1", SKU, "hq")
            await s.settle()
            job = await s.job("L1")
            assert job["content_hash"] is not None
            assert await preview_png(s, model=model) == await png_of(s, str(job["content_hash"]))
            # The flips pre-rendered for later instants are the previews of those instants.
            assert await s.pipeline.scheduler_pass()
            await s.pipeline.render_all()
            for flip in await s.db.fetchall("SELECT due_at, content_hash FROM label_schedule"):
                due = flip["due_at"]
                assert await preview_png(
                    s, model=model, at=datetime.fromisoformat(due)
                ) == await png_of(s, str(flip["content_hash"])), f"flip at {due}"
