"""BLE frame encoders against the published vectors in research/ble.md (beacontools suite)."""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.simulated.frames import eddystone_tlm, eddystone_uid, ibeacon


def test_ibeacon_matches_the_published_advert() -> None:
    advert = bytes.fromhex(
        "02 01 06 1a ff 4c 00 02 15 41 42 43 44 45 46 47 48 49 40 41 42 43 44 45 46 00 01 00 02 f8"
    )
    payload = ibeacon(uuid.UUID("41424344-4546-4748-4940-414243444546"), 1, 2, -8)
    # AD structure: length 0x1a, type 0xff, company 0x004C little-endian, then our payload.
    assert advert[3:7] == b"\x1a\xff\x4c\x00"
    assert advert[7:] == payload
    assert len(payload) == 23


def test_eddystone_tlm_matches_the_published_vector() -> None:
    expected = bytes.fromhex("20 00 0b 18 13 00 00 00 14 67 00 00 2a c4")
    assert eddystone_tlm(2840, 19.0, 5223, 1094.8) == expected  # 10948 x 0.1 s


def test_eddystone_uid_matches_the_published_vector() -> None:
    expected = bytes.fromhex("00 e3 12 34 56 78 90 12 34 67 89 01 00 00 00 00 00 01 00 00")
    frame = eddystone_uid(-29, bytes.fromhex("12345678901234678901"), bytes.fromhex("000000000001"))
    assert frame == expected


def test_tlm_temperature_is_signed_and_unknown_is_0x8000() -> None:
    assert struct.unpack(">h", eddystone_tlm(3000, -2.5, 1, 1)[4:6])[0] / 256 == -2.5
    assert eddystone_tlm(3000, None, 1, 1)[4:6] == b"\x80\x00"


def test_encoders_refuse_impossible_values() -> None:
    with pytest.raises(ValueError, match="16-bit"):
        ibeacon(uuid.uuid4(), 70000, 1, -59)
    with pytest.raises(ValueError, match="negative"):
        ibeacon(uuid.uuid4(), 1, 1, 5)
    with pytest.raises(ValueError, match="10 bytes"):
        eddystone_uid(-20, b"short", b"123456")


@given(
    st.uuids(),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(-128, -1),
)
def test_ibeacon_layout_per_spec(
    beacon_uuid: uuid.UUID, major: int, minor: int, power: int
) -> None:
    payload = ibeacon(beacon_uuid, major, minor, power)
    # Decoded by hand per research/ble.md: 02 15, uuid16, major BE, minor BE, int8 power.
    assert payload[:2] == b"\x02\x15"
    assert uuid.UUID(bytes=payload[2:18]) == beacon_uuid
    assert int.from_bytes(payload[18:20], "big") == major
    assert int.from_bytes(payload[20:22], "big") == minor
    assert int.from_bytes(payload[22:23], "big", signed=True) == power
