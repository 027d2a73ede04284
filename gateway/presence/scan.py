"""``storegw ble scan``: what the receivers hear for a few seconds, decoded, for a technician
setting up zones and beacons. Enrolled tags and configured fixed beacons are shown by name,
other beacons by the id they broadcast (what a tag is enrolled by), and every other device by
its pseudonym (docs/privacy.md): no address leaves the daemon."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.drivers.contracts import Advertisement, Reading
from gateway.hub import ReadingHub
from gateway.presence.identity import Pseudonyms

__all__ = ["MAX_SCAN_S", "ScanSession", "scan"]

MAX_SCAN_S = 60.0
_MAX_ROWS = 500


@dataclass(slots=True)
class _Row:
    receiver: str
    who: str
    kind: str
    rssi: list[int] = field(default_factory=list)
    battery_mv: int | None = None
    temperature_c: float | None = None
    measured_power: int | None = None


class ScanSession:
    """Adverts summed up per receiver and sender, as they arrive from the hub."""

    def __init__(
        self,
        *,
        tags: dict[str, str],
        fixed: dict[str, str],
        key_names: frozenset[str],
        pseudonyms: Pseudonyms,
    ) -> None:
        self._tags, self._fixed, self._keys = tags, fixed, key_names
        self._pseudonyms = pseudonyms
        self._by_address: dict[str, str] = {}  # a fixed beacon's TLM frames: in memory only
        self._rows: dict[tuple[str, str], _Row] = {}
        self.adverts = 0
        self.dropped = 0

    def on_reading(self, _device: str, reading: Reading) -> None:
        if not isinstance(reading, Advertisement):
            return
        self.adverts += 1
        who, kind = self._name(reading)
        key = (reading.receiver, who)
        row = self._rows.get(key)
        if row is None:
            if len(self._rows) >= _MAX_ROWS:
                self.dropped += 1
                return
            row = self._rows[key] = _Row(reading.receiver, who, kind)
        row.rssi.append(reading.rssi)
        if reading.measured_power is not None:
            row.measured_power = reading.measured_power
        if reading.telemetry is not None:
            row.battery_mv = reading.telemetry.battery_mv or row.battery_mv
            if reading.telemetry.temperature_c is not None:
                row.temperature_c = reading.telemetry.temperature_c

    def _name(self, advert: Advertisement) -> tuple[str, str]:
        beacon = str(advert.beacon) if advert.beacon is not None else None
        if beacon is not None:
            if beacon in self._tags:
                return self._tags[beacon], "tag"
            if beacon in self._fixed:
                self._by_address[advert.address] = self._fixed[beacon]
                return self._fixed[beacon], "fixed beacon"
            return beacon, "beacon (not enrolled)"
        if advert.enrolled_key is not None and advert.enrolled_key in self._keys:
            return advert.enrolled_key, "enrolled device"
        fixed = self._by_address.get(advert.address)
        if fixed is not None:
            return fixed, "fixed beacon"
        return self._pseudonyms.of(advert.address, advert.observed_at), "device"

    def result(self, seconds: float) -> dict[str, Any]:
        rows = sorted(self._rows.values(), key=lambda r: (r.receiver, -max(r.rssi)))
        return {
            "seconds": seconds,
            "adverts": self.adverts,
            "senders_dropped": self.dropped,
            "heard": [
                {
                    "receiver": row.receiver,
                    "who": row.who,
                    "kind": row.kind,
                    "adverts": len(row.rssi),
                    "rssi_max": max(row.rssi),
                    "rssi_median": statistics.median(row.rssi),
                    "measured_power": row.measured_power,
                    "battery_mv": row.battery_mv,
                    "temperature_c": row.temperature_c,
                }
                for row in rows
            ],
        }


async def scan(
    hub: ReadingHub,
    session: ScanSession,
    seconds: float,
    *,
    wait: Callable[[float], Any] = asyncio.sleep,
) -> dict[str, Any]:
    """Listen for ``seconds`` (at most :data:`MAX_SCAN_S`) and sum up what was heard."""
    seconds = min(max(seconds, 0.5), MAX_SCAN_S)
    unsubscribe = hub.subscribe(session.on_reading)
    try:
        await wait(seconds)
    finally:
        unsubscribe()
    return session.result(seconds)
