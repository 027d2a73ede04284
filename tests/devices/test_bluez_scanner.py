"""``ble.bluez`` through bleak's real BlueZ backend against a fake BlueZ on a private
dbus-daemon: devices appearing, changing RSSI and vanishing; BlueZ refusing discovery
(InProgress, NotReady, Failed) and the recovery; the adapter vanishing and returning; no BlueZ
or no bus at all. No mocks of bleak."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from devices.ble.bluez_scanner import BlueZScanner
from devices.simulated.bluez import FakeBlueZ
from gateway.drivers.contracts import Advertisement, BeaconFormat, BeaconId, Heartbeat, Reading
from gateway.errors import DriverUnavailableError
from tests.devices.harness import make
from tests.support.bleak_loop import release_bleak
from tests.support.dbus import PrivateBus
from tests.waiting import patience

IBEACON = bytes.fromhex("0215e2c56db5dffb48d2b060d0f5a71096e000010002c5")
CART = BeaconId(BeaconFormat.IBEACON, "e2c56db5-dffb-48d2-b060-d0f5a71096e0:1:2")
EDDYSTONE = "0000feaa-0000-1000-8000-00805f9b34fb"
TLM = bytes.fromhex("20000bb815000000006400008ca0")


def scanner(**options: Any) -> BlueZScanner:
    made: BlueZScanner = make(
        "ble.bluez", "ble", retry_initial_s=0.01, retry_max_s=0.05, heartbeat_s=0.2, **options
    )
    return made


async def next_advert(stream: AsyncIterator[Reading], within: float = 10.0) -> Advertisement:
    async with asyncio.timeout(patience(within)):
        async for reading in stream:
            if isinstance(reading, Advertisement):
                return reading
    raise AssertionError("the stream ended")


@pytest.fixture
async def bluez(system_bus: PrivateBus) -> AsyncIterator[FakeBlueZ]:
    fake = await FakeBlueZ(system_bus.address).start()
    try:
        yield fake
    finally:
        await release_bleak()
        fake.stop()


async def test_every_advert_arrives_decoded_with_duplicates_and_an_rssi_filter(
    bluez: FakeBlueZ,
) -> None:
    driver = scanner(rssi_threshold=-90)
    await driver.open()
    stream = driver.readings()
    try:
        assert bluez.adapters["hci0"].filters == {
            "Transport": "le",
            "DuplicateData": True,
            "RSSI": -90,
        }
        bluez.advertise("hci0", "C3:11:22:33:44:55", -61, manufacturer={0x004C: IBEACON})
        first = await next_advert(stream)
        assert first.receiver == "hci0"
        assert first.address == "C3:11:22:33:44:55"
        assert first.beacon == CART
        assert first.measured_power == -59
        for rssi in (-62, -63, -64):  # the same device again and again: every advert counts
            bluez.advertise("hci0", "C3:11:22:33:44:55", rssi)
            assert (await next_advert(stream)).rssi == rssi
        bluez.advertise("hci0", "C4:00:00:00:00:04", -70, service={EDDYSTONE: TLM})
        tlm = await next_advert(stream)
        assert tlm.telemetry is not None
        assert tlm.telemetry.battery_mv == 3000
        assert tlm.telemetry.temperature_c == 21.0
        bluez.forget("hci0", "C3:11:22:33:44:55")  # BlueZ drops it: nothing breaks
        bluez.advertise("hci0", "C3:11:22:33:44:55", -66, manufacturer={0x004C: IBEACON})
        assert (await next_advert(stream)).rssi == -66
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
        await driver.close()
    assert bluez.adapters["hci0"].starts == 1  # never a start/stop loop


@pytest.mark.parametrize("error", ["InProgress", "NotReady", "Failed"])
async def test_a_refused_start_is_recovered(bluez: FakeBlueZ, error: str) -> None:
    bluez.inject("hci0", error, times=2)
    driver = scanner()
    await driver.open()
    try:
        assert bluez.adapters["hci0"].starts == 3
        assert "after 3 attempt(s)" in driver.status_detail
    finally:
        await driver.close()


async def test_repeated_failures_power_cycle_the_adapter_then_give_up_clearly(
    bluez: FakeBlueZ,
) -> None:
    bluez.inject("hci0", "Failed", times=100)
    driver = scanner(start_attempts=4, power_cycle_after=2)
    with pytest.raises(DriverUnavailableError, match=r"refused discovery 4 times .*Failed"):
        await driver.open()
    await driver.close()
    assert driver.power_cycles == 2


async def test_the_adapter_vanishing_ends_the_driver_and_its_return_starts_a_new_one(
    bluez: FakeBlueZ,
) -> None:
    driver = scanner(silence_restart_s=1)
    await driver.open()
    stream = driver.readings()
    try:
        bluez.advertise("hci0", "C3:11:22:33:44:55", -61)
        await next_advert(stream)
        bluez.remove_adapter("hci0")  # unplugged
        with pytest.raises(DriverUnavailableError, match="hci0"):
            async with asyncio.timeout(patience(20)):
                async for reading in stream:
                    assert isinstance(reading, Heartbeat)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
        await driver.close()
    bluez.add_adapter("hci0")  # plugged in again: a next start works, as the supervisor retries
    again = await opened_when_ready()
    second = again.readings()
    try:
        bluez.advertise("hci0", "C3:11:22:33:44:55", -62)
        assert (await next_advert(second)).rssi == -62
    finally:
        await second.aclose()  # type: ignore[attr-defined]
        await again.close()


async def opened_when_ready(within: float = 10.0) -> BlueZScanner:
    """A new driver started as the supervisor does it: again after each refusal (bleak learns
    of a new adapter from a D-Bus signal, a moment after it appears)."""
    async with asyncio.timeout(patience(within)):
        while True:
            driver = scanner()
            try:
                await driver.open()
            except DriverUnavailableError:
                await driver.close()
                await asyncio.sleep(0.05)
            else:
                return driver


async def test_no_such_adapter_is_a_clear_reason(bluez: FakeBlueZ) -> None:
    driver = scanner(adapter="hci7")
    with pytest.raises(DriverUnavailableError, match="hci7"):
        await driver.open()
    await driver.close()


async def test_no_bluez_on_the_bus_is_a_clear_reason(system_bus: PrivateBus) -> None:
    driver = scanner()
    try:
        with pytest.raises(DriverUnavailableError, match="hci0"):
            await driver.open()
    finally:
        await driver.close()
        await release_bleak()


async def test_no_system_bus_at_all_is_a_clear_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'nothing'}")
    driver = scanner()
    try:
        with pytest.raises(DriverUnavailableError, match=r"D-Bus|hci0"):
            await driver.open()
    finally:
        await driver.close()
        await release_bleak()


def test_passive_mode_needs_patterns_and_patterns_are_checked() -> None:
    with pytest.raises(ValueError, match="or_patterns"):
        make("ble.bluez", "ble", mode="passive")
    with pytest.raises(ValueError, match="content"):
        make("ble.bluez", "ble", mode="passive", or_patterns=[{"content": "xyz"}])
    make("ble.bluez", "ble", mode="passive", or_patterns=[{"ad_type": 255, "content": "4c00"}])
