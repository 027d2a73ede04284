"""devices.ble.frames: decoders against published bytes (the specifications' examples, and the
beacontools and Android Beacon Library vectors quoted in research/ble.md), never a round trip
of our own encoder alone; garbage of every kind decodes to None, never an exception."""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.ble.advertising import parse_advertising_data
from devices.ble.frames import (
    APPLE_COMPANY_ID,
    EDDYSTONE_SERVICE_UUID,
    AltBeacon,
    EddystoneTlm,
    EddystoneUid,
    EddystoneUrl,
    IBeacon,
    decode_altbeacon,
    decode_beacons,
    decode_eddystone,
    decode_ibeacon,
    eddystone_namespace,
    eddystone_tlm,
    eddystone_uid,
    ibeacon,
)

# beacontools' test suite: a whole iBeacon advertisement (flags, then manufacturer data).
IBEACON_ADVERT = bytes.fromhex(
    "02 01 06 1a ff 4c 00 02 15 41 42 43 44 45 46 47 48 49 40 41 42 43 44 45 46 00 01 00 02 f8"
)
# The Android Beacon Library's AltBeacon (Radius Networks, company 0x0118), with the AD length
# the AltBeacon specification prescribes (0x1B: type, company id and 24 bytes).
ALTBEACON_ADVERT = bytes.fromhex("02011a1bff1801beac2f234454cf6d4a0fadf2f4911ba9ffa600010002c509")
# beacontools: Eddystone frames, the service data after the aa fe UUID.
UID = bytes.fromhex("00 e3 12 34 56 78 90 12 34 67 89 01 00 00 00 00 00 01 00 00")
URL = bytes.fromhex("10 f8 03 67 69 74 68 75 62 00 63 69 74 72 75 7a")
TLM = bytes.fromhex("20 00 0b 18 13 00 00 00 14 67 00 00 2a c4")


def eddystone_advert(frame: bytes) -> bytes:
    """An advertisement laid out as the Eddystone specification's example: flags, the
    16-bit service UUID list with 0xFEAA, then service data for 0xFEAA."""
    return bytes.fromhex("02 01 06 03 03 aa fe") + bytes([len(frame) + 3, 0x16, 0xAA, 0xFE]) + frame


def test_ibeacon_from_a_published_advertisement() -> None:
    data = parse_advertising_data(IBEACON_ADVERT)
    assert data is not None
    assert decode_beacons(data.manufacturer_data, data.service_data) == (
        IBeacon(uuid.UUID("41424344-4546-4748-4940-414243444546"), 1, 2, -8),
    )


def test_altbeacon_from_a_published_advertisement() -> None:
    data = parse_advertising_data(ALTBEACON_ADVERT)
    assert data is not None
    [frame] = decode_beacons(data.manufacturer_data, data.service_data)
    assert isinstance(frame, AltBeacon)
    assert frame.company_id == 0x0118
    assert frame.id1 == uuid.UUID("2f234454-cf6d-4a0f-adf2-f4911ba9ffa6")
    assert (frame.id2, frame.id3) == (1, 2)
    assert frame.reference_rssi == -59  # 0xc5
    assert frame.reserved == 9


def test_an_altbeacon_whose_ad_length_leaves_out_a_byte_is_not_one() -> None:
    # The Android Beacon Library's own test advert says 0x1a, one short of the specification's
    # 0x1B: the reserved byte then starts a structure running past the end. Not trusted.
    library = bytes.fromhex("02011a1aff1801beac2f234454cf6d4a0fadf2f4911ba9ffa600010002c509")
    assert parse_advertising_data(library) is None
    short = ALTBEACON_ADVERT[7:-1]  # the manufacturer data without its reserved byte
    assert decode_altbeacon(0x0118, short) is None
    assert decode_altbeacon(0x0118, ALTBEACON_ADVERT[7:]) is not None


def test_eddystone_uid_url_and_tlm_from_published_frames() -> None:
    decoded = []
    for frame in (UID, URL, TLM):
        data = parse_advertising_data(eddystone_advert(frame))
        assert data is not None
        assert EDDYSTONE_SERVICE_UUID in data.service_uuids
        decoded.extend(decode_beacons(data.manufacturer_data, data.service_data))
    uid, url, tlm = decoded
    assert uid == EddystoneUid(
        -29, bytes.fromhex("12345678901234678901"), bytes.fromhex("000000000001")
    )
    assert uid.tx_power_1m == -70
    assert url == EddystoneUrl(-8, "https://github.com/citruz")
    assert tlm == EddystoneTlm(
        battery_mv=2840, temperature_c=19.0, advert_count=5223, uptime_tenths=10948
    )
    assert tlm.uptime_s == pytest.approx(1094.8)  # 0.1 s units, not seconds


