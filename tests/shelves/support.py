"""A shelf under test: the shelves service on real storage, fed samples by a fake clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gateway.alerts import Alerts
from gateway.clock import FakeClock
from gateway.drivers.contracts import ScaleStatus, WeightSample
from gateway.shelves.config import ShelvesConfig
from gateway.shelves.service import ShelfService
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.wire import validate_event

UNIT = 200.0


@dataclass
class FakeScale:
    """A ScaleDriver by shape: remembers tares."""

    tared: list[str] = field(default_factory=list)
    channels: tuple[str, ...] = ("ch1",)

    async def open(self) -> None: ...

    def readings(self) -> AsyncIterator[WeightSample]:
        raise NotImplementedError

    async def close(self) -> None: ...

    async def zero(self, channel: str) -> None: ...

    async def tare(self, channel: str) -> None:
        self.tared.append(channel)


@dataclass
class Shelf:
    service: ShelfService
    outbox: Outbox
    alerts: Alerts
    clock: FakeClock
    scale: FakeScale
    up: dict[str, bool]
    flip: float = 0.4

    async def hold(self, seconds: float, grams: float | None, *, stable: bool = True) -> None:
        """Samples at 10 Hz on shelf-a/ch1, ticking the service once a second."""
        for step in range(round(seconds * 10)):
            self.clock.advance(0.1)
            self.flip = -self.flip
            self.service.on_reading(
                "shelf-a",
                WeightSample(
                    channel="ch1",
                    gross_grams=None if grams is None else grams + self.flip,
                    net_grams=None,
                    stable=stable,
                    status=ScaleStatus.OK if grams is not None else ScaleStatus.OVERLOAD,
                    monotonic=self.clock.monotonic(),
                    observed_at=self.clock.utc_now(),
                ),
            )
            if step % 10 == 9:
                await self.service.tick(self.clock.monotonic())
                await self.service.flush()
        await self.service.flush()

    async def events(self) -> list[tuple[str, dict[str, object]]]:
        found = await self.outbox.read("stock", after_seq=0, max_events=1000, max_bytes=10**9)
        for event in found:
            validate_event(event.wire())
        return [(event.type, json.loads(event.body)) for event in found]

    def alert_keys(self) -> list[str]:
        return [alert.key for alert in self.alerts.active()]


@asynccontextmanager
async def shelf(tmp_path: Path, **shelves: object) -> AsyncIterator[Shelf]:
    clock = FakeClock()
    config = ShelvesConfig.model_validate(
        {
            "low_hold_s": 3,
            "clear_hold_s": 3,
            "activity_interval_s": 60,
            "slots": [
                {
                    "slot": "s-1",
                    "device": "shelf-a",
                    "channel": "ch1",
                    "sku": "A",
                    "unit_grams": UNIT,
                    "tray_tare_grams": 50,
                    "min_count": 2,
                }
            ],
            **shelves,
        }
    )
    scale = FakeScale()
    up = {"shelf-a": True}
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("stock", "alerts"))
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        service = ShelfService(
            database=db,
            outbox=outbox,
            alerts=alerts,
            clock=clock,
            config=config,
            scale_devices=["shelf-a"],
            device_up=lambda name: up[name],
            driver=lambda name: scale if name == "shelf-a" else None,
        )
        await service.load()
        yield Shelf(service, outbox, alerts, clock, scale, up)
