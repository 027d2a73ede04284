"""Order of work on one access point, end to end through ``esl.oepl`` and the fake AP: a price
change queued while 200 labels are being drawn again in a new style (a cosmetic change: each
label shows its right price meanwhile) reaches its label before those redraws; and tags that
sleep between check-ins are not served two at a time."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from devices.simulated.oepl_ap import FakeAccessPoint
from gateway.clock import ClockSyncSource, SystemClock
from gateway.drivers.contracts import LabelDriver
from gateway.labels.bindings import LabelBindings
from gateway.labels.config import LabelsConfig
from gateway.labels.pipeline import LabelPipeline
from gateway.store import Database
from gateway.store.outbox import Outbox
from tests.devices.harness import make
from tests.labels.support import STREAMS
from tests.waiting import patience

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REDRAWS = 200


@contextlib.asynccontextmanager
async def pipeline_running(
    db: Database, outbox: Outbox, esl: LabelDriver, locale: str, *, queue_ahead_s: float = 0.2
) -> AsyncIterator[LabelPipeline]:
    clock = SystemClock(sync=ClockSyncSource.ASSUME)
    pipeline = LabelPipeline(
        database=db,
        outbox=outbox,
        alerts=None,
        clock=clock,
        config=LabelsConfig(queue_ahead_s=queue_ahead_s),  # 0.2 s: ~10 labels at the AP
        drivers=lambda: {"ap-1": esl},
        locale=locale,
        rng=random.Random(3),
    )
    await pipeline.load()  # a new locale: every label is drawn again (cosmetic, sent last)

    async def pump() -> None:
        await esl.open()
        async for reading in esl.readings():
            pipeline.on_reading("ap-1", reading)

    tasks = [asyncio.create_task(pump()), asyncio.create_task(pipeline.run())]
    try:
        yield pipeline
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await esl.close()
        pipeline.close()


async def until(check: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    deadline = time.monotonic() + patience(within)
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {patience(within):g} s: {what}")
        await asyncio.sleep(0.02)


async def states(db: Database) -> dict[str, tuple[str, str | None]]:
    rows = await db.fetchall("SELECT label, state, face FROM label_jobs")
    return {str(r["label"]): (str(r["state"]), r["face"]) for r in rows}


async def test_a_price_change_after_200_redraws_on_one_ap_is_delivered_before_them(
    tmp_path: Path,
) -> None:
    clock = SystemClock(sync=ClockSyncSource.ASSUME)
    async with (
        FakeAccessPoint(tag_count=REDRAWS + 1, radio_s=0.02, checkin_s=3600, sys_s=1) as ap,
        Database.running(tmp_path / "g.db", clock=clock) as db,
    ):
        labels = sorted(ap.tags)
        priced = labels[-1]
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)

        def driver() -> LabelDriver:
            esl: LabelDriver = make(
                "esl.oepl", "ap-1", clock=clock, url=ap.url, seconds_per_label=0.02
            )
            return esl

        await db.write_many(
            "INSERT INTO price_book (sku, price, currency, name, version, updated_at) "
            "VALUES (?, '1.99', 'EUR', ?, 1, '2026-11-23T09:00:00.000+00:00')",
            [(f"S{n}", f"Item {n}") for n in range(len(labels))],
        )
        async with pipeline_running(db, outbox, driver(), "en_GB") as pipeline:
            bindings = LabelBindings(
                db, outbox, clock, on_change=lambda label: pipeline.on_bindings_changed([label])
            )
            for n, label in enumerate(labels):
                await bindings.bind(label, f"S{n}", "hq")

            async def all_confirmed() -> bool:
                jobs = await states(db)
                return len(jobs) == len(labels) and {s for s, _ in jobs.values()} == {"confirmed"}

            await until(all_confirmed, within=120, what="every label shows its price")
        async with pipeline_running(db, outbox, driver(), "de_DE") as pipeline:

            async def redraws_confirmed() -> int:
                jobs = await states(db)
                return sum(
                    1 for label, (s, _) in jobs.items() if s == "confirmed" and label != priced
                )

            async def under_way() -> bool:
                return await redraws_confirmed() >= 5

            # The redraws are under way (the first ones confirmed) when the price changes.
            await until(under_way, within=60, what="redraws under way")
            await db.write(
                "UPDATE price_book SET price = '2.49', version = 2 WHERE sku = ?",
                (f"S{len(labels) - 1}",),
            )
            pipeline.on_prices_applied(2, [f"S{len(labels) - 1}"])

            async def price_shown() -> bool:
                state, face = (await states(db))[priced]
                return state == "confirmed" and face is not None and '"2.49"' in face

            await until(price_shown, within=60, what="the new price on its label")
            redrawn = await redraws_confirmed()
            print(f"{redrawn} of {REDRAWS} redraws confirmed before the price change")
            assert redrawn < REDRAWS // 2  # not behind the redraws

            async def all_redrawn() -> bool:
                return await redraws_confirmed() == REDRAWS

            await until(all_redrawn, within=120, what="every label drawn again")


async def test_tags_asleep_get_their_content_queued_at_the_ap_not_two_at_a_time(
    tmp_path: Path,
) -> None:
    """Tags that sleep between check-ins (the fake AP's ``minute_s``: 10 min of ``maxsleep``
    are 5 s here) get content only when they wake: dispatch hands the AP more than its radio
    window, since what waits for a sleeping tag is not radio work yet."""
    clock = SystemClock(sync=ClockSyncSource.ASSUME)
    async with (
        FakeAccessPoint(tag_count=30, radio_s=0.02, sys_s=1, minute_s=0.5) as ap,
        Database.running(tmp_path / "g.db", clock=clock) as db,
    ):
        labels = sorted(ap.tags)
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        # One label a second nominal, 0.5 s of it queued ahead: a window of one label.
        esl: LabelDriver = make("esl.oepl", "ap-1", clock=clock, url=ap.url)
        await db.write_many(
            "INSERT INTO price_book (sku, price, currency, name, version, updated_at) "
            "VALUES (?, '1.99', 'EUR', ?, 1, '2026-11-23T09:00:00.000+00:00')",
            [(f"S{n}", f"Item {n}") for n in range(len(labels))],
        )
        async with pipeline_running(db, outbox, esl, "en_GB", queue_ahead_s=0.5) as pipeline:
            bindings = LabelBindings(
                db, outbox, clock, on_change=lambda label: pipeline.on_bindings_changed([label])
            )
            for n, label in enumerate(labels):
                await bindings.bind(label, f"S{n}", "hq")

            async def queued_at_the_ap() -> bool:
                return sum(len(tag.queue) for tag in ap.tags.values()) >= 5

            await until(queued_at_the_ap, within=60, what="content waiting for sleeping tags")

            async def all_confirmed() -> bool:
                jobs = await states(db)
                return len(jobs) == len(labels) and {s for s, _ in jobs.values()} == {"confirmed"}

            await until(all_confirmed, within=120, what="every label shows its price")
