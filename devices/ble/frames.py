"""Beacon frames (iBeacon, AltBeacon, Eddystone UID/URL/TLM): pure encoders and decoders.

Bytes are as bleak (and :mod:`devices.ble.advertising`) report them: manufacturer data *after*
the 16-bit company id, service data *after* the service UUID. The layouts are the
specifications' (research/ble.md): Apple's Proximity Beacon Specification (iBeacon), the
AltBeacon Protocol Specification v1.0 and Google's Eddystone specification.

Decoders never raise on what a radio delivers: a frame that is truncated, too long, carries a
wrong length or type field, or a value its specification forbids is not a beacon (``None``).
Encoders raise ``ValueError`` for values no beacon can send. Two traps of public decoders are
avoided on purpose: TLM temperature is *signed* 8.8 fixed point, and TLM uptime counts tenths
of a second.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias
from uuid import UUID

__all__ = [
    "APPLE_COMPANY_ID",
    "EDDYSTONE_SERVICE_UUID",
    "AltBeacon",
    "BeaconFrame",
    "EddystoneTlm",
    "EddystoneUid",
    "EddystoneUrl",
    "IBeacon",
    "decode_altbeacon",
    "decode_beacons",
    "decode_eddystone",
    "decode_ibeacon",
    "eddystone_namespace",
    "eddystone_tlm",
    "eddystone_uid",
    "ibeacon",
]

APPLE_COMPANY_ID = 0x004C
EDDYSTONE_SERVICE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"

_IBEACON_PREFIX = b"\x02\x15"  # beacon type 0x02, then 0x15 (21) bytes follow
_ALTBEACON_CODE = b"\xbe\xac"
_UID, _URL, _TLM = 0x00, 0x10, 0x20
_TLM_UNENCRYPTED = 0x00
_TEMPERATURE_UNSUPPORTED = -0x8000  # 0x8000 as signed 8.8
_METRES_0_TO_1_DB = 41  # Eddystone states power at 0 m; 1 m is 41 dB weaker

_URL_SCHEMES = ("http://www.", "https://www.", "http://", "https://")
_URL_EXPANSIONS = (
    ".com/",
    ".org/",
    ".edu/",
    ".net/",
    ".info/",
    ".biz/",
    ".gov/",
    ".com",
    ".org",
    ".edu",
    ".net",
    ".info",
    ".biz",
    ".gov",
)


@dataclass(frozen=True, slots=True)
class IBeacon:
    """An iBeacon: proximity UUID, major, minor and the measured power at 1 m (dBm)."""

    uuid: UUID
    major: int
    minor: int
    measured_power: int


@dataclass(frozen=True, slots=True)
class AltBeacon:
    """An AltBeacon: a 20-byte beacon id, the reference RSSI at 1 m and the manufacturer's
    reserved byte. ``id1``/``id2``/``id3`` are the common subdivision (16 + 2 + 2 bytes)."""

    company_id: int
    beacon_id: bytes
    reference_rssi: int
    reserved: int

    @property
    def id1(self) -> UUID:
        return UUID(bytes=self.beacon_id[:16])

    @property
    def id2(self) -> int:
        return int.from_bytes(self.beacon_id[16:18], "big")

    @property
    def id3(self) -> int:
        return int.from_bytes(self.beacon_id[18:20], "big")


@dataclass(frozen=True, slots=True)
class EddystoneUid:
    """An Eddystone-UID: 10-byte namespace, 6-byte instance, tx power at 0 m (dBm)."""

    tx_power_0m: int
    namespace: bytes
    instance: bytes

    @property
    def tx_power_1m(self) -> int:
        return self.tx_power_0m - _METRES_0_TO_1_DB


@dataclass(frozen=True, slots=True)
class EddystoneUrl:
    """An Eddystone-URL: the expanded URL and the tx power at 0 m (dBm)."""

    tx_power_0m: int
    url: str

    @property
    def tx_power_1m(self) -> int:
        return self.tx_power_0m - _METRES_0_TO_1_DB


@dataclass(frozen=True, slots=True)
class EddystoneTlm:
    """Unencrypted Eddystone-TLM telemetry. ``None``: the beacon does not measure it.

    ``uptime_tenths`` is the raw counter (0.1 s units); :attr:`uptime_s` is seconds."""

    battery_mv: int | None
    temperature_c: float | None
    advert_count: int
    uptime_tenths: int

    @property
    def uptime_s(self) -> float:
        return self.uptime_tenths / 10


BeaconFrame: TypeAlias = IBeacon | AltBeacon | EddystoneUid | EddystoneUrl | EddystoneTlm


# --- decoders -----------------------------------------------------------------------------


def decode_ibeacon(company_id: int, data: bytes) -> IBeacon | None:
    """Apple manufacturer data ``02 15`` + UUID + major + minor (u16 BE) + power (int8 < 0)."""
    if company_id != APPLE_COMPANY_ID or len(data) != 23 or data[:2] != _IBEACON_PREFIX:
        return None
    major, minor, power = struct.unpack_from(">HHb", data, 18)
    if power >= 0:  # a power at 1 m is always negative dBm
        return None
    return IBeacon(UUID(bytes=bytes(data[2:18])), major, minor, power)


def decode_altbeacon(company_id: int, data: bytes) -> AltBeacon | None:
    """Manufacturer data (any company) ``be ac`` + 20-byte id + reference RSSI (0 to -127) +
    the manufacturer's reserved byte: exactly 24 bytes."""
    if not 0 <= company_id <= 0xFFFF or len(data) != 24 or data[:2] != _ALTBEACON_CODE:
        return None
    reference_rssi = struct.unpack_from(">b", data, 22)[0]
    if not -127 <= reference_rssi <= 0:
        return None
    return AltBeacon(company_id, bytes(data[2:22]), reference_rssi, data[23])


