"""Fixed beacons' health: last seen, battery and temperature (Eddystone-TLM), and which are
missing or low: sans-IO.

Fixed beacons are configured by the beacon id they broadcast. An Eddystone beacon interleaves
UID frames (its id) and TLM frames (its telemetry, no id) from one address, so the address a
fixed beacon's id was last heard from is remembered — in memory only, and only for configured
fixed beacons (store hardware, not people) — to give its TLM frames a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.clock import isoformat_utc
from gateway.drivers.contracts import Advertisement

__all__ = ["BeaconFleet", "BeaconHealth", "FixedBeacon", "FleetAlert"]


@dataclass(frozen=True, slots=True)
class FixedBeacon:
    name: str
    beacon: str
    battery_low_mv: int
    missing_after_s: float


@dataclass(slots=True)
class BeaconHealth:
    spec: FixedBeacon
    last_seen: float | None = None  # monotonic
    last_seen_at: datetime | None = None
    receiver: str | None = None
    rssi: int | None = None
    battery_mv: int | None = None
    temperature_c: float | None = None
    missing: bool = False
    battery_low: bool = False

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "beacon": self.spec.beacon,
            "last_seen": isoformat_utc(self.last_seen_at) if self.last_seen_at else None,
            "seconds_ago": round(now - self.last_seen, 1) if self.last_seen is not None else None,
            "receiver": self.receiver,
            "rssi": self.rssi,
            "battery_mv": self.battery_mv,
            "temperature_c": self.temperature_c,
            "state": "missing" if self.missing else "battery low" if self.battery_low else "ok",
        }


@dataclass(frozen=True, slots=True)
class FleetAlert:
    """Raise (``active``) or clear alert ``key``."""

    key: str
    active: bool
    message: str
    details: dict[str, Any]


class BeaconFleet:
    def __init__(self, beacons: list[FixedBeacon], started: float) -> None:
        self._by_id = {beacon.beacon: BeaconHealth(beacon) for beacon in beacons}
        self._by_address: dict[str, BeaconHealth] = {}
        self._started = started

    def __contains__(self, beacon_id: str) -> bool:
        return beacon_id in self._by_id

    def heard(self, advert: Advertisement) -> bool:
        """Take a sighting; True if it was one of the fixed beacons'."""
        health: BeaconHealth | None = None
        if advert.beacon is not None:
            health = self._by_id.get(str(advert.beacon))
            if health is not None:
                self._by_address[advert.address] = health
        elif advert.telemetry is not None:
            health = self._by_address.get(advert.address)
        if health is None:
            return False
        health.last_seen, health.last_seen_at = advert.monotonic, advert.observed_at
        health.receiver, health.rssi = advert.receiver, advert.rssi
        if advert.telemetry is not None:
            if advert.telemetry.battery_mv is not None:
                health.battery_mv = advert.telemetry.battery_mv
            if advert.telemetry.temperature_c is not None:
                health.temperature_c = advert.telemetry.temperature_c
        return True

    def check(self, now: float) -> list[FleetAlert]:
        """Alerts to raise or clear now (each state change once)."""
        alerts: list[FleetAlert] = []
        for health in self._by_id.values():
            spec = health.spec
            since = health.last_seen if health.last_seen is not None else self._started
            missing = now - since > spec.missing_after_s
            if missing != health.missing:
                health.missing = missing
                unheard = round(now - since)
                alerts.append(
                    FleetAlert(
                        f"beacon.missing:{spec.name}",
                        missing,
                        f"beacon {spec.name} not heard for {unheard} s"
                        if missing
                        else f"beacon {spec.name} heard again",
                        {"beacon": spec.beacon, "unheard_s": unheard},
                    )
                )
            low = health.battery_mv is not None and health.battery_mv < spec.battery_low_mv
            if low != health.battery_low:
                health.battery_low = low
                alerts.append(
                    FleetAlert(
                        f"beacon.battery_low:{spec.name}",
                        low,
                        f"beacon {spec.name} battery {health.battery_mv} mV"
                        + (f" < {spec.battery_low_mv} mV" if low else ""),
                        {"beacon": spec.beacon, "battery_mv": health.battery_mv},
                    )
                )
        return alerts

    def listing(self, now: float) -> list[dict[str, Any]]:
        return [health.as_dict(now) for health in self._by_id.values()]
