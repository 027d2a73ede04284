"""The label pipeline through the real ``esl.oepl`` driver against the fake OpenEPaperLink
access point: prices → jobs → rendering for the panel the AP names → /imgupload → the tags'
"xfer complete" → confirmed jobs and receipts (with a busy AP and a failing tag on the way)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

from devices.simulated.oepl_ap import FakeAccessPoint
from gateway.alerts import Alerts
from gateway.clock import ClockSyncSource, SystemClock
from gateway.drivers.contracts import LabelDriver
from gateway.labels.bindings import LabelBindings
from gateway.labels.config import LabelsConfig
from gateway.labels.pipeline import LabelPipeline
from gateway.store import Database
from gateway.store.outbox import Outbox
from tests.devices.harness import make
from tests.labels.support import STREAMS
from tests.sync.support import within


async def test_labels_converge_through_the_oepl_driver_and_a_fake_access_point(
    tmp_path: Path,
) -> None:
    clock = SystemClock(sync=ClockSyncSource.ASSUME)
    async with FakeAccessPoint(tag_count=4, checkin_s=0.1) as ap:
        labels = sorted(ap.tags)
        ap.busy_uploads = 2  # 409 come back later, twice
        ap.fail_deliveries.add(labels[0])  # its first delivery times out: retried by policy
        esl = make("esl.oepl", "ap-1", clock=clock, url=ap.url, busy_backoff_s=0.01)
        assert isinstance(esl, LabelDriver)
        async with Database.running(tmp_path / "g.db", clock=clock) as db:
            outbox = Outbox(db, clock)
            await outbox.open(STREAMS)
            alerts = Alerts(db, outbox, clock)
            await alerts.load()
            pipeline = LabelPipeline(
                database=db,
                outbox=outbox,
                alerts=alerts,
                clock=clock,
                config=LabelsConfig(retry_initial_s=0.05, retry_max_s=0.2),
                drivers=lambda: {"ap-1": esl},
                rng=random.Random(2),
            )
            await pipeline.load()
            bindings = LabelBindings(
                db, outbox, clock, on_change=lambda label: pipeline.on_bindings_changed([label])
            )
            await db.write_many(
                "INSERT INTO price_book (sku, price, currency, name, version, updated_at) "
                "VALUES (?, ?, 'EUR', ?, 1, '2026-11-23T09:00:00.000+00:00')",
                [(f"S{n}", f"{n}.99", f"Item {n}") for n in range(3)],
            )
            for n, label in enumerate(labels[:3]):
                await bindings.bind(label, f"S{n}", "hq")

            async def pump() -> None:
                await esl.open()
                async for reading in esl.readings():
                    pipeline.on_reading("ap-1", reading)

            tasks = [asyncio.create_task(pump()), asyncio.create_task(pipeline.run())]
            try:
                async with within(20):
                    while not ap.uploads.count(labels[0]):
                        await asyncio.sleep(0.02)
                ap.fail_deliveries.clear()  # the tag answers again

                async def converged() -> bool:
                    rows = await db.fetchall("SELECT label, state FROM label_jobs")
                    return len(rows) == 3 and all(r["state"] == "confirmed" for r in rows)

                async with within(30):
                    while not await converged():
                        await asyncio.sleep(0.05)
                for label in labels[:3]:
                    assert ap.tags[label].ap_hash != "0" * 32  # the tag shows an image
                assert ap.uploads.count(labels[0]) >= 2  # failed once, then sent again
                while await pipeline.pump_receipts():
                    pass
                events = await outbox.read(
                    "receipts", after_seq=0, max_events=1000, max_bytes=10**9
                )
                assert len({e.id for e in events if e.type == "label.confirmed"}) >= 3
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await esl.close()
