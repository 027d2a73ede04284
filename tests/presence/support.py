"""A presence service on real SQLite with a fake clock, fed advertisements by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from gateway.alerts import Alerts
from gateway.clock import FakeClock
from gateway.drivers.contracts import (
    Advertisement,
    BeaconFormat,
    BeaconId,
    BeaconTelemetry,
)
from gateway.presence.config import PresenceConfig
from gateway.presence.enrolment import EnrolmentBook
from gateway.presence.service import PresenceService
from gateway.store import Database
from gateway.store.outbox import Outbox

STORE_UUID = UUID("5f0c1a2e-8d7b-4c4e-9a61-3f2b7d9e0c11")
PHONE = "5A:11:22:33:44:55"  # a resolvable private address (top bits 01)


def cart(minor: int) -> BeaconId:
    return BeaconId(BeaconFormat.IBEACON, f"{STORE_UUID}:100:{minor}")


MARKER = BeaconId(BeaconFormat.EDDYSTONE, "00112233445566778899:0000000000e1")


def config(**overrides: Any) -> PresenceConfig:
    base: dict[str, Any] = {
        "aggregate_interval_s": 60,
        "zones": [
            {"name": "produce", "receivers": ["rx-a"], "enter_rssi": -65},
            {"name": "dairy", "receivers": ["rx-b"], "enter_rssi": -65},
        ],
        "tags": [{"name": "cart-1", "beacon": str(cart(1))}],
        "fixed_beacons": [
            {"name": "door", "beacon": str(MARKER), "battery_low_mv": 2500, "missing_after_s": 60}
        ],
    }
    return PresenceConfig.model_validate(base | overrides)


@dataclass
class Floor:
    service: PresenceService
    outbox: Outbox
    alerts: Alerts
    clock: FakeClock
    database: Database
    drivers: dict[str, object] = field(default_factory=dict)

    def hear(
        self,
        receiver: str,
        rssi: int,
        *,
        address: str = "C1:00:00:00:00:01",
        beacon: BeaconId | None = None,
        telemetry: BeaconTelemetry | None = None,
        enrolled_key: str | None = None,
    ) -> None:
        self.service.on_reading(
            "ble",
            Advertisement(
                receiver=receiver,
                address=address,
                rssi=rssi,
                monotonic=self.clock.monotonic(),
                observed_at=self.clock.utc_now(),
                beacon=beacon,
                telemetry=telemetry,
                enrolled_key=enrolled_key,
            ),
        )

    async def stay(self, seconds: float, *sightings: tuple[str, int, dict[str, Any]]) -> None:
        """``seconds`` of adverts every 0.5 s (each sighting each time), ticking each second."""
        steps = int(seconds * 2)
        for step in range(steps):
            for receiver, rssi, kwargs in sightings:
                self.hear(receiver, rssi, **kwargs)
            self.clock.advance(0.5)
            if step % 2:
                await self.service.tick()


@asynccontextmanager
async def floor(tmp_path: Path, **overrides: Any) -> AsyncIterator[Floor]:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("dwell", "alerts"))
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        drivers: dict[str, object] = {}
        service = PresenceService(
            outbox=outbox,
            alerts=alerts,
            clock=clock,
            config=config(**overrides),
            timezone="Europe/Berlin",
            beacon_devices=("ble",),
            driver=drivers.get,
            enrolment=EnrolmentBook(db),
        )
        await service.load()
        yield Floor(service, outbox, alerts, clock, db, drivers)
