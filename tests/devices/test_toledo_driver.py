"""toledo.continuous (the driver kit's worked example) against a simulated indicator on a real
pty and a socket: weights and units, zero/tare, out of range, garbage, silence, a pulled
cable, configuration errors, and the kit's conformance suite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from devices.kit.conformance import DriverConformance, DriverRig
from devices.scale.toledo import ToledoScale
from devices.scale.units import WeightUnit
from devices.simulated.timeline import WeightTimeline
from devices.simulated.toledo_device import ToledoScaleSimulator
from gateway.drivers.contracts import Reading, ScaleDriver, ScaleStatus, WeightSample
from gateway.errors import DriverConfigError, DriverUnavailableError
from tests.devices.harness import make, plugin
from tests.waiting import patience

FAST = 460_800


@pytest.fixture
async def indicator(tmp_path: Path) -> AsyncIterator[ToledoScaleSimulator]:
    async with ToledoScaleSimulator(
        link=tmp_path / "ttyToledo",
        baudrate=FAST,
        stream_rate_hz=100,
        timeline=WeightTimeline.constant(1234.5),
    ) as sim:
        yield sim


def driver_for(sim: ToledoScaleSimulator, **extra: Any) -> Any:
    options = {
        "port": sim.url,
        "channel": "counter-1",
        "baudrate": FAST,
        # 8N1: a pty reopened with 7 data bits may refuse the settings (the simulator's
        # ``parity`` puts a 7E1 device's parity bit on the line instead).
        "bytesize": 8,
        "parity": "N",
        "checksum": sim.with_checksum,
        "tare_field": sim.tare_field,
        "no_data_timeout_s": patience(5.0),
    }
    return make("toledo.continuous", "toledo", **(options | extra))


async def gather(
    driver: ToledoScale, until: Callable[[list[WeightSample]], bool], *, within: float = 10.0
) -> list[WeightSample]:
    samples: list[WeightSample] = []
    readings: AsyncIterator[Reading] = driver.readings()
    try:
        async with asyncio.timeout(patience(within)):
            async for reading in readings:
                assert isinstance(reading, WeightSample)
                samples.append(reading)
                if until(samples):
                    break
    finally:
        await readings.aclose()  # type: ignore[attr-defined]
    return samples


def test_is_a_scale_driver_published_by_entry_point() -> None:
    assert plugin("toledo.continuous").description.startswith("weighing indicator")
    assert isinstance(make("toledo.continuous", port="/dev/null", channel="c"), ScaleDriver)


async def test_reads_weights_in_grams(indicator: ToledoScaleSimulator) -> None:
    driver = driver_for(indicator)
    await driver.open()
    try:
        [sample] = await gather(driver, lambda s: len(s) >= 1)
    finally:
        await driver.close()
    assert (sample.channel, sample.status, sample.stable) == ("counter-1", ScaleStatus.OK, True)
    assert sample.gross_grams == pytest.approx(1230.0)  # 1.23 kg: two decimals
    assert sample.net_grams == pytest.approx(1230.0)  # no tare


@pytest.mark.parametrize(
    ("unit", "decimals", "grams"),
    # 1234.5 g shown as 1234 g, 2.722 lb, 0.00123 t
    [(WeightUnit.G, 0, 1234.0), (WeightUnit.LB, 3, 2.722 * 453.59237), (WeightUnit.T, 5, 1230.0)],
)
async def test_follows_the_unit_of_the_frame(
    tmp_path: Path, unit: WeightUnit, decimals: int, grams: float
) -> None:
    async with ToledoScaleSimulator(
        link=tmp_path / "tty",
        baudrate=FAST,
        stream_rate_hz=100,
        unit=unit,
        decimals=decimals,
        timeline=WeightTimeline.constant(1234.5),
    ) as sim:
        driver = driver_for(sim)
        await driver.open()
        try:
            [sample] = await gather(driver, lambda s: len(s) >= 1)
        finally:
            await driver.close()
    assert sample.gross_grams == pytest.approx(grams, abs=0.5)


async def test_tare_and_zero_reach_the_indicator(indicator: ToledoScaleSimulator) -> None:
    driver = driver_for(indicator)
    await driver.open()
    try:
        await driver.tare("counter-1")
        samples = await gather(driver, lambda s: s[-1].net_grams == pytest.approx(0.0))
        assert samples[-1].gross_grams == pytest.approx(1230.0)  # net + tare
        await driver.zero("counter-1")
        samples = await gather(driver, lambda s: s[-1].gross_grams == pytest.approx(0.0))
        assert samples[-1].net_grams == pytest.approx(0.0)
    finally:
        await driver.close()
    assert indicator.commands == ["T", "Z"]


async def test_out_of_range_is_overload_without_weights(tmp_path: Path) -> None:
    async with ToledoScaleSimulator(
        link=tmp_path / "tty",
        baudrate=FAST,
        stream_rate_hz=100,
        capacity_grams=1000.0,
        timeline=WeightTimeline.constant(1234.5),
    ) as sim:
        driver = driver_for(sim)
        await driver.open()
        try:
            [sample] = await gather(driver, lambda s: len(s) >= 1)
        finally:
            await driver.close()
    assert (sample.status, sample.gross_grams, sample.net_grams) == (
        ScaleStatus.OVERLOAD,
        None,
        None,
    )


async def test_garbage_is_skipped_and_counted(indicator: ToledoScaleSimulator) -> None:
    indicator.parity = True  # a 7E1 indicator on a line read as 8N1: bit 7 is parity
    driver = driver_for(indicator)
    await driver.open()
    try:
        await gather(driver, lambda s: len(s) >= 2)
        indicator.inject_noise(b"\x02\x2c\x31 torn frame \xff\x00" + b"\x02" * 20)
        samples = await gather(driver, lambda s: len(s) >= 20)
        assert {s.status for s in samples} == {ScaleStatus.OK}
        assert driver.status_detail.startswith(f"{driver._splitter.frames} frames, ")
        assert driver._splitter.rejected > 0
        assert driver._splitter.noise > 0
    finally:
        await driver.close()


async def test_silence_raises_unavailable(indicator: ToledoScaleSimulator) -> None:
    driver = driver_for(indicator, no_data_timeout_s=0.3)
    await driver.open()
    try:
        await gather(driver, lambda s: len(s) >= 1)
        indicator.mute = True
        with pytest.raises(DriverUnavailableError, match=r"no valid frame .* for 0.3 s"):
            await gather(driver, lambda _s: False)
    finally:
        await driver.close()


async def test_a_pulled_cable_raises_unavailable_and_reopening_works(
    indicator: ToledoScaleSimulator,
) -> None:
    driver = driver_for(indicator)
    await driver.open()
    await gather(driver, lambda s: len(s) >= 1)
    await indicator.unplug()
    with pytest.raises(DriverUnavailableError, match=r"failed|no valid frame"):
        await gather(driver, lambda _s: False)
    await driver.close()
    with pytest.raises(DriverUnavailableError, match="cannot open"):
        await driver_for(indicator).open()
    await indicator.replug()
    again = driver_for(indicator)
    await again.open()  # the supervisor builds a new driver after its backoff
    try:
        assert len(await gather(again, lambda s: len(s) >= 3)) == 3
    finally:
        await again.close()


async def test_short_frames_without_checksum_over_a_socket(tmp_path: Path) -> None:
    async with ToledoScaleSimulator(
        line="socket",
        baudrate=FAST,
        stream_rate_hz=100,
        tare_field=False,
        with_checksum=False,
        timeline=WeightTimeline.constant(500.0),
    ) as sim:
        driver = driver_for(sim)
        await driver.open()
        try:
            [sample] = await gather(driver, lambda s: len(s) >= 1)
        finally:
            await driver.close()
    assert (sample.gross_grams, sample.net_grams) == (500.0, None)


async def test_commands_it_cannot_carry_out(indicator: ToledoScaleSimulator) -> None:
    driver = driver_for(indicator, zero_command="")
    with pytest.raises(DriverUnavailableError, match="not open"):
        await driver.tare("counter-1")
    await driver.open()
    try:
        with pytest.raises(DriverConfigError, match="unknown channel 'other'"):
            await driver.tare("other")
        with pytest.raises(DriverConfigError, match="zero is disabled"):
            await driver.zero("counter-1")
    finally:
        await driver.close()


@pytest.mark.parametrize(
    "options",
    [
        {"channel": "c"},  # no port
        {"port": "/dev/ttyS0"},  # no channel
        {"port": "/dev/ttyS0", "channel": "c", "bytesize": 6},
        {"port": "/dev/ttyS0", "channel": "c", "parity": "M"},
        {"port": "/dev/ttyS0", "channel": "c", "checksums": True},  # misspelt
        {"port": "/dev/ttyS0", "channel": "c", "no_data_timeout_s": 0},
    ],
)
def test_options_are_validated(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="validation error"):
        plugin("toledo.continuous").options_model.model_validate(options)


class TestToledoConformance(DriverConformance):
    """The walkthrough's last step: the kit's conformance suite against the simulated
    indicator, on a pty."""

    @pytest.fixture
    async def conformance_rig(self, tmp_path: Path) -> AsyncIterator[DriverRig]:
        async with ToledoScaleSimulator(
            link=tmp_path / "ttyToledo", baudrate=FAST, stream_rate_hz=100
        ) as sim:

            async def go_quiet(_driver: Any) -> None:
                sim.mute = True

            async def garble(_driver: Any) -> None:
                sim.inject_noise(b"\x02\x2c\x31\x20 12x4 \r\x7f" + bytes(range(256)))

            yield DriverRig(
                plugin=plugin("toledo.continuous"),
                options={
                    "port": sim.url,
                    "channel": "c",
                    "baudrate": FAST,
                    "bytesize": 8,
                    "parity": "N",
                },
                go_quiet=go_quiet,
                garble=garble,
                silence_limit_s=patience(1.5),
            )
