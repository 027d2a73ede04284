"""What every beacon driver puts in an Advertisement, from frames built by the specifications."""

from __future__ import annotations

from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from devices.ble.beacon_fields import NOT_A_BEACON, beacon_fields
from gateway.drivers.contracts import BeaconFormat, BeaconId, BeaconTelemetry

EDDYSTONE = "0000feaa-0000-1000-8000-00805f9b34fb"

# Apple's iBeacon layout: 02 15, UUID, major, minor (big endian), measured power (int8).
IBEACON = bytes.fromhex("0215e2c56db5dffb48d2b060d0f5a71096e000010002c5")
# AltBeacon Protocol Specification v1.0 example: BEAC, 20-byte id, ref RSSI, reserved.
ALTBEACON = bytes.fromhex(
    "beac" + "2f234454cf6d4a0fadf2f4911ba9ffa6" + "0001" + "0002" + "c5" + "00"
)
# Eddystone-UID: type 00, tx power at 0 m (-18 dBm = 0xee), namespace (10), instance (6), RFU.
EDDYSTONE_UID = bytes.fromhex("00ee00112233445566778899aabbccddeeff0000")
# Eddystone-TLM: type 20, version 00, battery 3000 mV, temperature 0xfe80 = -1.5 C (signed 8.8),
# advert count 100, uptime 36000 tenths = 3600 s.
EDDYSTONE_TLM = bytes.fromhex("20000bb8fe800000006400008ca0")


def test_an_ibeacon_is_named_by_uuid_major_minor_with_its_power() -> None:
    fields = beacon_fields({0x004C: IBEACON}, {})
    assert fields.beacon == BeaconId(
        BeaconFormat.IBEACON, f"{UUID('e2c56db5-dffb-48d2-b060-d0f5a71096e0')}:1:2"
    )
    assert str(fields.beacon) == "ibeacon:e2c56db5-dffb-48d2-b060-d0f5a71096e0:1:2"
    assert fields.measured_power == -59
    assert fields.telemetry is None


def test_an_altbeacon_is_named_by_its_twenty_byte_id() -> None:
    fields = beacon_fields({0x0118: ALTBEACON}, {})
    assert fields.beacon == BeaconId(
        BeaconFormat.ALTBEACON, "2f234454cf6d4a0fadf2f4911ba9ffa600010002"
    )
    assert fields.measured_power == -59


def test_an_eddystone_uid_gives_its_power_at_one_metre() -> None:
    fields = beacon_fields({}, {EDDYSTONE: EDDYSTONE_UID})
    assert fields.beacon == BeaconId(BeaconFormat.EDDYSTONE, "00112233445566778899:aabbccddeeff")
    assert fields.measured_power == -18 - 41


def test_a_tlm_frame_gives_telemetry_and_no_identity() -> None:
    fields = beacon_fields({}, {EDDYSTONE: EDDYSTONE_TLM})
    assert fields.beacon is None
    assert fields.telemetry == BeaconTelemetry(3000, -1.5, 100, 3600.0)


def test_no_frame_is_not_a_beacon() -> None:
    assert beacon_fields({}, {}) is NOT_A_BEACON
    assert beacon_fields({0x004C: bytes([0x10, 0x05, 0x01, 1, 2, 3, 4])}, {}) == NOT_A_BEACON
    assert beacon_fields({0x004C: IBEACON[:-1]}, {EDDYSTONE: EDDYSTONE_UID[:5]}) == NOT_A_BEACON


@given(
    st.dictionaries(st.integers(-5, 0x1_0005), st.binary(max_size=40), max_size=3),
    st.dictionaries(
        st.sampled_from([EDDYSTONE, "0000fe9a-0000-1000-8000-00805f9b34fb", "garbage"]),
        st.binary(max_size=40),
        max_size=2,
    ),
)
def test_garbage_is_never_an_exception(
    manufacturer: dict[int, bytes], service: dict[str, bytes]
) -> None:
    beacon_fields(manufacturer, service)