def test_service_data_lengths_the_eddystone_specification_prescribes() -> None:
    # UID: 0x17 (or 0x15 when the two reserved bytes are left out); TLM: 0x11.
    assert eddystone_advert(UID)[7] == 0x17
    assert eddystone_advert(TLM)[7] == 0x11
    assert decode_eddystone(UID[:18]) == decode_eddystone(UID)
    for length in (17, 19, 21):
        assert decode_eddystone((UID + b"\x00")[:length]) is None


def test_eddystone_tx_power_examples_of_the_specification() -> None:
    # "The value 0x12 is interpreted as +18dBm, the value 0xEE is interpreted as -18dBm."
    assert decode_eddystone(bytes([0x10, 0x12, 0x03, 0x61])) == EddystoneUrl(18, "https://a")
    assert decode_eddystone(bytes([0x10, 0xEE, 0x03, 0x61])) == EddystoneUrl(-18, "https://a")
    assert decode_eddystone(bytes([0x10, 0x15, 0x03, 0x61])) is None  # +21: beyond +20 dBm


@pytest.mark.parametrize(
    ("encoded", "url"),
    [
        ("00 67 6f 6f 67 6c 65 07", "http://www.google.com"),
        ("01 65 78 61 6d 70 6c 65 0d", "https://www.example.gov"),
        ("02 73 68 6f 70 00 61", "http://shop.com/a"),
        ("03 78 04 79 0b", "https://x.info/y.info"),
    ],
)
def test_eddystone_url_schemes_and_expansions(encoded: str, url: str) -> None:
    frame = decode_eddystone(bytes.fromhex("10 eb " + encoded))
    assert frame == EddystoneUrl(-21, url)


@pytest.mark.parametrize(
    "frame",
    [
        "10 eb 04 61",  # scheme 4 does not exist
        "10 eb 03 20",  # space: excluded from URLs
        "10 eb 03 0e",  # reserved for future use
        "10 eb 03 7f",  # reserved for future use
        "10 eb 03",  # no URL at all
        "10 eb 03" + " 61" * 18,  # 18 encoded bytes: one too many
    ],
)
def test_a_malformed_url_frame_is_not_a_beacon(frame: str) -> None:
    assert decode_eddystone(bytes.fromhex(frame)) is None


def test_tlm_temperature_is_signed_8_8_and_0x8000_is_unsupported() -> None:
    def with_temperature(raw: bytes) -> EddystoneTlm:
        frame = decode_eddystone(TLM[:4] + raw + TLM[6:])
        assert isinstance(frame, EddystoneTlm)
        return frame

    assert with_temperature(b"\xff\x80").temperature_c == -0.5  # wrong if read unsigned
    assert with_temperature(b"\xe7\x40").temperature_c == -24.75
    assert with_temperature(b"\x80\x00").temperature_c is None
    unpowered = decode_eddystone(TLM[:2] + b"\x00\x00" + TLM[4:])
    assert isinstance(unpowered, EddystoneTlm)
    assert unpowered.battery_mv is None  # 0 mV: "not supported (a USB-powered beacon)"


def test_encrypted_tlm_and_unknown_frame_types_are_not_decoded() -> None:
    assert decode_eddystone(TLM[:1] + b"\x01" + TLM[2:]) is None  # version 1: encrypted
    assert decode_eddystone(b"\x30" + UID[1:]) is None  # EID
    assert decode_eddystone(b"\x01" + UID[1:]) is None  # low nibble reserved


def test_ibeacon_needs_apple_its_type_and_length_bytes_and_a_negative_power() -> None:
    payload = IBEACON_ADVERT[7:]
    assert decode_ibeacon(APPLE_COMPANY_ID, payload) is not None
    assert decode_ibeacon(0x0059, payload) is None  # another company
    assert decode_ibeacon(APPLE_COMPANY_ID, b"\x02\x16" + payload[2:]) is None  # length field
    assert decode_ibeacon(APPLE_COMPANY_ID, b"\x10\x05" + payload[2:]) is None  # nearby info
    assert decode_ibeacon(APPLE_COMPANY_ID, payload[:-1] + b"\x08") is None  # +8 dBm at 1 m
    # A phone's Apple data (type 0x10) is not a beacon, only "4c 00" is not enough.
    assert decode_beacons({APPLE_COMPANY_ID: bytes.fromhex("10 05 01 18 44 be 7d")}, {}) == ()


