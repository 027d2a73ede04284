"""ascii.scale against simulated scale heads on real ptys (and a socket): the three protocols,
unit switches, overload, noise, error replies, zero/tare, silence, unplug/replug, config."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from devices.scale.ascii import AsciiScale
from devices.scale.units import WeightUnit
from devices.simulated.ascii_device import AsciiScaleSimulator
from devices.simulated.timeline import WeightTimeline
from gateway.clock import SystemClock
from gateway.config import parse_config
from gateway.drivers.config import DeviceConfig, ResolvedDevice, SupervisorConfig
from gateway.drivers.contracts import Reading, ScaleDriver, ScaleStatus, WeightSample
from gateway.drivers.registry import DriverRegistry
from gateway.drivers.supervisor import DriverHealth, Supervisor
from gateway.errors import ConfigError, DriverConfigError, DriverUnavailableError
from tests.devices.harness import make, plugin
from tests.waiting import patience, until

FAST = 460_800


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "ttyScale"


def simulator(protocol: Any, link: Path, **kwargs: Any) -> AsciiScaleSimulator:
    kwargs.setdefault("timeline", WeightTimeline.constant(123.45))
    return AsciiScaleSimulator(protocol, link=link, baudrate=FAST, stream_rate_hz=100, **kwargs)


def driver_for(sim: AsciiScaleSimulator, **extra: Any) -> Any:
    options = {
        "port": sim.url,
        "protocol": sim.protocol,
        "channel": "scale-1",
        "baudrate": FAST,
        "poll_interval_s": 0.005,
        # Replies are not late, nor the line silent, on a busy machine either (the tests of
        # lost replies and silence set their own).
        "response_timeout_s": patience(2.0),
        "no_data_timeout_s": patience(10.0),
    }
    return make("ascii.scale", "head", **(options | extra))


async def gather(
    driver: AsciiScale,
    until: Callable[[list[WeightSample]], bool],
    *,
    within: float = 10.0,
    during: Callable[[WeightSample], Any] | None = None,
) -> list[WeightSample]:
    samples: list[WeightSample] = []
    readings: AsyncIterator[Reading] = driver.readings()
    try:
        async with asyncio.timeout(patience(within)):
            async for reading in readings:
                assert isinstance(reading, WeightSample)
                samples.append(reading)
                if during is not None:
                    await during(reading)
                if until(samples):
                    break
    finally:
        await readings.aclose()  # type: ignore[attr-defined]
    return samples


def grams(sample: WeightSample) -> float | None:
    return sample.net_grams if sample.net_grams is not None else sample.gross_grams


@pytest.mark.parametrize("protocol", ["mt-sics", "ad-stream", "st-gs"])
async def test_each_protocol_reports_grams_and_follows_unit_switches(
    protocol: str, link: Path
) -> None:
    timeline = WeightTimeline.constant(1500.0)  # stable until the test says otherwise
    async with simulator(protocol, link, timeline=timeline, unit=WeightUnit.KG, decimals=3) as sim:
        driver = driver_for(sim)
        assert isinstance(driver, ScaleDriver)
        await driver.open()
        try:
            first = await gather(driver, lambda s: len(s) >= 2)
            sim.unit = WeightUnit.LB  # a technician presses the unit key
            sim.decimals = 4
            sim.timeline = WeightTimeline.constant(1500.0, stable=False)  # and rocks the plate
            later = await gather(driver, lambda s: len(s) >= 3 and s[-1].stable is False)
        finally:
            await driver.close()
    assert grams(first[0]) == pytest.approx(1500.0)
    assert first[0].stable is True
    assert all(s.status is ScaleStatus.OK for s in first + later)
    assert grams(later[-1]) == pytest.approx(1500.0, abs=0.05)  # 3.3069 lb, still grams
    if protocol == "st-gs":
        assert first[0].gross_grams is not None
    else:
        assert first[0].net_grams is not None


async def test_a_socket_url_works_like_a_pty() -> None:
    sim = AsciiScaleSimulator("ad-stream", line="socket", baudrate=FAST, stream_rate_hz=100)
    sim.timeline = WeightTimeline.constant(42.0)
    async with sim:
        driver = driver_for(sim)
        await driver.open()
        try:
            samples = await gather(driver, lambda s: len(s) >= 2)
        finally:
            await driver.close()
    assert sim.url.startswith("socket://")
    assert grams(samples[-1]) == 42.0


@pytest.mark.parametrize("protocol", ["ad-stream", "st-gs", "mt-sics"])
async def test_garbage_and_binary_noise_are_skipped_and_counted(protocol: str, link: Path) -> None:
    async with simulator(protocol, link) as sim:
        driver = driver_for(sim, response_timeout_s=0.5)  # a reply lost in the noise costs this
        await driver.open()
        noise = [
            b"\x00\xff\xfe\x80\x81\r\n",  # binary
            b"#" * 500,  # a run with no end: wrong baud rate, say
            b"\r\nST,\r\n",  # half a line
            b"hello\r\n",
        ]

        async def spray(_sample: WeightSample) -> None:
            if noise:
                sim.inject_noise(noise.pop(0))

        try:
            samples = await gather(driver, lambda s: not noise and len(s) >= 12, during=spray)
            detail = driver.status_detail
        finally:
            await driver.close()
    good = [s for s in samples if s.status is ScaleStatus.OK]
    assert all(grams(s) == pytest.approx(123.45) for s in good)
    assert len(good) >= 8
    noisy = int(detail.split(", ")[1].split()[0])
    assert noisy >= 2, detail


async def test_overload_lines_of_nines_are_overload(link: Path) -> None:
    over = WeightTimeline.constant(50_000.0)
    for protocol in ("ad-stream", "st-gs", "mt-sics"):
        async with simulator(protocol, link, timeline=over, capacity_grams=30_000) as sim:
            driver = driver_for(sim)
            await driver.open()
            try:
                samples = await gather(driver, lambda s: len(s) >= 2)
            finally:
                await driver.close()
        assert {s.status for s in samples} == {ScaleStatus.OVERLOAD}, protocol
        assert all(grams(s) is None for s in samples)


async def test_absurd_weights_are_errors_not_stock(link: Path) -> None:
    huge = WeightTimeline.constant(9_000_000.0)
    async with simulator("ad-stream", link, timeline=huge, capacity_grams=1e9) as sim:
        driver = driver_for(sim, max_grams=100_000)
        await driver.open()
        try:
            samples = await gather(driver, lambda s: len(s) >= 2)
        finally:
            await driver.close()
    assert {s.status for s in samples} == {ScaleStatus.ERROR}
    assert all(s.gross_grams is None and s.net_grams is None for s in samples)
    assert "2 implausible" in driver.status_detail


async def test_sics_error_replies_become_error_samples(link: Path) -> None:
    moving = WeightTimeline.constant(10.0, stable=False)
    async with simulator("mt-sics", link, timeline=moving) as sim:
        # "S" waits for stability; this scale answers "S I" while in motion
        driver = driver_for(sim, weigh_command="S", zero_command="XYZ")
        await driver.open()
        try:
            samples = await gather(driver, lambda s: len(s) >= 2)
            # a command the scale does not know: it answers ES
            with pytest.raises(DriverUnavailableError, match="scale refused zero: error reply ES"):
                await driver.zero("scale-1")
        finally:
            await driver.close()
    assert {s.status for s in samples} == {ScaleStatus.ERROR}
    assert "2 error replies" in driver.status_detail


async def test_sics_zero_and_tare_wait_for_the_acknowledgement(link: Path) -> None:
    async with simulator("mt-sics", link, timeline=WeightTimeline.constant(500.0)) as sim:
        driver = driver_for(sim)
        await driver.open()
        done: list[str] = []

        async def command(sample: WeightSample) -> None:
            if not done:
                await driver.tare("scale-1")
                done.append("tare")
            elif done == ["tare"] and sample.net_grams == 0.0:
                await driver.zero("scale-1")
                done.append("zero")

        try:
            await gather(driver, lambda s: len(done) == 2 and len(s) >= 4, during=command)
        finally:
            await driver.close()
    assert [c for c in sim.commands if c in {"T", "Z"}] == ["T", "Z"]
    assert sim.tare_grams == 0.0
    assert sim.zero_grams == 500.0


async def test_stream_tare_is_sent_and_st_gs_needs_a_configured_command(link: Path) -> None:
    async with simulator("ad-stream", link, timeline=WeightTimeline.constant(80.0)) as sim:
        driver = driver_for(sim)
        await driver.open()
        try:
            await driver.tare("scale-1")
            samples = await gather(driver, lambda s: s[-1].net_grams == 0.0)
        finally:
            await driver.close()
    assert samples[-1].net_grams == 0.0
    st_gs = make("ascii.scale", port="/dev/null", protocol="st-gs", channel="c")
    with pytest.raises(DriverConfigError, match="set tare_command"):
        await st_gs.tare("c")
    with pytest.raises(DriverConfigError, match="unknown channel"):
        await st_gs.zero("other")


async def test_st_gs_ignores_other_addresses_and_silence_is_unavailable(link: Path) -> None:
    async with simulator("st-gs", link, address="02") as sim:
        driver = driver_for(sim, address="01", no_data_timeout_s=1.0)  # lines arrive first
        await driver.open()
        try:
            with pytest.raises(DriverUnavailableError, match="no valid line"):
                await gather(driver, lambda s: False)
        finally:
            await driver.close()
    assert driver.other_address_lines > 0


async def test_a_muted_sics_scale_gives_error_samples_then_unavailable(link: Path) -> None:
    async with simulator("mt-sics", link) as sim:
        sim.mute = True
        # far apart, so that error samples come before the silence gives up
        driver = driver_for(sim, response_timeout_s=0.05, no_data_timeout_s=1.0)
        await driver.open()
        samples: list[WeightSample] = []

        async def keep(sample: WeightSample) -> None:
            samples.append(sample)

        try:
            with pytest.raises(DriverUnavailableError, match="no valid line"):
                await gather(driver, lambda s: False, during=keep)
        finally:
            await driver.close()
    assert samples
    assert {s.status for s in samples} == {ScaleStatus.ERROR}


async def test_unplugged_and_replugged_the_supervisor_brings_it_back(
    link: Path, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[WeightSample] = []

    def sink(_name: str, reading: Reading) -> None:
        if isinstance(reading, WeightSample):
            received.append(reading)

    config = SupervisorConfig(
        backoff_initial_s=0.05, backoff_max_s=0.2, start_timeout_s=2, stop_timeout_s=1
    )
    supervisor = Supervisor(clock=SystemClock(), config=config, sink=sink)
    async with simulator("ad-stream", link, timeline=WeightTimeline.constant(10.0)) as sim:
        options = {"port": str(link), "protocol": "ad-stream", "channel": "c", "baudrate": FAST}
        device = ResolvedDevice(
            DeviceConfig(name="head", driver="ascii.scale"),
            plugin("ascii.scale"),
            plugin("ascii.scale").options_model.model_validate(options),
        )
        supervisor.apply([device])
        runner = asyncio.create_task(supervisor.run())
        try:
            await until(lambda: len(received) >= 3)
            await sim.unplug()
            await until(lambda: supervisor.statuses()[0].health is DriverHealth.DEGRADED)
            # Why it went degraded, said once when it did (a retry since may have replaced
            # last_error with why the port cannot be opened again).
            [degraded] = [r.getMessage() for r in caplog.records if "degraded" in r.getMessage()]
            assert "failed" in degraded, degraded
            sim.timeline = WeightTimeline.constant(20.0)
            await sim.replug()
            status = await until(
                lambda: (
                    received[-1].net_grams == 20.0
                    and (s := supervisor.statuses()[0]).health is DriverHealth.RUNNING
                    and s
                )
            )
            assert status.restarts >= 1
        finally:
            await supervisor.shutdown(2.0)
            await runner


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"protocol": "ad-stream", "channel": "c"}, "devices.0.options.port: Field required"),
        ({"port": "/dev/ttyS0", "channel": "c"}, "devices.0.options.protocol: Field required"),
        (
            {"port": "/dev/ttyS0", "protocol": "nmea", "channel": "c"},
            "Input should be 'mt-sics', 'ad-stream' or 'st-gs'",
        ),
        (
            {"port": "/dev/ttyS0", "protocol": "ad-stream", "channel": "c", "address": "01"},
            "address applies to protocol 'st-gs' only",
        ),
        (
            {"port": "/dev/ttyS0", "protocol": "st-gs", "channel": "c", "parity": "X"},
            "parity: Input should be 'N', 'E' or 'O'",
        ),
    ],
)
def test_configuration_errors_are_clear(options: dict[str, Any], message: str) -> None:
    document = {
        "store": {"id": "s1"},
        "devices": [{"name": "head", "driver": "ascii.scale", "options": options}],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(document, registry=DriverRegistry.from_entry_points(), environ={})
    assert message in str(caught.value)


async def test_a_missing_port_is_unavailable(tmp_path: Path) -> None:
    driver = make("ascii.scale", port=str(tmp_path / "nope"), protocol="ad-stream", channel="c")
    with pytest.raises(DriverUnavailableError, match="cannot open"):
        await driver.open()
    await driver.close()
