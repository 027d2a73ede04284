"""From one advertisement's AD maps to what the contract's :class:`Advertisement` carries.

Every beacon driver (the simulated receiver, the BlueZ scanner, remote receiver nodes) fills
``beacon``, ``measured_power`` and ``telemetry`` through :func:`beacon_fields`, so the core never
parses a frame and all drivers name a beacon the same way (``BeaconId`` keys: iBeacon
``<uuid>:<major>:<minor>``, AltBeacon ``<20-byte id hex>``, Eddystone ``<namespace>:<instance>``
in lower-case hex).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devices.ble.frames import (
    AltBeacon,
    EddystoneTlm,
    EddystoneUid,
    EddystoneUrl,
    IBeacon,
    decode_beacons,
)
from gateway.drivers.contracts import BeaconFormat, BeaconId, BeaconTelemetry

__all__ = ["BeaconFields", "beacon_fields", "beacon_id"]


@dataclass(frozen=True, slots=True)
class BeaconFields:
    """The decoded part of an advertisement; all ``None`` when it carries no beacon frame."""

    beacon: BeaconId | None = None
    measured_power: int | None = None
    telemetry: BeaconTelemetry | None = None


NOT_A_BEACON = BeaconFields()


def beacon_id(frame: IBeacon | AltBeacon | EddystoneUid) -> BeaconId:
    """The identity a frame broadcasts, in the contract's canonical text."""
    match frame:
        case IBeacon():
            return BeaconId(BeaconFormat.IBEACON, f"{frame.uuid}:{frame.major}:{frame.minor}")
        case AltBeacon():
            return BeaconId(BeaconFormat.ALTBEACON, frame.beacon_id.hex())
        case EddystoneUid():
            key = f"{frame.namespace.hex()}:{frame.instance.hex()}"
            return BeaconId(BeaconFormat.EDDYSTONE, key)


def beacon_fields(
    manufacturer_data: Mapping[int, bytes], service_data: Mapping[str, bytes]
) -> BeaconFields:
    """Identity, calibrated power at 1 m and telemetry of one advertisement.

    The first identity frame wins (an advertisement carries one in practice); a URL frame gives
    power but no identity; a TLM frame gives telemetry only. Never raises on what a radio sends.
    """
    frames = decode_beacons(manufacturer_data, service_data)
    if not frames:
        return NOT_A_BEACON
    beacon: BeaconId | None = None
    power: int | None = None
    telemetry: BeaconTelemetry | None = None
    for frame in frames:
        match frame:
            case IBeacon() | AltBeacon() | EddystoneUid() if beacon is None:
                beacon = beacon_id(frame)
                power = _power_1m(frame)
            case EddystoneUrl() if power is None:
                power = frame.tx_power_1m
            case EddystoneTlm():
                telemetry = BeaconTelemetry(
                    battery_mv=frame.battery_mv,
                    temperature_c=frame.temperature_c,
                    advert_count=frame.advert_count,
                    uptime_s=frame.uptime_s,
                )
    return BeaconFields(beacon, power, telemetry)


def _power_1m(frame: IBeacon | AltBeacon | EddystoneUid) -> int:
    match frame:
        case IBeacon():
            return frame.measured_power
        case AltBeacon():
            return frame.reference_rssi
        case EddystoneUid():
            return frame.tx_power_1m
