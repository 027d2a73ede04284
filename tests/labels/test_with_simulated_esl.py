"""The whole pipeline with its own loops running against the simulated ESL access point:
prices → jobs → rendering → the radio → confirmations (with failed deliveries retried) →
receipts, until every label shows its price; labels seeded before they check in, on panels of
several sizes, across a restart and a panel swap."""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from gateway.alerts import Alerts
from gateway.clock import ClockSyncSource, SystemClock
from gateway.drivers.contracts import LabelDriver, LabelModel, LabelPalette
from gateway.labels.bindings import LabelBindings
from gateway.labels.config import LabelsConfig
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


PANELS = {  # label → its panel, as the access point knows it
    "00000000000000A1": {"width": 296, "height": 128, "palette": "bwr"},
    "00000000000000A2": {"width": 400, "height": 300, "palette": "bwr"},
    "00000000000000A3": {"width": 800, "height": 480, "palette": "bwr"},
    "00000000000000A4": {"width": 640, "height": 384, "palette": "bwy"},
}


def panel_text(panel: Mapping[str, object]) -> str:
    return f"{panel['width']}x{panel['height']}:{panel['palette']}"


@contextlib.asynccontextmanager
async def gateway_run(
    path: Path, clock: SystemClock, esl: LabelDriver
) -> AsyncIterator[tuple[Database, LabelPipeline, LabelBindings]]:
    """One run of the gateway's label side on the database at ``path``."""
    async with Database.running(path, clock=clock) as db:
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
        try:
            yield db, pipeline, bindings
        finally:
            pipeline.close()


async def settled(
    db: Database, esl: Any, panels: Mapping[str, Mapping[str, object]]
) -> dict[str, tuple[int, int]] | None:
    """Each label's image size once every job is confirmed, drawn for its panel and shown by
    the label (None: not yet)."""
    rows = await db.fetchall(
        "SELECT j.label, j.state, j.model, j.content_hash, i.png FROM label_jobs j "
        "LEFT JOIN label_images i ON i.content_hash = j.content_hash"
    )
    if len(rows) != len(panels) or not all(
        r["state"] == "confirmed"
        and r["model"] == panel_text(panels[r["label"]])
        and esl.shown_hash(r["label"]) == r["content_hash"]
        for r in rows
    ):
        return None
    sizes = {}
    for row in rows:
        with Image.open(io.BytesIO(row["png"])) as image:
            sizes[str(row["label"])] = image.size
    return sizes


async def test_labels_seeded_before_their_first_check_in_show_content_for_their_panels(
    tmp_path: Path,
) -> None:
    clock = SystemClock(sync=ClockSyncSource.ASSUME)
    esl = make(
        "simulated.esl",
        "esl-1",
        clock=clock,
        seed=5,
        labels=[{"label_id": label, "model": panel} for label, panel in PANELS.items()],
        seconds_per_label=1.0,
        speed=200.0,
        checkin_interval_s=2.0,
    )
    db_path = tmp_path / "g.db"

    # Installation: prices and the seed file arrive before any label has checked in (the
    # access point is not read yet). Every job waits for its label's panel.
    async with gateway_run(db_path, clock, esl) as (db, pipeline, bindings):
        await db.write(
            "INSERT INTO price_book (sku, price, currency, name, version, updated_at) "
            "VALUES ('S1', '1.99', 'EUR', 'Milk 1 l', 1, '2026-11-23T09:00:00.000+00:00')"
        )
        await bindings.seed([(label, "S1") for label in PANELS])
        task = asyncio.create_task(pipeline.run())
        try:
            async with within(30):
                while (await pipeline.listing())["counts"] != {"awaiting_model": len(PANELS)}:
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        shown = await pipeline.show("00000000000000A3")
        assert (shown["job"]["state"], shown["panel"]) == ("awaiting_model", None)

    # The gateway restarts; the labels check in and each gets content for its own panel.
    async with gateway_run(db_path, clock, esl) as (db, pipeline, _):

        async def pump() -> None:
            await esl.open()
            async for reading in esl.readings():
                pipeline.on_reading("esl-1", reading)

        tasks = [asyncio.create_task(pump()), asyncio.create_task(pipeline.run())]
        try:
            async with within(30):
                while (sizes := await settled(db, esl, PANELS)) is None:
                    await asyncio.sleep(0.05)
            assert sizes == {
                label: (int(str(p["width"])), int(str(p["height"]))) for label, p in PANELS.items()
            }
            # A technician swaps the 2.9" panel of the first label for a 7.5" one.
            swapped = {**PANELS, "00000000000000A1": PANELS["00000000000000A3"]}
            esl.swap_panel("00000000000000A1", LabelModel(800, 480, LabelPalette.BWR))
            async with within(30):
                while (sizes := await settled(db, esl, swapped)) is None:
                    await asyncio.sleep(0.05)
            assert sizes["00000000000000A1"] == (800, 480)
            states = {str(r["state"]) for r in await db.fetchall("SELECT state FROM label_jobs")}
            assert states == {"confirmed"}  # nothing ever failed for good
            audit = await db.fetchall("SELECT DISTINCT state FROM label_audit")
            assert "failed_permanent" not in {str(r["state"]) for r in audit}
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await esl.close()
