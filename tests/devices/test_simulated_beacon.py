"""simulated.beacon: real frames (decoded here by hand per research/ble.md), RSSI by distance,
rotating phone addresses, heartbeats, determinism."""

from __future__ import annotations

import statistics
import struct
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from devices.ble.advertising import is_resolvable_private
from devices.ble.frames import EddystoneTlm, EddystoneUid, IBeacon, decode_beacons
from gateway.drivers.contracts import Advertisement, BeaconReceiver, Heartbeat
from tests.devices.harness import make, plugin, take

EDDYSTONE = "0000feaa-0000-1000-8000-00805f9b34fb"
STORE = uuid.UUID("41424344-4546-4748-4940-414243444546")


def decode_ibeacon(payload: bytes) -> tuple[uuid.UUID, int, int, int] | None:
    if len(payload) != 23 or payload[:2] != b"\x02\x15":
        return None
    major, minor, power = struct.unpack(">HHb", payload[18:])
    return uuid.UUID(bytes=payload[2:18]), major, minor, power


def fixed(**overrides: Any) -> dict[str, Any]:
    return {"id": "b", "interval_s": 0.02} | overrides


def floor(**overrides: Any) -> dict[str, Any]:
    """A busy floor with short intervals, so tests see many adverts in a fraction of a second."""
    options: dict[str, Any] = {
        "fixed_beacons": [
            fixed(id="aisle", kind="ibeacon", uuid=str(STORE), major=7, minor=9, tx_power=-61),
            fixed(
                id="door",
                kind="eddystone",
                namespace="12345678901234678901",
                instance="0000000000e1",
                tx_power=-70,
                battery_mv=2840,
                temperature_c=19.0,
                tlm_every=4,
            ),
        ],
        "carts": 3,
        "cart_interval_s": 0.02,
        "phones": 3,
        "phone_interval_s": 0.02,
    }
    return options | overrides


def test_is_a_beacon_receiver() -> None:
    assert isinstance(make("simulated.beacon"), BeaconReceiver)


async def test_adverts_carry_correctly_encoded_frames() -> None:
    driver = make("simulated.beacon", receiver="hci7", **floor())
    await driver.open()
    adverts: list[Advertisement] = await take(driver.readings(), 120, Advertisement)
    await driver.close()
    assert {a.receiver for a in adverts} == {"hci7"}
    assert all(-100 <= a.rssi <= 0 for a in adverts)

    ibeacons = [
        decoded
        for a in adverts
        if (decoded := decode_ibeacon(a.manufacturer_data.get(0x004C, b""))) is not None
    ]
    assert (STORE, 7, 9, -61) in ibeacons
    carts = {minor for (_, major, minor, _) in ibeacons if major == 100}
    assert carts <= {0, 1, 2}
    assert carts

    frames = [a.service_data[EDDYSTONE] for a in adverts if EDDYSTONE in a.service_data]
    assert all(EDDYSTONE in a.service_uuids for a in adverts if a.service_data)
    uid = [f for f in frames if f[0] == 0x00]
    tlm = [f for f in frames if f[0] == 0x20]
    assert uid
    assert tlm
    for frame in uid:
        assert struct.unpack(">b", frame[1:2])[0] == -70 + 41  # power at 0 m
        assert frame[2:12].hex() == "12345678901234678901"
        assert frame[12:18].hex() == "0000000000e1"
    for frame in tlm:
        version, battery, temperature, count, uptime = struct.unpack(">BHhII", frame[1:])
        assert version == 0
        assert battery == 2840
        assert temperature / 256 == pytest.approx(19.0, abs=1.5)
        assert count % 4 == 0  # every 4th frame of this beacon is TLM
        assert uptime > 36_000  # 0.1 s units: powered on at least an hour before
    counts = [struct.unpack(">I", f[6:10])[0] for f in tlm]
    assert counts == sorted(counts)


async def test_the_ble_decoders_read_every_beacon_the_simulator_sends() -> None:
    driver = make("simulated.beacon", **floor())
    adverts: list[Advertisement] = await take(driver.readings(), 120, Advertisement)
    seen: set[type] = set()
    for advert in adverts:
        frames = decode_beacons(advert.manufacturer_data, advert.service_data)
        if is_resolvable_private(advert.address):  # a phone: Apple data, but no beacon
            assert frames == ()
            continue
        assert len(frames) == 1, advert
        seen.add(type(frames[0]))
        if isinstance(frames[0], EddystoneTlm):
            assert frames[0].battery_mv == 2840
            assert frames[0].uptime_s > 3600
    assert seen == {IBeacon, EddystoneUid, EddystoneTlm}


async def test_adverts_carry_what_the_decoders_make_of_them() -> None:
    driver = make("simulated.beacon", **floor())
    adverts: list[Advertisement] = await take(driver.readings(), 120, Advertisement)
    named = {str(a.beacon) for a in adverts if a.beacon is not None}
    assert f"ibeacon:{STORE}:7:9" in named
    assert "eddystone:12345678901234678901:0000000000e1" in named
    assert {a.measured_power for a in adverts if str(a.beacon) == f"ibeacon:{STORE}:7:9"} == {-61}
    batteries = {a.telemetry.battery_mv for a in adverts if a.telemetry is not None}
    assert batteries == {2840}
    phones = [a for a in adverts if is_resolvable_private(a.address)]
    assert phones
    assert all(a.beacon is None and a.telemetry is None for a in phones)


