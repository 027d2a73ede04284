"""devices.kit.conformance catches what it promises to: a small working driver passes every
check, and each way of breaking the supervisor's expectations fails the check that owns it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from devices.kit.conformance import (
    ConformanceError,
    DriverRig,
    SilenceVerdict,
    check_cancellation,
    check_garbage,
    check_lifecycle,
    check_silence,
)
from devices.kit.plugin import driver_plugin
from gateway.drivers.contracts import (
    Advertisement,
    DeviceFamily,
    DriverContext,
    Heartbeat,
    Reading,
    ScaleStatus,
    WeightSample,
)
from gateway.errors import DriverConfigError, DriverUnavailableError

Flaw = Literal[
    "none",
    "task_on_create",
    "leaks_a_task",
    "leaks_a_thread",
    "swallows_cancellation",
    "close_hangs",
    "wrong_readings",
    "heartbeats_when_quiet",
    "config_error_when_quiet",
    "raises_when_quiet",
    "errors_when_quiet",
    "value_error_on_garbage",
    "key_error_on_bad_channel",
    "stuck_after_garbage",
]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    flaw: Flaw = "none"


class Device:
    """The far end: it talks until it goes quiet; garbage is one bad frame among good ones."""

    def __init__(self) -> None:
        self.quiet = False
        self.garbage = 0


DEVICE = Device()  # replaced per test by the fixture
# What the flawed drivers leave behind, for the fixture to clean up after the check saw it.
_stops: list[threading.Event] = []
_threads: list[threading.Thread] = []
_tasks: list[asyncio.Task[Any]] = []


class FakeScale:
    def __init__(self, context: DriverContext, options: Options) -> None:
        self.clock = context.clock
        self.flaw = options.flaw
        self.device = DEVICE
        if self.flaw == "task_on_create":
            _tasks.append(asyncio.get_running_loop().create_task(asyncio.sleep(0)))

    @property
    def channels(self) -> tuple[str, ...]:
        return ("ch",)

    async def open(self) -> None:
        await asyncio.sleep(0)
        if self.flaw == "leaks_a_thread":
            stop = threading.Event()
            thread = threading.Thread(target=stop.wait, name="forgotten")
            _stops.append(stop)
            _threads.append(thread)
            thread.start()

    async def readings(self) -> AsyncIterator[Reading]:
        if self.flaw == "leaks_a_task":
            _tasks.append(
                asyncio.get_running_loop().create_task(asyncio.sleep(3600), name="forgotten")
            )
        while True:
            try:
                await asyncio.sleep(0.005)
            except asyncio.CancelledError:
                if self.flaw != "swallows_cancellation":
                    raise
            if self.device.garbage:
                self.device.garbage -= 1
                if self.flaw == "value_error_on_garbage":
                    raise ValueError("invalid literal for int()")
                if self.flaw == "stuck_after_garbage":
                    await asyncio.Event().wait()
                continue  # a good driver skips the bad frame
            if self.device.quiet:
                match self.flaw:
                    case "heartbeats_when_quiet":
                        yield Heartbeat(self.clock.monotonic())
                    case "config_error_when_quiet":
                        raise DriverConfigError("the device vanished")
                    case "raises_when_quiet":
                        raise DriverUnavailableError("no answer")
                    case "errors_when_quiet":
                        yield self.sample(ScaleStatus.ERROR)
                    case _:
                        await asyncio.Event().wait()
                continue
            if self.flaw == "wrong_readings":
                yield Advertisement("hci0", "AA:BB:CC:DD:EE:FF", -60, 0.0, self.clock.utc_now())
            else:
                yield self.sample(ScaleStatus.OK)

    def sample(self, status: ScaleStatus) -> WeightSample:
        grams = 100.0 if status is ScaleStatus.OK else None
        return WeightSample(
            "ch", grams, grams, True, status, self.clock.monotonic(), self.clock.utc_now()
        )

    async def zero(self, channel: str) -> None:
        await self._command(channel)

    async def tare(self, channel: str) -> None:
        await self._command(channel)

    async def _command(self, channel: str) -> None:
        if channel != "ch":
            if self.flaw == "key_error_on_bad_channel":
                raise KeyError(channel)
            raise DriverConfigError(f"unknown channel {channel!r}")

    async def close(self) -> None:
        if self.flaw == "close_hangs":
            await asyncio.Event().wait()


PLUGIN = driver_plugin(FakeScale, family=DeviceFamily.SCALE, options=Options, description="t")


@pytest.fixture(autouse=True)
async def _clean_up_what_flaws_left() -> AsyncIterator[None]:
    yield
    for task in _tasks:
        task.cancel()
    for task in _tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for stop in _stops:
        stop.set()
    for thread in _threads:
        thread.join()
    _tasks.clear()
    _stops.clear()
    _threads.clear()


def rig(flaw: Flaw = "none") -> DriverRig:
    global DEVICE  # noqa: PLW0603 - the plugin's factory reaches the rig's device
    DEVICE = Device()

    async def go_quiet(_driver: Any) -> None:
        DEVICE.quiet = True

    async def garble(_driver: Any) -> None:
        DEVICE.garbage += 1

    return DriverRig(
        plugin=PLUGIN,
        options={"flaw": flaw},
        go_quiet=go_quiet,
        garble=garble,
        silence_limit_s=0.3,
        stop_budget_s=0.3,
    )


async def test_a_working_driver_passes_every_check() -> None:
    await check_lifecycle(rig())
    assert await check_cancellation(rig()) == 3  # open(), then one await per reading
    assert await check_silence(rig()) is SilenceVerdict.SILENT
    await check_garbage(rig())


@pytest.mark.parametrize(
    ("flaw", "verdict"),
    [
        ("raises_when_quiet", SilenceVerdict.RAISED),
        ("errors_when_quiet", SilenceVerdict.REPORTED),
    ],
)
async def test_other_ways_of_telling_silence(flaw: Flaw, verdict: SilenceVerdict) -> None:
    assert await check_silence(rig(flaw)) is verdict


@pytest.mark.parametrize(
    ("flaw", "complaint"),
    [
        ("task_on_create", "creating the driver started a task"),
        ("leaks_a_task", r"still running tasks \['forgotten'\]"),
        ("leaks_a_thread", r"threads \['forgotten'\]"),
        ("close_hangs", "close\\(\\) took longer than 0.3 s"),
        ("wrong_readings", "yielded a Advertisement, not a WeightSample"),
    ],
)
async def test_lifecycle_flaws(flaw: Flaw, complaint: str) -> None:
    with pytest.raises(ConformanceError, match=complaint):
        await check_lifecycle(rig(flaw))


async def test_a_swallowed_cancellation_fails() -> None:
    with pytest.raises(ConformanceError, match="swallowed the cancellation at await #"):
        await check_cancellation(rig("swallows_cancellation"))


@pytest.mark.parametrize(
    ("flaw", "complaint"),
    [
        ("heartbeats_when_quiet", "still yielding Heartbeat .* the silence watchdog"),
        ("config_error_when_quiet", "went quiet and it raised DriverConfigError"),
    ],
)
async def test_silence_flaws(flaw: Flaw, complaint: str) -> None:
    with pytest.raises(ConformanceError, match=complaint):
        await check_silence(rig(flaw))


@pytest.mark.parametrize(
    ("flaw", "complaint"),
    [
        ("value_error_on_garbage", "garbage from the device escaped as ValueError"),
        ("key_error_on_bad_channel", "zero\\(\\) of something that does not exist raised KeyError"),
        ("stuck_after_garbage", "no reading after garbage for 0.3 s"),
    ],
)
async def test_garbage_flaws(flaw: Flaw, complaint: str) -> None:
    with pytest.raises(ConformanceError, match=complaint):
        await check_garbage(rig(flaw))
