"""The kit's conformance suite against every driver storegw ships, each with the device it
talks to: the simulated drivers as they are, ble.remote against a real mosquitto and a simulated
receiver node, modbus.rtu against the simulated Modbus bus over a
socket, ascii.scale against simulated scale heads on a pty and a socket. (The kit's worked
example, toledo.continuous, runs it in its own test module, as a third party's would.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from devices.kit.conformance import DriverConformance, DriverRig, SilenceVerdict, check_silence
from devices.scale.modbus_protocol import BUILTIN_MODELS
from devices.simulated.ascii_device import AsciiScaleSimulator
from devices.simulated.bluez import FakeBlueZ
from devices.simulated.modbus_device import ModbusBusSimulator, ModbusFault, SimulatedTransmitter
from devices.simulated.oepl_ap import FakeAccessPoint
from devices.simulated.receiver_node import ReceiverNode
from devices.simulated.timeline import WeightTimeline
from tests.devices.harness import REGISTRY, plugin
from tests.support.bleak_loop import release_bleak
from tests.support.broker import Broker
from tests.support.dbus import PrivateBus
from tests.waiting import patience

Rigs = Callable[[Path], contextlib.AbstractAsyncContextManager[DriverRig]]
LIMIT = patience(1.5)  # the silence limit the checks apply
FAST = 460_800


async def quiet_simulation(driver: Any) -> None:
    driver.faults.go_quiet()


def simulated(name: str, **options: Any) -> Rigs:
    @contextlib.asynccontextmanager
    async def rig(_tmp: Path) -> AsyncIterator[DriverRig]:
        yield DriverRig(
            plugin=plugin(name), options=options, go_quiet=quiet_simulation, silence_limit_s=LIMIT
        )

    return rig


@contextlib.asynccontextmanager
async def modbus_rig(_tmp: Path) -> AsyncIterator[DriverRig]:
    unit = SimulatedTransmitter(
        unit_id=7,
        register_map=BUILTIN_MODELS["dini-argeo-dgt"],
        timeline=WeightTimeline.constant(1234.0),
    )

    async def go_quiet(_driver: Any) -> None:
        unit.inject(ModbusFault.SILENT, times=None)

    async def garble(_driver: Any) -> None:
        for fault in (ModbusFault.CRC, ModbusFault.TRUNCATED, ModbusFault.WRONG_UNIT):
            unit.inject(fault)
        bus.line.write_unpaced(bytes(range(256)))

    async with ModbusBusSimulator([unit], line="socket", baudrate=1_000_000) as bus:
        yield DriverRig(
            plugin=plugin("modbus.rtu"),
            options={
                "port": bus.url,
                "baudrate": 1_000_000,
                "poll_rate_hz": 100,
                "timeout_s": LIMIT / 4,
                "turnaround_guard_s": 0.005,
                "devices": [{"channel": "shelf-7", "unit_id": 7, "model": "dini-argeo-dgt"}],
            },
            go_quiet=go_quiet,
            garble=garble,
            silence_limit_s=LIMIT,
        )


@contextlib.asynccontextmanager
async def oepl_rig(_tmp: Path) -> AsyncIterator[DriverRig]:
    async def go_quiet(_driver: Any) -> None:
        ap.mute = True

    async def garble(_driver: Any) -> None:
        ap.garbage = True  # junk frames among the valid ones, junk HTTP answers

    async with FakeAccessPoint(tag_count=2, checkin_s=0.05, sys_s=0.05) as ap:
        yield DriverRig(
            plugin=plugin("esl.oepl"),
            options={"url": ap.url, "request_timeout_s": LIMIT / 2},
            go_quiet=go_quiet,
            garble=garble,
            silence_limit_s=LIMIT,
        )


def ascii_rig(protocol: str, line: str) -> Rigs:
    @contextlib.asynccontextmanager
    async def rig(tmp_path: Path) -> AsyncIterator[DriverRig]:
        scale = AsciiScaleSimulator(
            protocol,  # type: ignore[arg-type]
            line=line,  # type: ignore[arg-type]
            link=tmp_path / "ttyScale",
            baudrate=FAST,
            stream_rate_hz=100,
            timeline=WeightTimeline.constant(321.5),
        )

        async def go_quiet(_driver: Any) -> None:
            scale.mute = True

        async def garble(_driver: Any) -> None:
            scale.inject_noise(b"\x00\xff\xfe\x80 binary noise \x81\r\n")
            scale.inject_noise(b"X" * 300)  # a run far beyond max_line_bytes
            await scale.send_line("ST,+00abc.de  g")
            await scale.send_line("S S      12.5 furlongs")
            await scale.send_line("\x7f\x7f hello")

        async with scale:
            yield DriverRig(
                plugin=plugin("ascii.scale"),
                options={
                    "port": scale.url,
                    "protocol": protocol,
                    "channel": "head",
                    "baudrate": FAST,
                    "poll_interval_s": 0.005,
                    "response_timeout_s": LIMIT / 4,
                    "no_data_timeout_s": LIMIT / 2,
                },
                go_quiet=go_quiet,
                garble=garble,
                silence_limit_s=LIMIT,
            )

    return rig


IBEACON_AD = bytes.fromhex("0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5")


@contextlib.asynccontextmanager
async def remote_rig(tmp_path: Path) -> AsyncIterator[DriverRig]:
    """ble.remote against a real mosquitto and a receiver node reporting every 20 ms."""
    broker = Broker(tmp_path)
    broker.start()
    node = ReceiverNode(broker.host, broker.port, "node-a")
    muted, stop = threading.Event(), threading.Event()

    def publish() -> None:
        while not stop.wait(0.02):
            if not muted.is_set():
                node.report([("C3:11:22:33:44:55", -60, IBEACON_AD)])

    publisher = threading.Thread(target=publish, name="node-a-publisher")
    publisher.start()

    async def go_quiet(_driver: Any) -> None:
        muted.set()

    async def garble(_driver: Any) -> None:
        for payload in (b"\x00\xff", b"{}", b"[" * 10_000, b'{"v":1,"node":"node-a","adverts":7}'):
            node.publish("storegw/receivers/node-a/adverts", payload)

    try:
        yield DriverRig(
            plugin=plugin("ble.remote"),
            options={"host": broker.host, "port": broker.port, "node_silence_s": 1},
            go_quiet=go_quiet,
            garble=garble,
            silence_limit_s=LIMIT,
        )
    finally:
        stop.set()
        publisher.join()
        node.close()
        broker.stop()


@contextlib.asynccontextmanager
async def bluez_rig(tmp_path: Path) -> AsyncIterator[DriverRig]:
    """ble.bluez through bleak's real BlueZ backend, a fake BlueZ on a private dbus-daemon and
    a beacon advertising every 20 ms."""
    bus = PrivateBus(tmp_path).start()
    previous = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
    fake = await FakeBlueZ(bus.address).start()
    muted = asyncio.Event()

    async def advertise() -> None:
        while True:
            if not muted.is_set():
                fake.advertise("hci0", "C3:11:22:33:44:55", -60, manufacturer={0x004C: b"x"})
            await asyncio.sleep(0.02)

    advertiser = asyncio.create_task(advertise(), name="fake-beacon")
    # bleak's BlueZ manager (one D-Bus connection and watcher per event loop, for the
    # process's life) is infrastructure the daemon starts once: not a driver's leak.
    from bleak.backends.bluezdbus.manager import get_global_bluez_manager

    await get_global_bluez_manager()

    async def go_quiet(_driver: Any) -> None:
        muted.set()

    try:
        yield DriverRig(
            plugin=plugin("ble.bluez"),
            options={"retry_initial_s": 0.01, "heartbeat_s": 30, "silence_restart_s": 600},
            go_quiet=go_quiet,
            silence_limit_s=LIMIT,
        )
    finally:
        advertiser.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await advertiser
        await release_bleak()
        fake.stop()
        bus.stop()
        if previous is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = previous


RIGS: dict[str, Rigs] = {
    "simulated.scale": simulated(
        "simulated.scale",
        sample_rate_hz=100,
        channels=[{"channel": "slot-1", "unit_grams": 250.0}],
    ),
    "simulated.beacon": simulated(
        "simulated.beacon",
        heartbeat_s=0.05,
        carts=1,
        cart_interval_s=0.02,
        phones=0,
        fixed_beacons=[{"id": "aisle", "interval_s": 0.02}],
    ),
    "simulated.esl": simulated(
        "simulated.esl", label_count=2, checkin_interval_s=0.05, heartbeat_s=0.05
    ),
    "modbus.rtu": modbus_rig,
    "esl.oepl": oepl_rig,
    "ble.remote": remote_rig,
    "ble.bluez": bluez_rig,
    "ascii.scale (ad-stream, pty)": ascii_rig("ad-stream", "pty"),
    "ascii.scale (mt-sics, socket)": ascii_rig("mt-sics", "socket"),
}


class TestEveryDriver(DriverConformance):
    @pytest.fixture(params=sorted(RIGS))
    async def conformance_rig(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> AsyncIterator[DriverRig]:
        async with RIGS[request.param](tmp_path) as rig:
            yield rig


def test_every_published_driver_runs_the_suite() -> None:
    # toledo.continuous: tests/devices/test_toledo_driver.py::TestToledoConformance
    covered = {name.split(" ")[0] for name in RIGS} | {"toledo.continuous"}
    assert set(REGISTRY.names()) <= covered


@pytest.mark.parametrize(
    ("name", "verdict"),
    [
        ("simulated.scale", SilenceVerdict.SILENT),
        ("simulated.esl", SilenceVerdict.SILENT),
        ("ble.remote", SilenceVerdict.SILENT),  # heartbeats every 5 s: the watchdog acts
        ("ble.bluez", SilenceVerdict.SILENT),  # heartbeats far apart here: the watchdog acts
        ("modbus.rtu", SilenceVerdict.REPORTED),  # ERROR samples for the unit not answering
        ("esl.oepl", SilenceVerdict.SILENT),  # no frames, no heartbeats: the watchdog's case
        ("ascii.scale (ad-stream, pty)", SilenceVerdict.RAISED),  # no_data_timeout_s
        ("ascii.scale (mt-sics, socket)", SilenceVerdict.REPORTED),  # a request unanswered
    ],
)
async def test_how_each_driver_tells_its_device_went_quiet(
    name: str, verdict: SilenceVerdict, tmp_path: Path
) -> None:
    async with RIGS[name](tmp_path) as rig:
        assert await check_silence(rig) is verdict