async def test_rssi_falls_with_distance() -> None:
    driver = make(
        "simulated.beacon",
        carts=0,
        phones=0,
        fixed_beacons=[
            fixed(id="near", minor=1, distance_m=1),
            fixed(id="far", minor=2, distance_m=25),
        ],
    )
    adverts: list[Advertisement] = await take(driver.readings(), 50, Advertisement)
    by_minor: dict[int, list[int]] = {1: [], 2: []}
    for advert in adverts:
        decoded = decode_ibeacon(advert.manufacturer_data[0x004C])
        assert decoded is not None
        by_minor[decoded[2]].append(advert.rssi)
    assert statistics.mean(by_minor[1]) > statistics.mean(by_minor[2]) + 20


async def test_phones_use_rotating_resolvable_private_addresses() -> None:
    driver = make(
        "simulated.beacon",
        fixed_beacons=[],
        carts=0,
        phones=2,
        phone_interval_s=0.02,
        address_rotation_s=60,
        speed=1000,  # an address lives ~60 scenario s, i.e. ~3 adverts
    )
    adverts: list[Advertisement] = await take(driver.readings(), 30, Advertisement)
    addresses = {a.address for a in adverts}
    assert len(addresses) > 4  # two phones, rotated several times
    for address in addresses:
        assert int(address[:2], 16) >> 6 == 0b01  # top bits 01: resolvable private
    assert all(a.tx_power is not None for a in adverts)


async def test_heartbeats_when_nothing_is_in_range() -> None:
    driver = make(
        "simulated.beacon",
        fixed_beacons=[fixed(distance_m=200, tx_power=-90)],
        carts=0,
        phones=0,
        heartbeat_s=0.05,
    )
    [heartbeat] = await take(driver.readings(), 1, Heartbeat)
    assert heartbeat.monotonic == 1000.0


async def first_adverts(seed: int, instance: str) -> list[Advertisement]:
    driver = make("simulated.beacon", instance, seed=seed, speed=100, **floor())
    return await take(driver.readings(), 40, Advertisement)


async def test_deterministic_for_a_seed_and_instance() -> None:
    first = await first_adverts(1, "x")
    assert first == await first_adverts(1, "x")
    assert first != await first_adverts(1, "y")
    assert first != await first_adverts(2, "x")


@pytest.mark.parametrize(
    "options",
    [
        {"carts": "many"},
        {"carts": -1},
        {"phones": 1.5},
        {"cart_zones": []},
        {"rssi_noise_db": -1},
        {"speed": -2},
        {"fixed_beacons": [{"id": "x", "tx_power": 5}]},
        {"fixed_beacons": [{"id": "x", "kind": "altbeacon"}]},
        {"fixed_beacons": [{"id": "x", "major": 70000}]},
        {"fixed_beacons": [{"id": "x", "namespace": "xyz"}]},
        {"fixed_beacons": [{"id": "x", "uuid": "not-a-uuid"}]},
        {"fixed_beacons": [{"id": "x", "interval_s": 0}]},
        {"zone": "produce", "colour": "red"},
    ],
)
def test_garbage_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        plugin("simulated.beacon").options_model.model_validate(options)


async def test_a_shared_floor_hears_each_cart_loudest_at_the_receiver_of_its_zone() -> None:
    driver = make(
        "simulated.beacon",
        receivers=[
            {"name": "rx-produce", "zone": "produce"},
            {"name": "rx-dairy", "zone": "dairy"},
        ],
        cart_zones=["produce", "dairy"],
        carts=4,
        cart_interval_s=0.02,
        phones=2,
        phone_interval_s=0.02,
        fixed_beacons=[],
        rssi_noise_db=1.0,
        cart_move_interval_s=10_000,
    )
    adverts: list[Advertisement] = await take(driver.readings(), 300, Advertisement)
    assert {a.receiver for a in adverts} == {"rx-produce", "rx-dairy"}
    loudest: dict[str, dict[str, list[int]]] = {}
    for advert in adverts:
        if advert.beacon is not None:
            loudest.setdefault(str(advert.beacon), {}).setdefault(advert.receiver, []).append(
                advert.rssi
            )
    assert len(loudest) == 4
    for by_receiver in loudest.values():
        means = {rx: statistics.mean(values) for rx, values in by_receiver.items()}
        best = max(means, key=means.__getitem__)
        assert means[best] > min(means.values()) + 10 or len(means) == 1  # one zone clearly


def test_a_shared_floor_receiver_needs_a_name_and_zone() -> None:
    with pytest.raises(ValidationError):
        plugin("simulated.beacon").options_model.model_validate({"receivers": [{"name": "x"}]})
