"""Label jobs at store scale: 50 000 SKUs on 60 000 bound labels.

1. A full price batch (every price changes) is committed → all 60 000 label job rows are
   committed (goal ≤ 2 s), timed from the downlink's hook to the planning commit; a raw
   ``INSERT … SELECT`` of the same join is the baseline measured in the same run.
2. The rendering backlog this leaves: rate measured on a sample (one core, the render thread),
   projected to the whole backlog (``--full-render`` renders all of it).
3. A flash sale flipping 10 000 labels: pre-rendered within the look-ahead, then, with the
   pipeline's own loops running, every job handed to a counting driver ≤ 1 s after the
   effective time (timed from the effective instant to the last ``push``).

Prints figures; not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from gateway.clock import ClockSyncSource, SystemClock, isoformat_utc
from gateway.drivers.contracts import LabelContent
from gateway.labels.config import LabelsConfig
from gateway.labels.pipeline import LabelPipeline
from gateway.store import Database
from gateway.store.outbox import Outbox

SKUS = 50_000
LABELS = 60_000
FLIP_LABELS = 10_000
FLIP_SKUS = 1_000  # the sale's SKUs: ten labels each (faces are drawn once per chunk)
RENDER_SAMPLE = 2_000


class CountingDriver:
    """Accepts everything at once and counts (the contract, no radio)."""

    def __init__(self) -> None:
        self.pushed = 0
        self.last_push_at = 0.0

    @property
    def labels_per_minute(self) -> float:
        return 10_000_000.0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def readings(self):  # type: ignore[no-untyped-def]  # never pumped here
        await asyncio.Event().wait()
        yield None

    async def push(self, content: LabelContent) -> None:  # noqa: ARG002
        self.pushed += 1
        self.last_push_at = time.perf_counter()

    async def flash(self, label_id: str, *, seconds: float = 10.0) -> None:  # noqa: ARG002
        return None


async def checked_in(db: Database, now: str) -> None:
    """Every bound label has checked in with its panel (labels no driver has heard are not
    drawn: they wait for their panel)."""
    await db.write(
        "INSERT INTO label_shown (label, at, device, model) "
        "SELECT label, ?, 'esl', '296x128:bwr' FROM label_bindings",
        (now,),
    )


async def populate(db: Database, now: str) -> None:
    await db.write_many(
        "INSERT INTO price_book (sku, price, currency, name, version, updated_at) "
        "VALUES (?, ?, 'EUR', ?, 1, ?)",
        ((f"{n:013d}", f"{1 + n % 900 / 100:.2f}", f"Product {n}", now) for n in range(SKUS)),
    )
    await db.write_many(
        "INSERT INTO label_bindings (label, sku, source, local_override, updated_at) "
        "VALUES (?, ?, 'hq', 0, ?)",
        ((f"{n:016X}", f"{n % SKUS:013d}", now) for n in range(LABELS)),
    )
    await checked_in(db, now)


async def bench_full_batch(db: Database, pipeline: LabelPipeline, full_render: bool) -> None:
    started = time.perf_counter()
    await db.write(
        "CREATE TABLE baseline AS SELECT b.label, b.sku, p.price FROM label_bindings b "
        "JOIN price_book p ON p.sku = b.sku"
    )
    baseline = time.perf_counter() - started
    await db.write("DROP TABLE baseline")
    await pipeline.plan()  # the labels' current content: jobs exist before the batch
    await db.write("UPDATE label_jobs SET state = 'confirmed'")
    # The batch: every price changes, committed in one transaction (as the downlink does).
    await db.write("UPDATE price_book SET price = printf('%.2f', price + 0.1), version = 2")
    started = time.perf_counter()
    pipeline.on_prices_applied(2, None)  # the downlink's hook, right after its commit
    await pipeline.plan_pending()
    planned = time.perf_counter() - started
    row = await db.fetchone(
        "SELECT count(*) AS n FROM label_jobs WHERE price_version = 2 AND state = 'queued'"
    )
    jobs = int(row["n"]) if row else 0
    print(f"full batch: {SKUS} SKUs, {LABELS} bound labels")
    print(f"  raw INSERT…SELECT of the join (baseline)  {baseline * 1000:8.1f} ms")
    print(f"  batch committed → {jobs} job rows committed {planned * 1000:8.1f} ms")
    print(f"  ratio to baseline                          {planned / baseline:8.1f}x")
    print(f"  goal ≤ 2000 ms: {'met' if planned <= 2.0 and jobs == LABELS else 'NOT met'}")
    started = time.perf_counter()
    rendered = 0
    while (full_render or rendered < RENDER_SAMPLE) and (count := await pipeline.render_some()):
        rendered += count
    elapsed = time.perf_counter() - started
    rate = rendered / elapsed if elapsed else 0.0
    backlog = LABELS / rate if rate else float("inf")
    what = "whole backlog" if full_render else f"sample of {rendered}"
    print(f"  rendering ({what}): {rate:,.0f} labels/s on the render thread")
    print(f"  rendering backlog of {LABELS} labels: {backlog:,.0f} s (projected from the rate)")


async def bench_flip(tmp: Path) -> None:
    clock = SystemClock(sync=ClockSyncSource.ASSUME)
    driver = CountingDriver()
    async with Database.running(tmp / "flip.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("receipts", "alerts"))
        now = clock.utc_now()
        await db.write_many(
            "INSERT INTO price_book (sku, price, currency, name, version, updated_at) "
            "VALUES (?, '2.49', 'EUR', ?, 1, ?)",
            ((f"{n:013d}", f"Product {n}", isoformat_utc(now)) for n in range(FLIP_SKUS)),
        )
        await db.write_many(
            "INSERT INTO label_bindings (label, sku, source, local_override, updated_at) "
            "VALUES (?, ?, 'hq', 0, ?)",
            (
                (f"{n:016X}", f"{n % FLIP_SKUS:013d}", isoformat_utc(now))
                for n in range(FLIP_LABELS)
            ),
        )
        await checked_in(db, isoformat_utc(now))
        start = (now + timedelta(seconds=40)).replace(microsecond=0)
        await db.write_many(
            "INSERT INTO promotions (id, sku, price, currency, reference_price, effective_from, "
            "effective_to, version) VALUES (?, ?, '1.99', 'EUR', '2.49', ?, ?, 2)",
            (
                (
                    f"sale-{n}",
                    f"{n:013d}",
                    isoformat_utc(start),
                    isoformat_utc(start + timedelta(hours=2)),
                )
                for n in range(FLIP_SKUS)
            ),
        )
        pipeline = LabelPipeline(
            database=db,
            outbox=outbox,
            alerts=None,
            clock=clock,
            config=LabelsConfig(lookahead_s=120),
            drivers=lambda: {"esl": driver},  # type: ignore[dict-item]
        )
        await pipeline.load()
        await pipeline.plan()
        await db.write(
            "UPDATE label_jobs SET state = 'confirmed', content_hash = 'x', model = '296x128:bwr'"
        )
        runner = asyncio.create_task(pipeline.run(), name="labels")
        while True:
            row = await db.fetchone(
                "SELECT count(*) AS n, sum(content_hash IS NOT NULL) AS rendered "
                "FROM label_schedule"
            )
            if row and row["n"] == FLIP_LABELS and row["rendered"] == FLIP_LABELS:
                break
            if clock.utc_now() >= start:
                print("  NOT pre-rendered before the effective time (machine too busy?)")
                break
            await asyncio.sleep(0.2)
        ready = clock.utc_now()
        before = driver.pushed
        give_up = start + timedelta(seconds=30)
        while driver.pushed - before < FLIP_LABELS and clock.utc_now() < give_up:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        handed = driver.pushed - before
        effective = start.timestamp()
        last = time.time() - (time.perf_counter() - driver.last_push_at)
        after = last - effective
        print(f"flash sale: {FLIP_LABELS} labels ({FLIP_SKUS} SKUs) flipping at {start:%H:%M:%S}")
        print(f"  pre-rendered {(start - ready).total_seconds():.1f} s before the effective time")
        print(f"  {handed} jobs handed to the counting driver; last {after * 1000:.0f} ms after it")
        print(f"  goal ≤ 1000 ms: {'met' if handed == FLIP_LABELS and after <= 1.0 else 'NOT met'}")


async def main(full_render: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        clock = SystemClock(sync=ClockSyncSource.ASSUME)
        async with Database.running(tmp / "labels.db", clock=clock) as db:
            outbox = Outbox(db, clock)
            await outbox.open(("receipts", "alerts"))
            await populate(db, isoformat_utc(clock.utc_now()))
            pipeline = LabelPipeline(
                database=db,
                outbox=outbox,
                alerts=None,
                clock=clock,
                config=LabelsConfig(),
                drivers=dict,
            )
            await pipeline.load()
            try:
                await bench_full_batch(db, pipeline, full_render)
            finally:
                pipeline.close()
        await bench_flip(tmp)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full-render", action="store_true", help="render the whole backlog")
    asyncio.run(main(parser.parse_args().full_render))
