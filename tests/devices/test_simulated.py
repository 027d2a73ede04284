"""Simulated drivers: loaded through the real entry points, plausible, deterministic, faulty
on request; beacon frames checked against published vectors."""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from devices.simulated.faults import reset_open_attempts
from devices.simulated.frames import eddystone_tlm, eddystone_uid, ibeacon
from gateway.clock import SystemClock
from gateway.drivers.contracts import (
    Advertisement,
    BeaconReceiver,
    DriverContext,
    DriverPlugin,
    Heartbeat,
    LabelContent,
    LabelDriver,
    LabelModel,
    LabelPalette,
    LabelReport,
    LabelReportKind,
    Reading,
    ScaleDriver,
    WeightSample,
)
from gateway.drivers.registry import DriverRegistry
from gateway.errors import DriverConfigError, DriverUnavailableError

REGISTRY = DriverRegistry.from_entry_points()


def plugin(name: str) -> DriverPlugin:
    return REGISTRY.load(name)


def make(name: str, instance: str = "dev", **options: Any) -> Any:
    chosen = plugin(name)
    return chosen.create(
        DriverContext(instance, SystemClock()), chosen.options_model.model_validate(options)
    )


async def take(readings: AsyncIterator[Reading], count: int, kind: type[Any]) -> list[Any]:
    found: list[Any] = []
    try:
        async with asyncio.timeout(10):
            async for reading in readings:
                if isinstance(reading, kind):
                    found.append(reading)
                    if len(found) >= count:
                        break
    finally:
        await readings.aclose()  # type: ignore[attr-defined]
    return found


# --- frames against published vectors (research/ble.md, from the beacontools test suite) -----


def test_ibeacon_matches_the_published_advert() -> None:
    advert = bytes.fromhex(
        "02 01 06 1a ff 4c 00 02 15 41 42 43 44 45 46 47 48 49 40 41 42 43 44 45 46 00 01 00 02 f8"
    )
    payload = ibeacon(uuid.UUID("41424344-4546-4748-4940-414243444546"), 1, 2, -8)
    assert advert.endswith(payload)
    assert advert[5:7] == b"\x4c\x00"  # company 0x004C, little-endian on air


def test_eddystone_tlm_matches_the_published_vector() -> None:
    expected = bytes.fromhex("20 00 0b 18 13 00 00 00 14 67 00 00 2a c4")
    assert eddystone_tlm(2840, 19.0, 5223, 1094.8) == expected


def test_eddystone_uid_matches_the_published_vector() -> None:
    expected = bytes.fromhex("00 e3 12 34 56 78 90 12 34 67 89 01 00 00 00 00 00 01 00 00")
    frame = eddystone_uid(-29, bytes.fromhex("12345678901234678901"), bytes.fromhex("000000000001"))
    assert frame == expected


def test_tlm_negative_temperature_is_signed() -> None:
    frame = eddystone_tlm(3000, -2.5, 1, 1)
    assert struct.unpack(">h", frame[4:6])[0] / 256 == -2.5
    assert eddystone_tlm(3000, None, 1, 1)[4:6] == b"\x80\x00"


def test_frame_encoders_refuse_impossible_values() -> None:
    with pytest.raises(ValueError, match="16-bit"):
        ibeacon(uuid.uuid4(), 70000, 1, -59)
    with pytest.raises(ValueError, match="negative"):
        ibeacon(uuid.uuid4(), 1, 1, 5)
    with pytest.raises(ValueError, match="10 bytes"):
        eddystone_uid(-20, b"short", b"123456")


# --- drivers ------------------------------------------------------------------------------


def test_plugins_declare_their_family_protocols() -> None:
    assert isinstance(make("simulated.scale"), ScaleDriver)
    assert isinstance(make("simulated.beacon"), BeaconReceiver)
    assert isinstance(make("simulated.esl"), LabelDriver)


async def test_scale_weights_follow_the_true_counts() -> None:
    driver = make(
        "simulated.scale",
        sample_rate_hz=50,
        speed=200,
        noise_grams=0.5,
        channels=[
            {
                "channel": "a",
                "unit_grams": 200,
                "tray_grams": 50,
                "initial_count": 5,
                "capacity": 6,
                "pick_interval_s": 20,
            }
        ],
    )
    await driver.open()
    samples = await take(driver.readings(), 200, WeightSample)
    stable = [s for s in samples if s.stable]
    assert any(not s.stable for s in samples), "a shopper should have disturbed the plate"
    for sample in stable[-3:]:
        # A settled plate shows tray + whole items (net excludes the tray) within noise.
        items = sample.net_grams / 200
        assert abs(items - round(items)) < 0.05
    assert set(driver.true_counts()) == {"a"}
    await driver.close()


async def test_scale_is_deterministic_per_seed_and_instance() -> None:
    async def first_weights(seed: int, instance: str) -> list[float]:
        driver = make("simulated.scale", instance, seed=seed, sample_rate_hz=100)
        samples = await take(driver.readings(), 10, WeightSample)
        return [s.net_grams for s in samples]

    assert await first_weights(1, "x") == await first_weights(1, "x")
    assert await first_weights(1, "x") != await first_weights(1, "y")


