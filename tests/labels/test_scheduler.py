"""Scheduled flips: pre-rendered, first at their instant, caught up after downtime, held while
the clock is unsynced, converging across clock jumps."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from tests.labels.support import CountingDriver, item, label_store, later, promo


def _face(job: dict[str, object]) -> dict[str, object]:
    return json.loads(str(job["face"]))  # type: ignore[no-any-return]


async def test_flip_is_pre_rendered_and_dispatched_first_at_its_instant(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock, rate=6000)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        for n in range(6):
            await s.bindings.bind(f"L{n}", f"S{n}", "hq")
        start, end = later(clock, minutes=5), later(clock, hours=2)
        await s.prices(
            [item(f"S{n}", "2.00") for n in range(6)],
            kind="full",
            promotions=[promo("sale", "S0", "1.00", start, end, reference_price="2.00")],
        )
        await s.settle()
        assert await s.pipeline.scheduler_pass()
        await s.pipeline.render_all()
        await s.pipeline.dispatch_once()
        await s.confirm_all(driver)
        flips = await s.db.fetchall("SELECT label, due_at, content_hash FROM label_schedule")
        assert [(r["label"], r["content_hash"] is not None) for r in flips] == [("L0", True)]
        assert _face(await s.job("L0"))["price"] == "2.00"  # in force until the instant
        # Other work is waiting when the flip falls due.
        await s.prices([item(f"S{n}", "2.50") for n in range(1, 6)])
        await s.settle()
        clock.advance(5 * 60)
        pushed_before = len(driver.pushes)
        await s.pipeline.scheduler_pass()
        job = await s.job("L0")
        assert (job["state"], job["scheduled"], _face(job)["price"]) == ("queued", 1, "1.00")
        assert job["content_hash"] is not None  # no rendering at the instant
        await s.pipeline.dispatch_once()
        assert driver.pushes[pushed_before].label_id == "L0"  # the flip goes first
        await s.confirm_all(driver)
        receipts = await s.receipts()
        while await s.pipeline.pump_receipts():
            pass
        receipts = await s.receipts()
        assert ("label.confirmed", "L0", 1) in [
            (kind, body["label"], body["price_version"]) for kind, body in receipts
        ]


async def test_switches_missed_while_down_are_applied_in_order_at_start(tmp_path: Path) -> None:
    clock = FakeClock()
    async with label_store(tmp_path, clock=clock) as s:
        await s.bindings.bind("L0", "S0", "hq")
        await s.bindings.bind("L1", "S1", "hq")
        t1, t2, t3 = later(clock, minutes=5), later(clock, minutes=10), later(clock, hours=1)
        await s.prices(
            [item("S0", "2.00"), item("S1", "3.00")],
            kind="full",
            promotions=[
                promo("a", "S0", "1.00", t1, t2),  # starts and ends while we are down
                promo("b", "S1", "2.00", t1, t3),  # starts while we are down
            ],
        )
        await s.settle()
        await s.pipeline.scheduler_pass()
        await s.pipeline.render_all()
        assert len(await s.db.fetchall("SELECT * FROM label_schedule")) == 3
    clock.advance(30 * 60)
    async with label_store(tmp_path, clock=clock) as s:
        await s.pipeline.scheduler_pass()
        jobs = await s.jobs()
        assert _face(jobs["L0"])["price"] == "2.00"  # the sale came and went
        assert _face(jobs["L1"])["price"] == "2.00"  # promotion b in force
        assert _face(jobs["L1"])["promotion"] == "b"
        assert ("L0", "expired") in await s.audit("L0")
        rows = await s.db.fetchall("SELECT label, due_at FROM label_schedule")
        assert rows == []  # b's end (t3) is still beyond the look-ahead


async def test_nothing_switches_by_wall_time_while_the_clock_is_unsynced(tmp_path: Path) -> None:
    clock = FakeClock()
    async with label_store(tmp_path, clock=clock) as s:
        await s.bindings.bind("L0", "S0", "hq")
        start = later(clock, minutes=5)
        await s.prices(
            [item("S0", "2.00")],
            kind="full",
            promotions=[promo("sale", "S0", "1.00", start, later(clock, hours=1))],
        )
        await s.settle()
        assert await s.pipeline.scheduler_pass()
        clock.synchronized = False
        clock.advance(10 * 60)
        assert not await s.pipeline.scheduler_pass()
        await s.pipeline.reconcile()  # re-planning holds the instant last trusted too
        await s.pipeline.plan_pending()
        assert _face(await s.job("L0"))["price"] == "2.00"
        listing = await s.pipeline.listing()
        assert listing["clock"]["synchronized"] is False
        assert "scheduled flips are held" in listing["clock"]["note"]
        clock.synchronized = True
        await s.pipeline.scheduler_pass()
        assert _face(await s.job("L0"))["price"] == "1.00"


async def test_clock_jumps_across_a_switch_converge(tmp_path: Path) -> None:
    clock = FakeClock()
    async with label_store(tmp_path, clock=clock) as s:
        await s.bindings.bind("L0", "S0", "hq")
        start = later(clock, minutes=5)
        await s.prices(
            [item("S0", "2.00")],
            kind="full",
            promotions=[promo("sale", "S0", "1.00", start, later(clock, hours=1))],
        )
        await s.settle()
        await s.pipeline.scheduler_pass()
        clock.wall += timedelta(minutes=20)  # forward across the start (monotonic did not move)
        await s.pipeline.scheduler_pass()
        assert _face(await s.job("L0"))["price"] == "1.00"
        clock.wall -= timedelta(minutes=20)  # and back before it
        await s.pipeline.scheduler_pass()
        assert _face(await s.job("L0"))["price"] == "2.00"
        flips = await s.db.fetchall("SELECT due_at FROM label_schedule")
        assert [r["due_at"] for r in flips] == [start.isoformat(timespec="milliseconds")]
        clock.advance(5 * 60)
        await s.pipeline.scheduler_pass()
        assert _face(await s.job("L0"))["price"] == "1.00"


@pytest.mark.slow
async def test_a_flip_the_radio_cannot_finish_in_time_is_announced_ahead(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock, rate=15)  # 4 s a label, like a real access point
    async with label_store(
        tmp_path, clock=clock, drivers={"esl": driver}, flip_tolerance_s=60
    ) as s:
        start, end = later(clock, minutes=10), later(clock, hours=1)
        for n in range(40):
            await s.bindings.bind(f"L{n:02d}", "S0", "hq")
        await s.prices(
            [item("S0", "2.00")],
            kind="full",
            promotions=[promo("sale", "S0", "1.00", start, end)],
        )
        await s.settle()
        await s.pipeline.scheduler_pass()
        alert = next(a for a in s.alerts.active() if a.key == "label.flip_late")
        [flip] = alert.details["flips"]
        assert flip["labels"] == 40
        assert flip["expected_completion"] == (start + timedelta(seconds=160)).isoformat(
            timespec="milliseconds"
        )
        assert (flip["late_by_s"], flip["skus"]) == (100, ["S0"])  # 160 s against 60 s
        assert "100 s past the tolerance; SKUs S0" in alert.message
        await s.prices([], cancel=["sale"])
        await s.settle()
        await s.pipeline.scheduler_pass()
        assert "label.flip_late" not in s.alert_keys()
