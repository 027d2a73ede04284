"""Fault injection of every simulated plugin, as the supervisor and lifecycle tests use it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from devices.kit.faults import OpenAttempts
from gateway.drivers.contracts import InstanceMemory
from gateway.errors import DriverConfigError, DriverUnavailableError
from tests.devices.harness import make, take
from tests.waiting import patience

# Options that make each driver yield often, so a fault is the only reason it stops.
CHATTY: dict[str, dict[str, Any]] = {
    "simulated.scale": {"sample_rate_hz": 100},
    "simulated.beacon": {"heartbeat_s": 0.01},
    "simulated.esl": {"heartbeat_s": 0.01},
}

each_plugin = pytest.mark.parametrize("name", sorted(CHATTY))


def faulty(
    name: str, instance: str = "dev", memory: InstanceMemory | None = None, **faults: Any
) -> Any:
    return make(name, instance, memory=memory, **CHATTY[name], faults=faults)


@each_plugin
async def test_no_faults_by_default(name: str) -> None:
    driver = make(name, **CHATTY[name])
    await driver.open()
    assert len(await take(driver.readings(), 5)) == 5
    await driver.close()


@each_plugin
async def test_fail_open_times_counts_across_fresh_driver_objects(name: str) -> None:
    # The supervisor builds a new driver on every restart, each with the instance's memory:
    # the count must survive that.
    flaky = InstanceMemory()
    for attempt in (1, 2):
        with pytest.raises(DriverUnavailableError, match=f"simulated open failure {attempt}/2"):
            await faulty(name, "flaky", flaky, fail_open_times=2).open()
    await faulty(name, "flaky", flaky, fail_open_times=2).open()
    assert flaky.keep(OpenAttempts).count == 3
    # Another instance (another memory) counts from one.
    with pytest.raises(DriverUnavailableError, match="simulated open failure 1/2"):
        await faulty(name, "other", fail_open_times=2).open()


@each_plugin
async def test_config_error_on_open(name: str) -> None:
    with pytest.raises(DriverConfigError, match="simulated configuration error") as caught:
        await faulty(name, "broken", config_error_on_open=True).open()
    assert caught.value.driver == "broken"


@each_plugin
async def test_hang_on_open(name: str) -> None:
    driver = faulty(name, hang_on_open=True)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await driver.open()


@each_plugin
async def test_crash_after_some_readings(name: str) -> None:
    # A reading every 10 ms and the crash after a second (fault timers count loop time): only
    # a stall of that second before the first reading could leave none to see.
    driver = faulty(name, crash_after_s=patience(1.0))
    readings = driver.readings()
    seen = 0
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            async with asyncio.timeout(patience(10)):
                async for _ in readings:
                    seen += 1
    finally:
        await readings.aclose()
    assert seen > 0


@each_plugin
async def test_hang_after_goes_silent_until_cancelled(name: str) -> None:
    driver = faulty(name, hang_after_s=0.1)
    readings = driver.readings()
    try:
        for _ in range(1000):
            try:
                async with asyncio.timeout(0.3):  # the silence watchdog's view
                    await anext(readings)
            except TimeoutError:
                break
        else:
            pytest.fail("the driver never went silent")
    finally:
        await readings.aclose()


def test_open_attempts_are_numbered_from_one() -> None:
    attempts = OpenAttempts()
    assert [attempts.record(), attempts.record(), attempts.record()] == [1, 2, 3]