async def test_scale_tare_and_zero() -> None:
    driver = make(
        "simulated.scale",
        sample_rate_hz=100,
        noise_grams=0,
        channels=[
            {
                "channel": "a",
                "unit_grams": 100,
                "tray_grams": 50,
                "initial_count": 3,
                "capacity": 5,
                "pick_interval_s": 100000,
            }
        ],
    )
    await driver.tare("a")
    [sample] = await take(driver.readings(), 1, WeightSample)
    assert sample.net_grams == 0
    assert sample.gross_grams == 350
    await driver.zero("a")
    [sample] = await take(driver.readings(), 1, WeightSample)
    assert sample.gross_grams == 0
    with pytest.raises(DriverConfigError, match="unknown channel 'b'"):
        await driver.tare("b")


async def test_beacon_receiver_emits_real_frames() -> None:
    driver = make(
        "simulated.beacon",
        carts=2,
        phones=2,
        cart_interval_s=0.1,
        phone_interval_s=0.1,
        rssi_noise_db=0,
    )
    adverts: list[Advertisement] = await take(driver.readings(), 30, Advertisement)
    ibeacons = [a for a in adverts if a.manufacturer_data.get(0x004C, b"").startswith(b"\x02\x15")]
    assert ibeacons
    for advert in ibeacons:
        payload = advert.manufacturer_data[0x004C]
        assert len(payload) == 23
        assert struct.unpack(">b", payload[22:23])[0] < 0
    eddystone = [a for a in adverts if a.service_data]
    assert eddystone
    assert all(-127 <= a.rssi <= 0 for a in adverts)
    phones = {a.address for a in adverts if a.tx_power == 12}
    assert phones
    assert all(int(address[:2], 16) >> 6 == 0b01 for address in phones)  # private resolvable


async def test_esl_confirms_only_the_latest_content() -> None:
    driver = make("simulated.esl", label_count=2, seconds_per_label=0.05, checkin_interval_s=600)
    label_id = driver.label_ids[0]
    model = LabelModel(296, 128, LabelPalette.BWR)
    await driver.push(LabelContent(label_id, b"old", "h-old", model))
    await driver.push(LabelContent(label_id, b"new", "h-new", model))
    assert driver.superseded == 1
    assert driver.labels_per_minute == pytest.approx(1200)
    reports = await take(driver.readings(), 1, LabelReport)
    assert reports[0].kind is LabelReportKind.CONFIRMED
    assert reports[0].content_hash == "h-new"
    assert "xfer complete" in reports[0].evidence
    assert driver.shown_hash(label_id) == "h-new"
    with pytest.raises(DriverConfigError, match="unknown label"):
        await driver.push(LabelContent("0000000000000000", b"x", "h", model))


async def test_esl_failures_and_flash() -> None:
    driver = make(
        "simulated.esl",
        label_count=1,
        seconds_per_label=0.05,
        failure_rate=1.0,
        checkin_interval_s=600,
    )
    label_id = driver.label_ids[0]
    await driver.push(LabelContent(label_id, b"x", "h1", LabelModel(296, 128, LabelPalette.BWR)))
    await driver.flash(label_id, seconds=3)
    reports = await take(driver.readings(), 2, LabelReport)
    kinds = {r.kind for r in reports}
    assert kinds == {LabelReportKind.FAILED, LabelReportKind.SEEN}
    assert driver.shown_hash(label_id) is None


async def test_esl_heartbeats_when_idle() -> None:
    driver = make("simulated.esl", label_count=0)
    [heartbeat] = await take(driver.readings(), 1, Heartbeat)
    assert "queued" in heartbeat.detail


@pytest.mark.parametrize("name", ["simulated.scale", "simulated.beacon", "simulated.esl"])
async def test_fault_injection(name: str) -> None:
    reset_open_attempts()
    flaky = make(name, "flaky", faults={"fail_open_times": 2})
    for _ in range(2):
        with pytest.raises(DriverUnavailableError, match="simulated open failure"):
            await flaky.open()
    await make(name, "flaky", faults={"fail_open_times": 2}).open()

    with pytest.raises(DriverConfigError):
        await make(name, faults={"config_error_on_open": True}).open()

    hanging = make(name, faults={"hang_on_open": True})
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await hanging.open()

    crashing = make(name, faults={"crash_after_s": 0.2})
    with pytest.raises(RuntimeError, match="simulated crash"):
        await take(crashing.readings(), 10_000, object)

    silent = make(name, faults={"hang_after_s": 0.2})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(take(silent.readings(), 10_000, object), 1.0)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("simulated.scale", {"sample_rate_hz": -1}),
        ("simulated.scale", {"channels": []}),
        ("simulated.scale", {"channels": [{"channel": "a", "unit_grams": 0}]}),
        (
            "simulated.scale",
            {"channels": [{"channel": "a", "unit_grams": 1, "initial_count": 9, "capacity": 2}]},
        ),
        ("simulated.scale", {"bogus": 1}),
        ("simulated.beacon", {"carts": "many"}),
        ("simulated.beacon", {"fixed_beacons": [{"id": "x", "tx_power": 5}]}),
        ("simulated.esl", {"labels": [{"label_id": "not-hex"}]}),
        ("simulated.esl", {"failure_rate": 1.5}),
        ("simulated.esl", {"faults": {"crash_after_s": -1}}),
    ],
)
def test_garbage_options_are_rejected(name: str, options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        plugin(name).options_model.model_validate(options)
