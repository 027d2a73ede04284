"""Raw BLE advertising data and addresses, pure.

:func:`parse_advertising_data` splits the AD structures of one advertisement (``length, type,
data`` repeated; what a remote receiver forwards or a ``btmon`` capture holds) into the maps
bleak reports, so :mod:`devices.ble.frames` decodes both alike. A structure whose length runs
past the end, or an advertisement longer than extended advertising allows, makes the whole
advertisement unusable (``None``); one malformed structure inside an intact advertisement is
skipped. Nothing here raises on what a radio delivers.

:func:`random_address_kind` reads what a *random* BLE address says about itself (its top two
bits): a resolvable private address rotates (about every 15 minutes on phones), so whoever
tracks presence by address sees a new device at each rotation. A public address's top bits
mean nothing; BlueZ tells the two apart (``AddressType``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from uuid import UUID

__all__ = [
    "AdvertisingData",
    "RandomAddressKind",
    "is_resolvable_private",
    "parse_address",
    "parse_advertising_data",
    "random_address_kind",
    "uuid16",
]

_MAX_ADVERTISING_DATA = 1650  # Bluetooth 5 extended advertising; legacy adverts hold 31 bytes
_BLUETOOTH_BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"

# AD types (Bluetooth Core Specification Supplement, part A)
_UUID16_INCOMPLETE, _UUID16_COMPLETE = 0x02, 0x03
_UUID128_INCOMPLETE, _UUID128_COMPLETE = 0x06, 0x07
_NAME_SHORT, _NAME_COMPLETE = 0x08, 0x09
_TX_POWER = 0x0A
_SERVICE_DATA_16, _SERVICE_DATA_32, _SERVICE_DATA_128 = 0x16, 0x20, 0x21
_MANUFACTURER = 0xFF


def uuid16(short: int) -> str:
    """A 16-bit service UUID in the 128-bit form bleak uses as keys (``0000feaa-…``)."""
    return f"0000{short:04x}{_BLUETOOTH_BASE_UUID_TAIL}"


def _uuid32(short: int) -> str:
    return f"{short:08x}{_BLUETOOTH_BASE_UUID_TAIL}"


def _uuid128(little_endian: bytes) -> str:
    return str(UUID(bytes=little_endian[::-1]))


@dataclass(frozen=True, slots=True)
class AdvertisingData:
    """The parts of one advertisement the beacon decoders read, shaped like bleak's
    ``AdvertisementData`` (service UUIDs in their 128-bit lower-case form)."""

    manufacturer_data: Mapping[int, bytes] = field(default_factory=lambda: MappingProxyType({}))
    service_data: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))
    service_uuids: tuple[str, ...] = ()
    local_name: str | None = None
    tx_power: int | None = None


def parse_advertising_data(raw: bytes) -> AdvertisingData | None:
    """Split ``raw`` AD structures; ``None`` if their lengths do not add up."""
    if len(raw) > _MAX_ADVERTISING_DATA:
        return None
    manufacturer: dict[int, bytes] = {}
    service: dict[str, bytes] = {}
    uuids: list[str] = []
    name: str | None = None
    tx_power: int | None = None
    offset = 0
    while offset < len(raw):
        length = raw[offset]
        if length == 0:  # early termination: the rest is padding
            break
        end = offset + 1 + length
        if end > len(raw):
            return None
        kind, data = raw[offset + 1], bytes(raw[offset + 2 : end])
        offset = end
        if kind == _MANUFACTURER and len(data) >= 2:
            manufacturer[int.from_bytes(data[:2], "little")] = data[2:]
        elif kind == _SERVICE_DATA_16 and len(data) >= 2:
            service[uuid16(int.from_bytes(data[:2], "little"))] = data[2:]
        elif kind == _SERVICE_DATA_32 and len(data) >= 4:
            service[_uuid32(int.from_bytes(data[:4], "little"))] = data[4:]
        elif kind == _SERVICE_DATA_128 and len(data) >= 16:
            service[_uuid128(data[:16])] = data[16:]
        elif kind in {_UUID16_INCOMPLETE, _UUID16_COMPLETE} and len(data) % 2 == 0:
            uuids.extend(
                uuid16(int.from_bytes(data[i : i + 2], "little")) for i in range(0, len(data), 2)
            )
        elif kind in {_UUID128_INCOMPLETE, _UUID128_COMPLETE} and len(data) % 16 == 0:
            uuids.extend(_uuid128(data[i : i + 16]) for i in range(0, len(data), 16))
        elif kind in {_NAME_SHORT, _NAME_COMPLETE}:
            name = data.decode("utf-8", errors="replace")
        elif kind == _TX_POWER and len(data) == 1:
            tx_power = struct.unpack(">b", data)[0]
    return AdvertisingData(
        manufacturer_data=MappingProxyType(manufacturer),
        service_data=MappingProxyType(service),
        service_uuids=tuple(dict.fromkeys(uuids)),
        local_name=name,
        tx_power=tx_power,
    )


class RandomAddressKind(StrEnum):
    """What the top two bits of a random BLE address say (Core Specification, vol 6 part B)."""

    NON_RESOLVABLE_PRIVATE = "non-resolvable private"  # 00
    RESOLVABLE_PRIVATE = "resolvable private"  # 01: rotates; an IRK resolves it
    RESERVED = "reserved"  # 10
    STATIC = "static"  # 11: fixed until the device power-cycles


_KINDS = (
    RandomAddressKind.NON_RESOLVABLE_PRIVATE,
    RandomAddressKind.RESOLVABLE_PRIVATE,
    RandomAddressKind.RESERVED,
    RandomAddressKind.STATIC,
)


def parse_address(address: str) -> bytes | None:
    """``AA:BB:CC:DD:EE:FF`` (or with ``-``) as 6 bytes, most significant first; else None."""
    parts = address.replace("-", ":").split(":")
    if len(parts) != 6 or not all(
        len(part) == 2 and all(c in "0123456789abcdefABCDEF" for c in part) for part in parts
    ):
        return None
    return bytes(int(part, 16) for part in parts)


def random_address_kind(address: str) -> RandomAddressKind | None:
    """The kind of a random address; None if ``address`` is not an address at all."""
    octets = parse_address(address)
    return None if octets is None else _KINDS[octets[0] >> 6]


def is_resolvable_private(address: str) -> bool:
    """A random address whose top bits are ``01``: it rotates unless resolved with an IRK."""
    return random_address_kind(address) is RandomAddressKind.RESOLVABLE_PRIVATE
