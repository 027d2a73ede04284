"""devices.ble.advertising: AD structures split like bleak reports them, garbage refused
without an exception, and what a random BLE address says about itself."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.ble.advertising import (
    AdvertisingData,
    RandomAddressKind,
    is_resolvable_private,
    parse_address,
    parse_advertising_data,
    random_address_kind,
    uuid16,
)

FLAGS = bytes.fromhex("02 01 06")


def structure(kind: int, data: bytes) -> bytes:
    return bytes([len(data) + 1, kind]) + data


def test_every_kind_of_structure_lands_where_bleak_puts_it() -> None:
    service = uuid.UUID("12345678-9abc-def0-1234-56789abcdef0")
    raw = b"".join(
        [
            FLAGS,
            structure(0x03, bytes.fromhex("aa fe 0f 18")),  # 16-bit UUIDs, little endian
            structure(0x07, service.bytes[::-1]),  # 128-bit UUIDs, little endian
            structure(0x09, b"Cart 7"),
            structure(0x0A, b"\xf4"),  # tx power -12 dBm
            structure(0xFF, bytes.fromhex("59 00 01 02")),  # company 0x0059, little endian
            structure(0x16, bytes.fromhex("0f 18 64")),  # battery service data: 100 %
            structure(0x20, bytes.fromhex("78 56 34 12 aa")),
            structure(0x21, service.bytes[::-1] + b"\x07"),
        ]
    )
    data = parse_advertising_data(raw)
    assert data == AdvertisingData(
        manufacturer_data={0x0059: b"\x01\x02"},
        service_data={
            uuid16(0x180F): b"\x64",
            "12345678-0000-1000-8000-00805f9b34fb": b"\xaa",
            str(service): b"\x07",
        },
        service_uuids=(uuid16(0xFEAA), uuid16(0x180F), str(service)),
        local_name="Cart 7",
        tx_power=-12,
    )
    assert uuid16(0xFEAA) == "0000feaa-0000-1000-8000-00805f9b34fb"


def test_zero_length_ends_the_data_and_padding_is_ignored() -> None:
    raw = FLAGS + structure(0x09, b"a") + b"\x00" + b"\xff" * 10
    data = parse_advertising_data(raw)
    assert data is not None
    assert data.local_name == "a"


@pytest.mark.parametrize(
    "raw",
    [
        FLAGS + bytes.fromhex("1a ff 4c 00 02 15"),  # the length runs past the end
        FLAGS + b"\x05",  # a length and nothing else
        FLAGS * 600,  # longer than extended advertising allows
    ],
)
def test_lengths_that_do_not_add_up_make_the_advertisement_unusable(raw: bytes) -> None:
    assert parse_advertising_data(raw) is None


def test_a_malformed_structure_inside_an_intact_advertisement_is_skipped() -> None:
    raw = FLAGS + structure(0xFF, b"\x4c") + structure(0x03, b"\xaa") + structure(0x09, b"ok")
    data = parse_advertising_data(raw)
    assert data is not None
    assert (dict(data.manufacturer_data), data.service_uuids, data.local_name) == ({}, (), "ok")


@given(st.binary(max_size=2000))
def test_any_bytes_parse_or_are_refused_never_raise(raw: bytes) -> None:
    data = parse_advertising_data(raw)
    assert data is None or isinstance(data, AdvertisingData)


@given(st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=29)), max_size=8))
def test_well_formed_structures_always_parse(structures: list[tuple[int, bytes]]) -> None:
    raw = b"".join(structure(kind, data) for kind, data in structures)
    assert parse_advertising_data(raw) is not None
    if raw:  # one byte short: the last structure's length runs past the end
        assert parse_advertising_data(raw[:-1]) is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("C4:7C:8D:6A:12:34", RandomAddressKind.STATIC),  # top bits 11
        ("4A:12:34:56:78:9A", RandomAddressKind.RESOLVABLE_PRIVATE),  # 01
        ("7f-ff-ff-ff-ff-ff", RandomAddressKind.RESOLVABLE_PRIVATE),
        ("3F:00:00:00:00:01", RandomAddressKind.NON_RESOLVABLE_PRIVATE),  # 00
        ("80:00:00:00:00:00", RandomAddressKind.RESERVED),  # 10
    ],
)
def test_random_address_kinds(address: str, kind: RandomAddressKind) -> None:
    assert random_address_kind(address) is kind
    assert is_resolvable_private(address) == (kind is RandomAddressKind.RESOLVABLE_PRIVATE)


@pytest.mark.parametrize(
    "address", ["", "4A:12:34:56:78", "4A:12:34:56:78:9A:BC", "4G:12:34:56:78:9A", "4A123456789A"]
)
def test_what_is_not_an_address(address: str) -> None:
    assert parse_address(address) is None
    assert random_address_kind(address) is None
    assert not is_resolvable_private(address)


@given(st.text(max_size=40))
def test_any_text_as_an_address_never_raises(address: str) -> None:
    assert random_address_kind(address) in (None, *RandomAddressKind)
