"""Pure encoders for the BLE frames real beacons send (research/ble.md), used by the simulator.

These produce the bytes *after* the company id (manufacturer data) or service UUID (service
data), as bleak reports them.
"""

from __future__ import annotations

import struct
from uuid import UUID

__all__ = [
    "APPLE_COMPANY_ID",
    "EDDYSTONE_SERVICE_UUID",
    "eddystone_tlm",
    "eddystone_uid",
    "ibeacon",
]

APPLE_COMPANY_ID = 0x004C
EDDYSTONE_SERVICE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"


def ibeacon(beacon_uuid: UUID, major: int, minor: int, measured_power: int) -> bytes:
    """iBeacon payload: 02 15, 16-byte UUID, major and minor (u16 BE), power at 1 m (int8)."""
    if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF):
        raise ValueError("major and minor are 16-bit")
    if not -128 <= measured_power < 0:
        raise ValueError("measured power is a negative int8 (dBm at 1 m)")
    return b"\x02\x15" + beacon_uuid.bytes + struct.pack(">HHb", major, minor, measured_power)


def eddystone_uid(tx_power_0m: int, namespace: bytes, instance: bytes) -> bytes:
    """Eddystone-UID frame: type 0x00, tx power at 0 m, 10-byte namespace, 6-byte instance."""
    if len(namespace) != 10 or len(instance) != 6:
        raise ValueError("namespace is 10 bytes and instance 6 bytes")
    return struct.pack(">Bb", 0x00, tx_power_0m) + namespace + instance + b"\x00\x00"


def eddystone_tlm(
    battery_mv: int, temperature_c: float | None, advert_count: int, uptime_s: float
) -> bytes:
    """Eddystone-TLM (unencrypted, version 0): battery mV, temperature 8.8 signed fixed point
    (0x8000 when unknown), advert count, time since power-on in 0.1 s units."""
    temperature = 0x8000 if temperature_c is None else round(temperature_c * 256) & 0xFFFF
    return struct.pack(
        ">BBHHII",
        0x20,
        0x00,
        battery_mv,
        temperature,
        advert_count & 0xFFFFFFFF,
        round(uptime_s * 10) & 0xFFFFFFFF,
    )