def decode_eddystone(data: bytes) -> EddystoneUid | EddystoneUrl | EddystoneTlm | None:
    """Service data of UUID 0xFEAA; the first byte is the frame type (UID, URL, TLM).

    Encrypted TLM (version 0x01), EID and unknown frame types are not decoded (``None``)."""
    if len(data) < 2:
        return None
    frame_type = data[0]
    if frame_type == _UID:
        return _decode_uid(data)
    if frame_type == _URL:
        return _decode_url(data)
    if frame_type == _TLM:
        return _decode_tlm(data)
    return None


def decode_beacons(
    manufacturer_data: Mapping[int, bytes], service_data: Mapping[str, bytes]
) -> tuple[BeaconFrame, ...]:
    """Every beacon frame in one advertisement (bleak's maps); empty: not a beacon."""
    frames: list[BeaconFrame] = []
    for company_id, data in manufacturer_data.items():
        frame: BeaconFrame | None = decode_ibeacon(company_id, data) or decode_altbeacon(
            company_id, data
        )
        if frame is not None:
            frames.append(frame)
    for service_uuid, data in service_data.items():
        if str(service_uuid).lower() == EDDYSTONE_SERVICE_UUID:
            eddystone = decode_eddystone(data)
            if eddystone is not None:
                frames.append(eddystone)
    return tuple(frames)


def _tx_power(byte: int) -> int | None:
    """Eddystone ranging data: int8 dBm at 0 m, -100 to +20 by the specification."""
    power = byte - 256 if byte > 127 else byte
    return power if -100 <= power <= 20 else None


def _decode_uid(data: bytes) -> EddystoneUid | None:
    # 20 bytes; 18 from beacons that truncate the two reserved bytes (service data length
    # 0x15 instead of 0x17, which the specification tolerates). The reserved bytes are not
    # checked: they are for future use.
    if len(data) not in {18, 20}:
        return None
    power = _tx_power(data[1])
    if power is None:
        return None
    return EddystoneUid(power, bytes(data[2:12]), bytes(data[12:18]))


def _decode_url(data: bytes) -> EddystoneUrl | None:
    if not 4 <= len(data) <= 20 or data[2] >= len(_URL_SCHEMES):  # 1 to 17 encoded bytes
        return None
    power = _tx_power(data[1])
    if power is None:
        return None
    parts = [_URL_SCHEMES[data[2]]]
    for byte in data[3:]:
        if byte < len(_URL_EXPANSIONS):
            parts.append(_URL_EXPANSIONS[byte])
        elif 0x21 <= byte <= 0x7E:  # printable US-ASCII; the rest is reserved
            parts.append(chr(byte))
        else:
            return None
    return EddystoneUrl(power, "".join(parts))


def _decode_tlm(data: bytes) -> EddystoneTlm | None:
    if len(data) != 14 or data[1] != _TLM_UNENCRYPTED:
        return None
    battery, temperature, count, uptime = struct.unpack_from(">HhII", data, 2)
    return EddystoneTlm(
        battery_mv=battery or None,  # 0: not supported (a USB-powered beacon)
        temperature_c=None if temperature == _TEMPERATURE_UNSUPPORTED else temperature / 256,
        advert_count=count,
        uptime_tenths=uptime,
    )


# --- encoders (the simulator's beacons) ---------------------------------------------------


def ibeacon(beacon_uuid: UUID, major: int, minor: int, measured_power: int) -> bytes:
    """iBeacon payload: 02 15, 16-byte UUID, major and minor (u16 BE), power at 1 m (int8)."""
    if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF):
        raise ValueError("major and minor are 16-bit")
    if not -128 <= measured_power < 0:
        raise ValueError("measured power is a negative int8 (dBm at 1 m)")
    return _IBEACON_PREFIX + beacon_uuid.bytes + struct.pack(">HHb", major, minor, measured_power)


def eddystone_uid(tx_power_0m: int, namespace: bytes, instance: bytes) -> bytes:
    """Eddystone-UID frame: type 0x00, tx power at 0 m, 10-byte namespace, 6-byte instance."""
    if len(namespace) != 10 or len(instance) != 6:
        raise ValueError("namespace is 10 bytes and instance 6 bytes")
    return struct.pack(">Bb", _UID, tx_power_0m) + namespace + instance + b"\x00\x00"


def eddystone_tlm(
    battery_mv: int, temperature_c: float | None, advert_count: int, uptime_s: float
) -> bytes:
    """Eddystone-TLM (unencrypted, version 0): battery mV, temperature 8.8 signed fixed point
    (0x8000 when unknown), advert count, time since power-on in 0.1 s units."""
    temperature = 0x8000 if temperature_c is None else round(temperature_c * 256) & 0xFFFF
    return struct.pack(
        ">BBHHII",
        _TLM,
        _TLM_UNENCRYPTED,
        battery_mv,
        temperature,
        advert_count & 0xFFFFFFFF,
        round(uptime_s * 10) & 0xFFFFFFFF,
    )


def eddystone_namespace(beacon_uuid: UUID) -> bytes:
    """The Eddystone namespace of a UUID by the specification's "elided UUID" rule (bytes 5 to
    10 removed), so Eddystone-UID and iBeacon frames of one store can be related."""
    raw = beacon_uuid.bytes
    return raw[:4] + raw[10:]
