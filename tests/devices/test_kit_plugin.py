"""devices.kit.plugin: a driver module's PLUGIN, checked when the module is imported; and the
simulated-driver base every simulated plugin shares."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel, ConfigDict

from devices.kit.plugin import driver_plugin
from devices.kit.simulated import SimulatedDriver, SimulatedOptions
from gateway.clock import FakeClock
from gateway.drivers.contracts import DeviceFamily, DriverContext, Heartbeat, Reading
from tests.devices.harness import REGISTRY, make


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Lenient(BaseModel):
    """Accepts (ignores) unknown keys: a misspelt option would go unnoticed."""


class Receiver:
    def __init__(self, context: DriverContext, options: Options) -> None:
        self.context = context

    async def open(self) -> None:
        return None

    async def readings(self) -> AsyncIterator[Reading]:
        yield Heartbeat(self.context.clock.monotonic())

    async def close(self) -> None:
        return None


def test_a_plugin_builds_its_driver_from_context_and_options() -> None:
    plugin = driver_plugin(
        Receiver, family=DeviceFamily.BEACON, options=Options, description="test receiver"
    )
    assert (plugin.family, plugin.options_model, plugin.description) == (
        DeviceFamily.BEACON,
        Options,
        "test receiver",
    )
    assert plugin.default_silence_limit == 90.0
    driver = plugin.create(DriverContext("r", FakeClock()), Options())
    assert isinstance(driver, Receiver)


def test_options_must_refuse_unknown_keys() -> None:
    with pytest.raises(TypeError, match="Lenient must forbid unknown keys"):
        driver_plugin(Receiver, family=DeviceFamily.BEACON, options=Lenient, description="x")


def test_a_driver_class_must_have_its_familys_members() -> None:
    with pytest.raises(TypeError, match="Receiver lacks channels, zero, tare of the scale"):
        driver_plugin(Receiver, family=DeviceFamily.SCALE, options=Options, description="x")
    with pytest.raises(TypeError, match="labels_per_minute, push, flash of the esl contract"):
        driver_plugin(Receiver, family=DeviceFamily.ESL, options=Options, description="x")


@pytest.mark.parametrize("name", REGISTRY.names())
def test_every_published_driver_refuses_unknown_options(name: str) -> None:
    plugin = REGISTRY.load(name)
    assert plugin.options_model.model_config.get("extra") == "forbid"
    assert plugin.description


class Seeded(SimulatedDriver[SimulatedOptions]):
    pass


def test_simulated_randomness_is_per_seed_instance_and_stream() -> None:
    def draw(seed: int, name: str, stream: str | None = None) -> float:
        driver = Seeded(DriverContext(name, FakeClock()), SimulatedOptions(seed=seed))
        return driver._random(stream).random()

    assert draw(1, "a") == draw(1, "a")
    assert len({draw(1, "a"), draw(2, "a"), draw(1, "b"), draw(1, "a", "radio")}) == 4


async def test_go_quiet_silences_a_running_simulated_driver() -> None:
    driver = make("simulated.scale", sample_rate_hz=200)  # two channels
    await driver.open()
    readings = driver.readings()
    try:
        for _ in range(3):
            await anext(readings)
        driver.faults.go_quiet()
        after = 0
        with pytest.raises(TimeoutError):
            while True:
                async with asyncio.timeout(0.3):  # the silence watchdog's view
                    await anext(readings)
                after += 1
                assert after <= 1, "still sampling after going quiet"  # the batch's last
    finally:
        await readings.aclose()
    await driver.close()