def test_eddystone_namespace_is_the_elided_uuid_of_the_specification() -> None:
    example = uuid.UUID("8b0ca750-e7a7-4e14-bd99-095477cb3e77")
    assert eddystone_namespace(example).hex() == "8b0ca750095477cb3e77"


def test_encoders_write_the_published_bytes() -> None:
    uuid_ = uuid.UUID("41424344-4546-4748-4940-414243444546")
    assert ibeacon(uuid_, 1, 2, -8) == IBEACON_ADVERT[7:]
    assert eddystone_uid(-29, UID[2:12], UID[12:18]) == UID
    assert eddystone_tlm(2840, 19.0, 5223, 1094.8) == TLM
    assert struct.unpack(">h", eddystone_tlm(3000, -2.5, 1, 1)[4:6])[0] / 256 == -2.5
    assert eddystone_tlm(3000, None, 1, 1)[4:6] == b"\x80\x00"


def test_encoders_refuse_impossible_values() -> None:
    with pytest.raises(ValueError, match="16-bit"):
        ibeacon(uuid.uuid4(), 70000, 1, -59)
    with pytest.raises(ValueError, match="negative"):
        ibeacon(uuid.uuid4(), 1, 1, 5)
    with pytest.raises(ValueError, match="10 bytes"):
        eddystone_uid(-20, b"short", b"123456")


# --- garbage ------------------------------------------------------------------------------

VALID = {
    "ibeacon": (APPLE_COMPANY_ID, IBEACON_ADVERT[7:]),
    "altbeacon": (0x0118, ALTBEACON_ADVERT[7:]),
}


@given(st.integers(-(2**20), 2**20), st.binary(max_size=64))
def test_manufacturer_garbage_is_never_an_exception(company_id: int, data: bytes) -> None:
    for frame in (decode_ibeacon(company_id, data), decode_altbeacon(company_id, data)):
        assert frame is None or isinstance(frame, IBeacon | AltBeacon)


@given(st.binary(max_size=64))
def test_service_data_garbage_is_never_an_exception(data: bytes) -> None:
    frame = decode_eddystone(data)
    assert frame is None or isinstance(frame, EddystoneUid | EddystoneUrl | EddystoneTlm)


@given(
    st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=40), max_size=4),
    st.dictionaries(
        st.sampled_from([EDDYSTONE_SERVICE_UUID, EDDYSTONE_SERVICE_UUID.upper(), "x", ""]),
        st.binary(max_size=40),
        max_size=3,
    ),
)
def test_decode_beacons_takes_any_maps(
    manufacturer: dict[int, bytes], service: dict[str, bytes]
) -> None:
    assert isinstance(decode_beacons(manufacturer, service), tuple)


@given(st.sampled_from(sorted(VALID)), st.integers(1, 23))
def test_truncated_manufacturer_frames_are_not_beacons(kind: str, cut: int) -> None:
    company_id, data = VALID[kind]
    assert decode_beacons({company_id: data[:-cut]}, {}) == ()


@given(st.sampled_from(sorted(VALID)), st.binary(min_size=1, max_size=8))
def test_oversized_manufacturer_frames_are_not_beacons(kind: str, extra: bytes) -> None:
    company_id, data = VALID[kind]
    assert decode_beacons({company_id: data + extra}, {}) == ()


@given(st.sampled_from([UID, URL, TLM]), st.integers(1, 13), st.binary(min_size=1, max_size=8))
def test_truncated_or_oversized_eddystone_frames(frame: bytes, cut: int, extra: bytes) -> None:
    # A URL is variable length (shorter is another URL); a UID may leave out its last 2 bytes.
    if frame is TLM or (frame is UID and cut != 2):
        assert decode_eddystone(frame[:-cut]) is None
    assert decode_eddystone(frame + extra + b"\x00" * (20 - len(frame))) is None


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
    assert decode_ibeacon(APPLE_COMPANY_ID, payload) == IBeacon(beacon_uuid, major, minor, power)
