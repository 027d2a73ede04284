"""Supervisor: health states, restarts with backoff, silence watchdog, isolation, apply()."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from gateway.clock import SystemClock
from gateway.config import DeviceConfig, ResolvedDevice, SupervisorConfig
from gateway.drivers.contracts import (
    DeviceFamily,
    DriverContext,
    DriverPlugin,
    Heartbeat,
    Reading,
    ScaleStatus,
    WeightSample,
)
from gateway.drivers.supervisor import DriverHealth, Supervisor
from gateway.errors import DriverConfigError, DriverUnavailableError

CONFIG = SupervisorConfig(
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    start_timeout_s=0.5,
    stop_timeout_s=0.2,
    healthy_after_s=60,
)


class FakeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    behaviour: str = "ok"  # ok | fail_open | config_error | crash | hang | hang_open | end
    fail_times: int = 0
    interval_s: float = 0.01
    hang_close: bool = False
    rate: int = 0  # only to make configs differ


OPEN_CALLS: dict[str, int] = {}


class FakeDriver:
    """A small working driver whose misbehaviour is chosen by its options."""

    def __init__(self, context: DriverContext, options: FakeOptions) -> None:
        self.context = context
        self.options = options
        self.closed = False

    async def open(self) -> None:
        calls = OPEN_CALLS.get(self.context.name, 0) + 1
        OPEN_CALLS[self.context.name] = calls
        match self.options.behaviour:
            case "config_error":
                raise DriverConfigError("no such port", driver=self.context.name)
            case "fail_open" if calls <= self.options.fail_times:
                raise DriverUnavailableError("port busy", driver=self.context.name)
            case "hang_open":
                await asyncio.Event().wait()

    async def readings(self) -> AsyncIterator[Reading]:
        clock = self.context.clock
        count = 0
        while True:
            await asyncio.sleep(self.options.interval_s)
            count += 1
            if self.options.behaviour == "crash" and count > 3:
                raise RuntimeError("driver bug")
            if self.options.behaviour == "hang" and count > 3:
                await asyncio.Event().wait()
            if self.options.behaviour == "end" and count > 3:
                return
            if count % 5 == 0:
                yield Heartbeat(clock.monotonic())
                continue
            yield WeightSample(
                "ch",
                float(count),
                float(count),
                True,
                ScaleStatus.OK,
                clock.monotonic(),
                clock.utc_now(),
            )

    async def close(self) -> None:
        if self.options.hang_close:
            await asyncio.Event().wait()
        self.closed = True


PLUGIN = DriverPlugin(
    family=DeviceFamily.SCALE, options_model=FakeOptions, factory=FakeDriver, description="fake"
)


def device(name: str, silence: float | None = None, **options: Any) -> ResolvedDevice:
    config = DeviceConfig(name=name, driver="fake", options=options, silence_limit_s=silence)
    return ResolvedDevice(config, PLUGIN, FakeOptions(**options))


class Harness:
    def __init__(self) -> None:
        self.readings: dict[str, int] = {}
        self.supervisor = Supervisor(clock=SystemClock(), config=CONFIG, sink=self.sink)

    def sink(self, name: str, reading: Reading) -> None:
        assert not isinstance(reading, Heartbeat)
        self.readings[name] = self.readings.get(name, 0) + 1

    def status(self, name: str) -> Any:
        return next(s for s in self.supervisor.statuses() if s.name == name)

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; statuses: {self.supervisor.statuses()}")
            await asyncio.sleep(0.01)


async def supervised(
    devices: list[ResolvedDevice], body: Callable[[Harness], Awaitable[None]]
) -> Harness:
    OPEN_CALLS.clear()
    harness = Harness()
    harness.supervisor.apply(devices)
    async with asyncio.TaskGroup() as group:
        group.create_task(harness.supervisor.run(), name="supervisor")
        try:
            await body(harness)
        finally:
            await harness.supervisor.shutdown(2.0)
    return harness


async def test_readings_reach_the_sink_and_heartbeats_do_not() -> None:
    async def body(h: Harness) -> None:
        await h.until(lambda: h.readings.get("a", 0) >= 10)
        status = h.status("a")
        assert status.health is DriverHealth.RUNNING
        assert status.readings >= 10
        assert status.last_reading_at is not None
        assert status.restarts == 0

    await supervised([device("a")], body)


async def test_open_failure_degrades_then_recovers() -> None:
    async def body(h: Harness) -> None:
        await h.until(lambda: h.readings.get("a", 0) > 0)
        status = h.status("a")
        assert status.health is DriverHealth.RUNNING
        assert status.restarts == 3
        assert status.last_error is not None
        assert "port busy" in status.last_error

    await supervised([device("a", behaviour="fail_open", fail_times=3)], body)


async def test_config_error_fails_without_retry() -> None:
    async def body(h: Harness) -> None:
        await h.until(lambda: h.status("a").health is DriverHealth.FAILED)
        await asyncio.sleep(0.2)
        assert OPEN_CALLS["a"] == 1
        assert "no such port" in (h.status("a").last_error or "")
        assert h.supervisor.driver("a") is None

    await supervised([device("a", behaviour="config_error")], body)


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [("crash", "RuntimeError: driver bug"), ("end", "stopped yielding"), ("hang", "silent")],
)
async def test_failing_driver_restarts_while_the_healthy_one_keeps_going(
    behaviour: str, message: str
) -> None:
    async def body(h: Harness) -> None:
        await h.until(lambda: h.status("bad").restarts >= 2)
        before = h.readings.get("good", 0)
        await h.until(lambda: h.readings.get("good", 0) > before + 5)
        assert message in (h.status("bad").last_error or "")
        assert h.status("good").restarts == 0
        assert h.status("good").health is DriverHealth.RUNNING

    await supervised([device("good"), device("bad", silence=0.2, behaviour=behaviour)], body)


async def test_hanging_open_times_out() -> None:
    async def body(h: Harness) -> None:
        await h.until(lambda: h.status("a").restarts >= 1)
        assert "did not finish within" in (h.status("a").last_error or "")

    await supervised([device("a", behaviour="hang_open")], body)


async def test_apply_restarts_only_changed_instances() -> None:
    async def body(h: Harness) -> None:
        await h.until(lambda: all(h.readings.get(n, 0) > 3 for n in ("keep", "change", "drop")))
        keep_driver = h.supervisor.driver("keep")
        change_driver = h.supervisor.driver("change")
        keep_since = h.status("keep").since
        applied = h.supervisor.apply([device("keep"), device("change", rate=2), device("new")])
        assert applied.restarted == ("change",)
        assert applied.stopped == ("drop",)
        assert applied.started == ("new",)
        assert applied.unchanged == ("keep",)
        await h.until(lambda: h.readings.get("new", 0) > 3)
        await h.until(lambda: h.supervisor.driver("change") not in (None, change_driver))
        assert h.supervisor.driver("keep") is keep_driver
        assert h.status("keep").since == keep_since
        assert "drop" not in {s.name for s in h.supervisor.statuses()}

    await supervised([device("keep"), device("change"), device("drop")], body)


async def test_apply_after_config_error_retries_with_new_config() -> None:
    async def body(h: Harness) -> None:
        await h.until(lambda: h.status("a").health is DriverHealth.FAILED)
        h.supervisor.apply([device("a")])
        await h.until(lambda: h.status("a").health is DriverHealth.RUNNING)

    await supervised([device("a", behaviour="config_error")], body)


async def test_shutdown_within_budget_even_when_close_hangs() -> None:
    OPEN_CALLS.clear()
    harness = Harness()
    harness.supervisor.apply([device("a", hang_close=True), device("b")])
    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        group.create_task(harness.supervisor.run())
        await harness.until(lambda: harness.readings.get("a", 0) > 0)
        started = time.monotonic()
        await harness.supervisor.shutdown(2.0)
    assert time.monotonic() - started < 2.0
    assert {s.health for s in harness.supervisor.statuses()} == {DriverHealth.STOPPED}


async def test_progress_advances() -> None:
    async def body(h: Harness) -> None:
        first = h.supervisor.progress
        await h.until(lambda: h.supervisor.progress > first, timeout=3)

    await supervised([], body)
