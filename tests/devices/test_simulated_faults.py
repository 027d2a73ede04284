"""Fault injection of every simulated plugin, as the supervisor and lifecycle tests use it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from devices.simulated.faults import OpenAttempts
from devices.simulated.plugins import OPEN_ATTEMPTS
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


@pytest.fixture(autouse=True)
def _fresh_open_attempts() -> Iterator[None]:
    OPEN_ATTEMPTS.reset()
    yield
    OPEN_ATTEMPTS.reset()


def faulty(name: str, instance: str = "dev", **faults: Any) -> Any:
    return make(name, instance, **CHATTY[name], faults=faults)


@each_plugin
async def test_no_faults_by_default(name: str) -> None:
    driver = make(name, **CHATTY[name])
    await driver.open()
    assert len(await take(driver.readings(), 5)) == 5
    await driver.close()


@each_plugin
async def test_fail_open_times_counts_across_fresh_driver_objects(name: str) -> None:
    for attempt in (1, 2):
        # The supervisor builds a new driver on every restart; the count must survive that.
        with pytest.raises(DriverUnavailableError, match=f"simulated open failure {attempt}/2"):
            await faulty(name, "flaky", fail_open_times=2).open()
    await faulty(name, "flaky", fail_open_times=2).open()
    await faulty(name, "other", fail_open_times=0).open()  # counted per instance name
    OPEN_ATTEMPTS.reset("flaky")
    with pytest.raises(DriverUnavailableError):
        await faulty(name, "flaky", fail_open_times=2).open()


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


def test_open_attempts_are_counted_by_name() -> None:
    attempts = OpenAttempts()
    assert [attempts.record("a"), attempts.record("a"), attempts.record("b")] == [1, 2, 1]
    attempts.reset()
    assert attempts.record("a") == 1
