"""A store with the label pipeline on real SQLite, and a counting fake ESL driver."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.alerts import Alerts
from gateway.clock import FakeClock
from gateway.drivers.contracts import (
    LabelContent,
    LabelDriver,
    LabelModel,
    LabelPalette,
    LabelReport,
    LabelReportKind,
    Reading,
)
from gateway.errors import DriverConfigError, DriverUnavailableError, LabelPanelMismatchError
from gateway.hq.prices import build_price_messages
from gateway.labels.bindings import LabelBindings
from gateway.labels.config import LabelsConfig
from gateway.labels.localization import DEFAULT_LOCALE
from gateway.labels.pipeline import LabelPipeline
from gateway.prices.book import WasPrice
from gateway.prices.downlink import PriceDownlink, PriceDownlinkSettings
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.link import InboundMessage
from gateway.sync.signing import Verifier

STREAMS = ("stock", "dwell", "receipts", "alerts")
MODEL = LabelModel(296, 128, LabelPalette.BWR, has_led=True)


@dataclass
class CountingDriver:
    """A small working ESL system: counts pushes, confirms on request, can be told to fail."""

    name: str = "esl"
    rate: float = 600.0  # labels per minute
    clock: FakeClock = field(default_factory=FakeClock)
    pushes: list[LabelContent] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # labels this system does not know
    # Labels with another panel than MODEL: their reports carry it, content of another size
    # is refused naming it (None: reports carry no model; refused without naming a panel).
    panels: dict[str, LabelModel | None] = field(default_factory=dict)
    unavailable: bool = False
    shows: dict[str, str | None] = field(default_factory=dict)

    @property
    def labels_per_minute(self) -> float:
        return self.rate

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def readings(self) -> AsyncIterator[Reading]:  # pragma: no cover - not pumped
        await asyncio.Event().wait()
        yield LabelReport("never", LabelReportKind.SEEN, 0.0, self.clock.utc_now())

    async def push(self, content: LabelContent) -> None:
        if self.unavailable:
            raise DriverUnavailableError("access point does not answer")
        if content.label_id in self.refuse:
            raise DriverConfigError(f"unknown label {content.label_id}", driver=self.name)
        if content.label_id in self.panels:
            panel = self.panels[content.label_id]
            size = (content.model.width, content.model.height)
            if panel is None or size != (panel.width, panel.height):
                raise LabelPanelMismatchError(
                    f"content is {size[0]}x{size[1]}, not the label's panel",
                    label=content.label_id,
                    panel=panel,
                    driver=self.name,
                )
        self.pushes.append(content)

    async def flash(self, label_id: str, *, seconds: float = 10.0) -> None:
        return None

    def pushed(self, label: str) -> list[str]:
        return [c.content_hash for c in self.pushes if c.label_id == label]

    def report(
        self,
        label: str,
        kind: LabelReportKind,
        content_hash: str | None,
        evidence: str = "fake: xfer complete",
    ) -> LabelReport:
        if kind is LabelReportKind.CONFIRMED:
            self.shows[label] = content_hash
        return LabelReport(
            label,
            kind,
            self.clock.monotonic(),
            self.clock.utc_now(),
            content_hash=content_hash,
            evidence=evidence,
            model=self.panels.get(label, MODEL),
        )


@dataclass
class LabelStore:
    db: Database
    outbox: Outbox
    alerts: Alerts
    downlink: PriceDownlink
    bindings: LabelBindings
    pipeline: LabelPipeline
    clock: FakeClock
    drivers: dict[str, LabelDriver | None]
    version: int = 0

    async def prices(
        self,
        items: list[dict[str, Any]],
        *,
        kind: str = "delta",
        promotions: list[dict[str, Any]] | None = None,
        cancel: list[str] | None = None,
    ) -> None:
        self.version += 1
        for payload in build_price_messages(
            items,
            version=self.version,
            kind=kind,  # type: ignore[arg-type]
            issued_at=self.clock.utc_now(),
            stores=["s1"],
            promotions=promotions or [],
            cancel_promotions=cancel or [],
        ):
            await self.downlink.on_message(
                InboundMessage("retail/v1/s1/down/prices", payload, 1, False, None, None)
            )

    async def settle(self) -> None:
        """Apply the reports so far, plan what the hooks asked for and render everything (no
        dispatch)."""
        while await self.pipeline.process_reports():
            pass
        await self.pipeline.plan_pending()
        await self.pipeline.render_all()

    def check_in(self, label: str, model: LabelModel | None = MODEL, device: str = "esl") -> None:
        """The label checks in with its ESL system (a SEEN report, not yet applied)."""
        self.pipeline.on_reading(device, check_in_report(self.clock, label, model))

    async def jobs(self) -> dict[str, dict[str, Any]]:
        rows = await self.db.fetchall("SELECT * FROM label_jobs ORDER BY label")
        return {str(r["label"]): dict(r) for r in rows}

    async def job(self, label: str) -> dict[str, Any]:
        return (await self.jobs())[label]

    async def audit(self, label: str | None = None) -> list[tuple[str, str]]:
        rows = await self.db.fetchall(
            "SELECT label, event FROM label_audit WHERE ?1 IS NULL OR label = ?1 ORDER BY id",
            (label,),
        )
        return [(str(r["label"]), str(r["event"])) for r in rows]

    async def receipts(self) -> list[tuple[str, dict[str, Any]]]:
        events = await self.outbox.read(
            "receipts", after_seq=0, max_events=100_000, max_bytes=10**9
        )
        return [
            (e.type, json.loads(e.body))
            for e in events
            if e.type.startswith("label.") and e.type not in {"label.bound", "label.unbound"}
        ]

    def alert_keys(self) -> set[str]:
        return {alert.key for alert in self.alerts.active()}

    async def confirm_all(self, driver: CountingDriver) -> None:
        """The ESL system delivers everything pushed so far (latest per label)."""
        latest: dict[str, str] = {}
        for content in driver.pushes:
            latest[content.label_id] = content.content_hash
        for label, digest in latest.items():
            if driver.shows.get(label) != digest:
                self.pipeline.on_reading(
                    driver.name, driver.report(label, LabelReportKind.CONFIRMED, digest)
                )
        while await self.pipeline.process_reports():
            pass


def check_in_report(clock: FakeClock, label: str, model: LabelModel | None) -> LabelReport:
    """A label checking in: SEEN with its panel (None: a driver that reports no model)."""
    return LabelReport(
        label,
        LabelReportKind.SEEN,
        clock.monotonic(),
        clock.utc_now(),
        evidence="fake: check-in",
        model=model,
    )


def item(sku: str, price: str, **extra: Any) -> dict[str, Any]:
    return {"sku": sku, "price": price, "currency": "EUR", "name": f"Item {sku}", **extra}


def promo(
    pid: str, sku: str, price: str, start: datetime, end: datetime, **extra: Any
) -> dict[str, Any]:
    return {
        "id": pid,
        "sku": sku,
        "price": price,
        "currency": "EUR",
        "effective_from": start.isoformat(),
        "effective_to": end.isoformat(),
        **extra,
    }


@asynccontextmanager
async def label_store(
    tmp_path: Path,
    *,
    clock: FakeClock | None = None,
    drivers: dict[str, LabelDriver | None] | None = None,
    heard_on_bind: bool = True,
    was_price: WasPrice = "hq",
    timezone: str = "UTC",
    locale: str = DEFAULT_LOCALE,
    **config: Any,
) -> AsyncIterator[LabelStore]:
    """A store on real SQLite. With ``heard_on_bind`` a label checks in (SEEN, ``MODEL``,
    through the first driver) when it is first bound, as labels on the shelf for a while do;
    without, labels check in only when a test says so (``LabelStore.check_in``)."""
    clock = clock or FakeClock()
    driver_map: dict[str, LabelDriver | None] = (
        drivers if drivers is not None else {"esl": CountingDriver(clock=clock)}
    )
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
            config=LabelsConfig(**config),
            drivers=lambda: driver_map,
            timezone=timezone,
            locale=locale,
            was_price=was_price,
            rng=random.Random(1),
        )
        await pipeline.load()
        downlink = PriceDownlink(
            database=db,
            outbox=outbox,
            alerts=alerts,
            clock=clock,
            verifier=Verifier({}),
            store_id="s1",
            settings=PriceDownlinkSettings(),
            on_applied=pipeline.on_prices_applied,
        )
        await downlink.load()
        heard: set[str] = set()
        first_driver = next(iter(driver_map), "esl")

        def on_change(label: str) -> None:
            pipeline.on_bindings_changed([label])
            if heard_on_bind and label not in heard:
                heard.add(label)
                pipeline.on_reading(first_driver, check_in_report(clock, label, MODEL))

        bindings = LabelBindings(db, outbox, clock, on_change=on_change)
        head = await db.fetchone("SELECT value FROM meta WHERE key = 'price_head'")
        try:
            yield LabelStore(
                db,
                outbox,
                alerts,
                downlink,
                bindings,
                pipeline,
                clock,
                driver_map,
                version=int(head["value"]) if head else 0,
            )
        finally:
            pipeline.close()


def later(clock: FakeClock, **delta: float) -> datetime:
    return clock.utc_now() + timedelta(**delta)
