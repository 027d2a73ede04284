"""modbus.rtu against the simulated bus: real pymodbus on both ends, over sockets and ptys.

Faults: CRC errors, truncated replies, replies from the wrong unit, timeouts, slow and dead
units among healthy ones, absurd weights, the port unplugged and replugged (the driver raises
DriverUnavailableError and the supervisor reopens it), and configuration errors.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from devices.scale.modbus import ModbusRtuScale
from devices.scale.modbus_protocol import BUILTIN_MODELS, RegisterMap
from devices.simulated.modbus_device import ModbusBusSimulator, ModbusFault, SimulatedTransmitter
from devices.simulated.serial_line import LineTiming, PtyLine
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

FAST = 1_000_000  # baud: bytes take microseconds, so tests spend their time on logic
DGT = BUILTIN_MODELS["dini-argeo-dgt"]
FLOAT = BUILTIN_MODELS["generic-float32"]


def dgt(unit_id: int, grams: float = 0.0, **kwargs: Any) -> SimulatedTransmitter:
    return SimulatedTransmitter(
        unit_id=unit_id, register_map=DGT, timeline=WeightTimeline.constant(grams), **kwargs
    )


def channel(unit_id: int, model: str = "dini-argeo-dgt", **extra: Any) -> dict[str, Any]:
    return {"channel": f"shelf-{unit_id}", "unit_id": unit_id, "model": model} | extra


FAILING = {"timeout_s": 0.1}  # a unit that does not answer (in time) costs this per try


def driver_for(bus: ModbusBusSimulator, channels: list[dict[str, Any]], **extra: Any) -> Any:
    options: dict[str, Any] = {
        "port": bus.url,
        "baudrate": bus.timing.baudrate,
        "poll_rate_hz": 200,
        # A healthy unit's reply is never late, on a busy machine either; a unit a test makes
        # slow, silent or dead gets a short timeout of its own (``FAILING``).
        "timeout_s": patience(1.0),
        "turnaround_guard_s": 0.005,
        "devices": channels,
    }
    return make("modbus.rtu", "bus", **(options | extra))


async def gather(
    driver: ModbusRtuScale,
    until: Callable[[list[WeightSample]], bool],
    *,
    within: float = 10.0,
    during: Callable[[WeightSample], Any] | None = None,
) -> list[WeightSample]:
    """Samples from ``readings()`` until ``until(samples)`` holds (the iterator is closed)."""
    samples: list[WeightSample] = []
    readings: AsyncIterator[Reading] = driver.readings()
    try:
        async with asyncio.timeout(patience(within)):
            async for reading in readings:
                if not isinstance(reading, WeightSample):
                    continue
                samples.append(reading)
                if during is not None:
                    await during(reading)
                if until(samples):
                    break
    finally:
        await readings.aclose()  # type: ignore[attr-defined]
    return samples


def of(samples: list[WeightSample], name: str) -> list[WeightSample]:
    return [sample for sample in samples if sample.channel == name]


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "ttyRS485"


# --- reading ----------------------------------------------------------------------------------


async def test_every_unit_reports_grams_through_its_register_map() -> None:
    kg_float = SimulatedTransmitter(
        unit_id=2,
        register_map=FLOAT.adjusted(word_order="little", unit="kg"),  # type: ignore[arg-type]
        timeline=WeightTimeline.constant(2500.0),
    )
    custom = RegisterMap.model_validate(
        {"registers": "holding", "net_address": 20, "data_type": "int16", "decimals": 1}
    )
    tenths = SimulatedTransmitter(
        unit_id=3, register_map=custom, timeline=WeightTimeline.constant(-12.3)
    )
    async with ModbusBusSimulator([dgt(1, 1234.0), kg_float, tenths], baudrate=FAST) as bus:
        driver = driver_for(
            bus,
            [
                channel(1),
                channel(2, "generic-float32", word_order="little", unit="kg"),
                channel(3, "tenths"),
            ],
            models={"tenths": custom.model_dump(mode="json")},
        )
        assert isinstance(driver, ScaleDriver)
        assert driver.channels == ("shelf-1", "shelf-2", "shelf-3")
        await driver.open()
        try:
            samples = await gather(driver, lambda s: len(s) >= 6)
        finally:
            await driver.close()
    first = {sample.channel: sample for sample in samples[:3]}
    assert (first["shelf-1"].gross_grams, first["shelf-1"].net_grams) == (1234.0, 1234.0)
    assert first["shelf-1"].stable is True
    assert first["shelf-2"].net_grams == 2500.0
    assert first["shelf-2"].stable is None
    assert first["shelf-3"].net_grams == pytest.approx(-12.3)
    assert all(sample.status is ScaleStatus.OK for sample in samples)
    assert all(sample.monotonic == 1000.0 for sample in samples)  # the injected clock


async def test_negative_weights_and_overload_come_from_the_status_bits() -> None:
    transmitters = [dgt(1, -40.0), dgt(2, 50_000.0, capacity_grams=30_000.0)]
    async with ModbusBusSimulator(transmitters, baudrate=FAST) as bus:
        driver = driver_for(bus, [channel(1), channel(2)])
        await driver.open()
        try:
            samples = await gather(driver, lambda s: len(s) >= 2)
        finally:
            await driver.close()
    assert samples[0].gross_grams == -40.0
    assert samples[1].status is ScaleStatus.OVERLOAD


async def test_absurd_weights_are_errors_never_stock() -> None:
    huge = dgt(1, 9_000_000.0, capacity_grams=1e9)  # a mis-set decimal point, say
    nan = SimulatedTransmitter(
        unit_id=2, register_map=FLOAT, timeline=WeightTimeline.constant(math.nan)
    )
    async with ModbusBusSimulator([huge, nan], baudrate=FAST) as bus:
        driver = driver_for(bus, [channel(1), channel(2, "generic-float32")], max_grams=100_000)
        await driver.open()
        try:
            samples = await gather(driver, lambda s: len(s) >= 4)
        finally:
            await driver.close()
    for sample in samples:
        assert sample.status is ScaleStatus.ERROR
        assert (sample.gross_grams, sample.net_grams) == (None, None)


# --- faults on one unit -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (ModbusFault.CRC, "CRC error"),
        (ModbusFault.TRUNCATED, "truncated reply"),
        (ModbusFault.WRONG_UNIT, "reply from unit 3 instead of 2"),
        (ModbusFault.SILENT, "no reply"),
    ],
)
async def test_a_bad_reply_costs_one_error_sample_of_that_unit_only(
    fault: ModbusFault, reason: str
) -> None:
    transmitters = [dgt(1, 100.0), dgt(2, 200.0), dgt(3, 300.0)]
    async with ModbusBusSimulator(transmitters, baudrate=FAST) as bus:
        driver = driver_for(bus, [channel(1), channel(2, **FAILING), channel(3)])
        await driver.open()
        seen: list[str | None] = []

        async def note(sample: WeightSample) -> None:
            if sample.status is ScaleStatus.ERROR:
                seen.extend(health.last_error for health in driver.unit_health())

        try:
            await gather(driver, lambda s: len(s) >= 3)
            transmitters[1].inject(fault, times=2)
            samples = await gather(
                driver,
                lambda s: (
                    sum(x.status is ScaleStatus.ERROR for x in s) >= 2
                    and of(s, "shelf-2")[-1].status is ScaleStatus.OK
                ),
                during=note,
            )
        finally:
            await driver.close()
    errors = [sample for sample in samples if sample.status is ScaleStatus.ERROR]
    assert {sample.channel for sample in errors} == {"shelf-2"}
    assert errors[0].gross_grams is None
    assert any(error is not None and reason in error for error in seen), seen
    assert all(
        sample.gross_grams == {"shelf-1": 100.0, "shelf-3": 300.0}[sample.channel]
        for sample in samples
        if sample.channel != "shelf-2"
    )
    assert of(samples, "shelf-2")[-1].gross_grams == 200.0  # and it recovered
    assert driver.unit_health()[1].consecutive_failures == 0


@pytest.mark.slow
async def test_a_dead_and_a_slow_unit_do_not_stall_the_others() -> None:
    # Unit 2 answers 150 ms after the request, past the 100 ms timeout: its late reply lands in
    # the turnaround guard, where it cannot be mistaken for the next unit's (docs/operations.md).
    # The guard outlasts the late reply by far (to 500 ms), so a busy machine's stall cannot
    # push the reply past it into the next unit's transaction.
    slow = dgt(2, 200.0, slow_reply_s=0.15)
    slow.inject(ModbusFault.SLOW, times=None)
    transmitters = [dgt(1, 100.0), slow, dgt(3, 300.0)]  # unit 4 is configured but dead
    async with ModbusBusSimulator(transmitters, baudrate=FAST) as bus:
        driver = driver_for(
            bus,
            [channel(1), channel(2, **FAILING), channel(3), channel(4, **FAILING)],
            failures_before_backoff=2,
            max_backoff_cycles=64,
            turnaround_guard_s=0.4,
        )
        await driver.open()
        try:
            samples = await gather(
                driver,
                lambda s: len(of(s, "shelf-1")) >= 40 and len(of(s, "shelf-3")) >= 40,
                within=20,
            )
            health = {unit.unit_id: unit for unit in driver.unit_health()}
            detail = driver.status_detail
        finally:
            await driver.close()
    for name in ("shelf-1", "shelf-3"):
        assert all(sample.status is ScaleStatus.OK for sample in of(samples, name))
    # the failing units were tried far less often than the healthy ones: they back off
    assert len(of(samples, "shelf-4")) < len(of(samples, "shelf-1")) / 3
    assert all(sample.status is ScaleStatus.ERROR for sample in of(samples, "shelf-4"))
    assert not health[4].online
    assert not health[2].online
    assert health[1].online
    assert health[4].failures >= 2
    assert "2/4 units answering" in detail
    assert "unit 4 (shelf-4): no reply" in detail


async def test_a_unit_that_comes_back_is_polled_again() -> None:
    transmitters = [dgt(1, 100.0), dgt(2, 200.0)]
    transmitters[1].inject(ModbusFault.SILENT, times=None)
    async with ModbusBusSimulator(transmitters, baudrate=FAST) as bus:
        driver = driver_for(
            bus,
            [channel(1), channel(2, **FAILING)],
            failures_before_backoff=1,
            max_backoff_cycles=4,
        )
        await driver.open()
        try:
            await gather(driver, lambda s: not driver.unit_health()[1].online)
            assert "1/2 units answering" in driver.status_detail
            transmitters[1].heal()
            await gather(
                driver,
                lambda s: bool(of(s, "shelf-2")) and of(s, "shelf-2")[-1].status is ScaleStatus.OK,
            )
        finally:
            await driver.close()
    assert driver.unit_health()[1].online
    assert driver.status_detail == "2 unit(s) answering"


# --- commands ---------------------------------------------------------------------------------


async def test_tare_and_zero_make_edges_on_the_command_register() -> None:
    unit = dgt(1, 500.0)
    async with ModbusBusSimulator([unit], baudrate=FAST) as bus:
        driver = driver_for(bus, [channel(1)])
        await driver.open()
        commanded: list[str] = []

        async def command(sample: WeightSample) -> None:
            # commands arrive while readings() runs, as they do from the CLI
            if not commanded:
                commanded.append("tare")
                await driver.tare("shelf-1")
                await driver.tare("shelf-1")  # a second tare is a new edge, not ignored
            elif len(commanded) == 1 and sample.net_grams == 0.0:
                commanded.append("zero")
                await driver.zero("shelf-1")

        try:
            samples = await gather(
                driver,
                lambda s: len(commanded) == 2 and s[-1].gross_grams == 0.0,
                during=command,
            )
        finally:
            await driver.close()
    assert unit.commands == ["tare", "tare", "zero"]
    assert unit.holding[0] == 0  # left idle
    assert any(s.gross_grams == 500.0 and s.net_grams == 0.0 for s in samples)


async def test_commands_the_map_cannot_do_are_config_errors() -> None:
    async with ModbusBusSimulator([dgt(1)], baudrate=FAST) as bus:
        driver = driver_for(bus, [channel(1, "generic-float32")])
        await driver.open()
        try:
            with pytest.raises(DriverConfigError, match="has no tare command"):
                await driver.tare("shelf-1")
            with pytest.raises(DriverConfigError, match="unknown channel 'nope'"):
                await driver.zero("nope")
        finally:
            await driver.close()


async def test_a_command_to_a_dead_unit_is_unavailable() -> None:
    async with ModbusBusSimulator([dgt(1)], baudrate=FAST) as bus:
        driver = driver_for(bus, [channel(1), channel(9, **FAILING)])
        await driver.open()
        try:
            with pytest.raises(DriverUnavailableError, match="unit 9 did not take the zero"):
                await driver.zero("shelf-9")
        finally:
            await driver.close()


# --- the port ---------------------------------------------------------------------------------


async def test_pty_port_and_socket_unplug_raise_unavailable(link: Path) -> None:
    async with ModbusBusSimulator([dgt(1, 10.0)], line="pty", link=link, baudrate=FAST) as bus:
        driver = driver_for(bus, [channel(1)])
        await driver.open()
        try:
            samples = await gather(driver, lambda s: len(s) >= 3)
            assert samples[-1].gross_grams == 10.0
            await bus.unplug()
            with pytest.raises(DriverUnavailableError, match=r"closed|failed"):
                await gather(driver, lambda s: False)
        finally:
            await driver.close()
        with pytest.raises(DriverUnavailableError, match="does not exist"):
            await driver_for(bus, [channel(1)]).open()


async def test_unplugged_and_replugged_the_supervisor_brings_it_back(link: Path) -> None:
    received: list[WeightSample] = []

    def sink(_name: str, reading: Reading) -> None:
        if isinstance(reading, WeightSample):
            received.append(reading)

    config = SupervisorConfig(
        backoff_initial_s=0.05, backoff_max_s=0.2, start_timeout_s=2, stop_timeout_s=1
    )
    supervisor = Supervisor(clock=SystemClock(), config=config, sink=sink)
    async with ModbusBusSimulator([dgt(1, 10.0)], line="pty", link=link, baudrate=FAST) as bus:
        options = {
            "port": str(link),
            "baudrate": FAST,
            "poll_rate_hz": 100,
            "devices": [channel(1)],
        }
        device = ResolvedDevice(
            DeviceConfig(name="bus", driver="modbus.rtu"),
            plugin("modbus.rtu"),
            plugin("modbus.rtu").options_model.model_validate(options),
        )
        supervisor.apply([device])
        runner = asyncio.create_task(supervisor.run())
        try:
            await until(lambda: len(received) >= 3)
            await bus.unplug()
            status = await until(
                lambda: (s := supervisor.statuses()[0]).health is DriverHealth.DEGRADED and s
            )
            assert status.last_error is not None
            assert "closed" in status.last_error or "does not exist" in status.last_error
            bus.transmitters[1].timeline = WeightTimeline.constant(20.0)
            await bus.replug()
            status = await until(
                lambda: (
                    received[-1].gross_grams == 20.0
                    and (s := supervisor.statuses()[0]).health is DriverHealth.RUNNING
                    and s
                )
            )
            assert status.restarts >= 1
        finally:
            await supervisor.shutdown(2.0)
            await runner


# --- timing -----------------------------------------------------------------------------------


async def test_the_simulated_line_takes_the_bytes_time_at_its_baud_rate(link: Path) -> None:
    timing = LineTiming(1200)  # 8N1: 10 bits per character, 8.3 ms each
    line = PtyLine(link, timing, lambda _data: None)
    await line.plug()
    loop = asyncio.get_running_loop()
    chunks: list[tuple[float, bytes]] = []
    try:
        with Path(link).open("rb", buffering=0) as tty:
            os.set_blocking(tty.fileno(), False)
            done = asyncio.Event()

            def readable() -> None:
                data = os.read(tty.fileno(), 64)
                chunks.append((loop.time(), data))
                if sum(len(chunk) for _, chunk in chunks) >= 12:
                    done.set()

            loop.add_reader(tty.fileno(), readable)
            try:
                start = loop.time()
                await line.send(b"0123456789AB")
                async with asyncio.timeout(patience(5)):
                    await done.wait()
            finally:
                loop.remove_reader(tty.fileno())
    finally:
        await line.unplug()
    assert b"".join(chunk for _, chunk in chunks) == b"0123456789AB"
    assert chunks[-1][0] - start >= 12 * 10 / 1200 - 0.001  # never earlier than the wire allows
    assert len(chunks) > 1  # it trickles in, as from a UART


# --- configuration ----------------------------------------------------------------------------


def config_issues(options: dict[str, Any]) -> str:
    document = {
        "store": {"id": "s1"},
        "devices": [{"name": "bus", "driver": "modbus.rtu", "options": options}],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(document, registry=DriverRegistry.from_entry_points(), environ={})
    return str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"devices": [channel(1)]}, "devices.0.options.port: Field required"),
        (
            {"port": "/dev/ttyUSB0", "devices": [channel(1, "acme-9000")]},
            (
                "unknown model 'acme-9000'; built-in and configured models: dini-argeo-dgt, "
                "generic-float32"
            ),
        ),
        (
            {
                "port": "/dev/ttyUSB0",
                "models": {"mine": {"net_address": 0}},
                "devices": [channel(1, "mine")],
            },
            "devices.0.options.models.mine.data_type: Field required",
        ),
        (
            {"port": "/dev/ttyUSB0", "devices": [channel(1, word_order="middle")]},
            "word_order: Input should be 'big' or 'little'",
        ),
        (
            {
                "port": "/dev/ttyUSB0",
                "models": {"mine": {"data_type": "int16"}},
                "devices": [channel(1, "mine")],
            },
            "needs gross_address or net_address",
        ),
        (
            {"port": "/dev/ttyUSB0", "devices": [channel(1), channel(1)]},
            "duplicate channel name 'shelf-1'",
        ),
        ({"port": "/dev/ttyUSB0", "devices": []}, "devices.0.options.devices: List should have"),
        (
            {"port": "/dev/ttyUSB0", "devices": [channel(1) | {"unit_id": 300}]},
            "unit_id: Input should be less than or equal to 247",
        ),
    ],
)
def test_configuration_errors_are_clear(options: dict[str, Any], message: str) -> None:
    assert message in config_issues(options)


async def test_a_missing_port_device_is_unavailable_not_a_config_error() -> None:
    driver = make("modbus.rtu", "bus", port="/dev/does-not-exist", devices=[channel(1)])
    with pytest.raises(DriverUnavailableError, match="does not exist"):
        await driver.open()


async def test_the_supervisor_status_carries_the_bus_detail() -> None:
    seen: list[WeightSample] = []
    config = SupervisorConfig(backoff_initial_s=0.05, backoff_max_s=0.2, stop_timeout_s=1)
    supervisor = Supervisor(
        clock=SystemClock(),
        config=config,
        sink=lambda _n, r: seen.append(r),  # type: ignore[arg-type]
    )
    async with ModbusBusSimulator([dgt(1, 5.0)], baudrate=FAST) as bus:
        options = {
            "port": bus.url,
            "baudrate": FAST,
            "timeout_s": patience(1.0),
            "failures_before_backoff": 1,
            "devices": [channel(1), channel(2, timeout_s=0.05)],
        }
        device = ResolvedDevice(
            DeviceConfig(name="bus", driver="modbus.rtu"),
            plugin("modbus.rtu"),
            plugin("modbus.rtu").options_model.model_validate(options),
        )
        supervisor.apply([device])
        runner = asyncio.create_task(supervisor.run())
        try:
            status = await until(
                lambda: (
                    "unit 2 (shelf-2): no reply" in ((s := supervisor.statuses()[0]).detail or "")
                    and s
                )
            )
            assert status.health is DriverHealth.RUNNING  # one dead unit does not fail the bus
            assert status.as_dict()["detail"] == status.detail
        finally:
            await supervisor.shutdown(2.0)
            await runner


def test_the_commented_scale_examples_in_the_example_config_validate() -> None:
    import tomllib

    text = (Path(__file__).resolve().parents[2] / "config" / "gateway.example.toml").read_text()
    start = text.index('# [[devices]]\n# name = "shelf-bus-1"')
    lines = itertools.takewhile(lambda line: line.startswith("#"), text[start:].splitlines())
    block = "\n".join(line.removeprefix("#").removeprefix(" ") for line in lines)
    document = tomllib.loads('[store]\nid = "s1"\n' + block)
    _settings, devices = parse_config(
        document, registry=DriverRegistry.from_entry_points(), environ={}
    )
    assert [device.config.driver for device in devices] == [
        "modbus.rtu",
        "ascii.scale",
        "toledo.continuous",
        "ble.remote",
        "ble.bluez",
    ]
