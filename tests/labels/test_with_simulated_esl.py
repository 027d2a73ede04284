"""The whole pipeline with its own loops running against the simulated ESL access point:
prices → jobs → rendering → the radio → confirmations (with failed deliveries retried) →
receipts, until every label shows its price."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

from gateway.alerts import Alerts
from gateway.clock import ClockSyncSource, SystemClock
from gateway.config import LabelsConfig
from gateway.drivers.contracts import LabelDriver
from gateway.labels.bindings import LabelBindings
from gateway.labels.pipeline import LabelPipeline
from gateway.store import Database
from gateway.store.outbox import Outbox
from tests.devices.harness import make
from tests.labels.support import STREAMS
from tests.sync.support import within


async def test_every_label_converges_through_the_simulated_radio(tmp_path: Path) -> None:
    clock = SystemClock(sync=ClockSyncSource.ASSUME)
    esl = make(
        "simulated.esl",
        "esl-1",
        clock=clock,
        seed=3,
        label_count=6,
        seconds_per_label=1.0,
        speed=200.0,  # 5 ms of radio per label
        failure_rate=0.3,
        checkin_interval_s=2.0,
    )
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
            drivers=lambda: {"esl-1": esl},
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
        *bound, spare = esl.label_ids  # one label is on the shelf but bound to nothing
        for n, label in enumerate(bound):
            await bindings.bind(label, f"S{n % 3}", "hq")

        async def pump() -> None:
            await esl.open()
            async for reading in esl.readings():
                pipeline.on_reading("esl-1", reading)

        tasks = [asyncio.create_task(pump()), asyncio.create_task(pipeline.run())]
        try:

            async def converged() -> bool:
                rows = await db.fetchall("SELECT label, state, content_hash FROM label_jobs")
                return len(rows) == 5 and all(
                    r["state"] == "confirmed" and esl.shown_hash(r["label"]) == r["content_hash"]
                    for r in rows
                )

            async with within(30):  # fails with every task's whereabouts if stuck
                while not await converged():
                    await asyncio.sleep(0.05)
            while await pipeline.pump_receipts():
                pass
            events = await outbox.read("receipts", after_seq=0, max_events=1000, max_bytes=10**9)
            confirmed = {e.id for e in events if e.type == "label.confirmed"}
            assert len(confirmed) >= 5
            async with within(10):  # listed once it checked in
                while (await pipeline.listing())["unbound"] == 0:
                    await asyncio.sleep(0.05)
            listing = await pipeline.listing()
            assert [u["label"] for u in listing["unbound_labels"]] == [spare]
            assert listing["unbound_labels"][0]["device"] == "esl-1"
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await esl.close()
