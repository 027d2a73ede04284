"""Supervisor: health states, restarts with backoff, silence watchdog, isolation, apply(),
shutdown budgets and cancellation. The fake driver's misbehaviour is chosen by its options."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from gateway.clock import Clock, FakeClock, SystemClock
from gateway.drivers.config import DeviceConfig, ResolvedDevice, SupervisorConfig
from gateway.drivers.contracts import (
    DeviceFamily,
    Driver,
    DriverContext,
    DriverPlugin,
    Heartbeat,
    Reading,
    ScaleStatus,
    WeightSample,
)
from gateway.drivers.supervisor import AppliedChanges, DriverHealth, DriverStatus, Supervisor
from gateway.errors import DriverConfigError, DriverUnavailableError
from tests.waiting import patience

CONFIG = SupervisorConfig(
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    start_timeout_s=0.3,  # only an open() that hangs reaches it
    # A close() that is merely slow (0.1 s) must finish on a busy machine too; the tests of a
    # close() that hangs set a short one of their own.
    stop_timeout_s=patience(2.0),
    healthy_after_s=60,
)
HANGING_CLOSE = CONFIG.model_copy(update={"stop_timeout_s": 0.2})
LOGGER = "gateway.drivers.supervisor"


class Script(BaseModel):
    """Options of the fake driver: what it does and when it misbehaves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    open: Literal["ok", "fail", "config_error", "hang"] = "ok"
    fail_open_times: int = 0
    after: int = 3  # readings yielded before ``then`` happens
    then: Literal["continue", "crash", "hang", "end", "config_error", "swallow_cancel"] = "continue"
    heartbeats_only: bool = False
    interval_s: float = 0.01
    close: Literal["ok", "hang", "raise", "slow"] = "ok"
    revision: int = 0  # only to make configurations differ


class Lab:
    """What the fake drivers did, shared by every driver object of one test."""

    def __init__(self) -> None:
        self.opens: Counter[str] = Counter()
        self.yields: Counter[str] = Counter()
        self.drivers: dict[str, list[FakeDriver]] = {}
        self.events: list[tuple[str, str, int]] = []  # (instance, event, driver serial)
        self.crash_now: set[str] = set()


class FakeDriver:
    """A small working driver following the contract, misbehaving as its Script says."""

    def __init__(self, context: DriverContext, options: Script, lab: Lab) -> None:
        self.name = context.name
        self.clock = context.clock
        self.memory = context.memory
        self.options = options
        self.lab = lab
        self.serial = len(lab.events)
        self.closed = False
        lab.drivers.setdefault(self.name, []).append(self)

    async def open(self) -> None:
        self.lab.opens[self.name] += 1
        self.lab.events.append((self.name, "open", self.serial))
        match self.options.open:
            case "config_error":
                raise DriverConfigError("no such port", driver=self.name)
            case "fail" if self.lab.opens[self.name] <= self.options.fail_open_times:
                raise DriverUnavailableError("port busy", driver=self.name)
            case "hang":
                await asyncio.Event().wait()

    async def readings(self) -> AsyncIterator[Reading]:
        count = 0
        while True:
            try:
                await asyncio.sleep(self.options.interval_s)
            except asyncio.CancelledError as exc:
                if self.options.then == "swallow_cancel":  # a driver hiding our cancellation
                    raise DriverUnavailableError("link lost", driver=self.name) from exc
                raise
            if self.name in self.lab.crash_now:
                self.lab.crash_now.discard(self.name)
                raise RuntimeError("asked to crash")
            count += 1
            if count > self.options.after:
                match self.options.then:
                    case "crash":
                        raise RuntimeError("driver bug")
                    case "hang":
                        await asyncio.Event().wait()
                    case "end":
                        return
                    case "config_error":
                        raise DriverConfigError("device reports another model", driver=self.name)
            self.lab.yields[self.name] += 1
            if self.options.heartbeats_only or count % 5 == 0:
                yield Heartbeat(self.clock.monotonic())
            else:
                yield WeightSample(
                    channel="ch",
                    gross_grams=float(count),
                    net_grams=float(count),
                    stable=True,
                    status=ScaleStatus.OK,
                    monotonic=self.clock.monotonic(),
                    observed_at=self.clock.utc_now(),
                )

    async def close(self) -> None:
        self.lab.events.append((self.name, "close", self.serial))
        match self.options.close:
            case "hang":
                await asyncio.Event().wait()
            case "raise":
                raise OSError("port vanished while closing")
            case "slow":
                await asyncio.sleep(0.1)
        self.closed = True
        self.lab.events.append((self.name, "closed", self.serial))


class CeilingRandom(random.Random):
    """Jitter that always picks the top of the range, so backoff delays are predictable."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Harness:
    def __init__(
        self,
        config: SupervisorConfig = CONFIG,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        sink_fails_for: Collection[str] = (),
    ) -> None:
        self.lab = Lab()
        self.sunk: Counter[str] = Counter()
        self.sink_fails_for = sink_fails_for
        self.plugin = DriverPlugin(
            family=DeviceFamily.SCALE,
            options_model=Script,
            factory=lambda context, options: FakeDriver(context, options, self.lab),
        )
        self.supervisor = Supervisor(
            clock=clock or SystemClock(), config=config, sink=self.sink, rng=rng
        )

    def device(self, name: str, silence: float | None = None, **script: object) -> ResolvedDevice:
        config = DeviceConfig(name=name, driver="fake", options=script, silence_limit_s=silence)
        return ResolvedDevice(config, self.plugin, Script.model_validate(script))

    def sink(self, name: str, reading: Reading) -> None:
        assert not isinstance(reading, Heartbeat)
        if name in self.sink_fails_for:
            raise RuntimeError("hub exploded")
        self.sunk[name] += 1

    def status(self, name: str) -> DriverStatus:
        return next(s for s in self.supervisor.statuses() if s.name == name)

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + patience(timeout)
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; statuses: {self.supervisor.statuses()}")
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(h: Harness, budget_s: float = 5.0) -> AsyncIterator[Harness]:
    """Run the supervisor for the body, then shut it down and wait for run() to return."""
    async with asyncio.TaskGroup() as group:
        group.create_task(h.supervisor.run(), name="supervisor")
        try:
            yield h
        finally:
            await h.supervisor.shutdown(budget_s)


def live_tasks(name: str) -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == name]


def messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == level and text in r.getMessage()
    ]


async def test_readings_reach_the_sink_and_heartbeats_do_not() -> None:
    h = Harness()
    h.supervisor.apply([h.device("a")])
    assert h.status("a").health is DriverHealth.STARTING  # queued until run()
    async with running(h):
        await h.until(lambda: h.sunk["a"] >= 10)
        status = h.status("a")
        assert status.health is DriverHealth.RUNNING
        assert status.readings >= 10
        assert status.last_reading_at is not None
        assert status.restarts == 0
        assert status.family is DeviceFamily.SCALE
        assert status.driver == "fake"
        driver = h.supervisor.driver("a")
        assert isinstance(driver, FakeDriver)
        assert isinstance(driver, Driver)
        assert h.supervisor.driver("unknown") is None
        wire = json.loads(json.dumps(status.as_dict()))
        assert wire["health"] == "running"
        assert wire["family"] == "scale"
        assert wire["since"].endswith("+00:00")
        assert wire["last_error"] is None
        assert wire["next_retry_in_s"] is None
    assert h.status("a").health is DriverHealth.STOPPED
    assert h.lab.drivers["a"][0].closed


async def test_open_failure_degrades_once_then_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    h = Harness()
    h.supervisor.apply([h.device("a", open="fail", fail_open_times=3)])
    async with running(h):
        await h.until(lambda: h.sunk["a"] > 0)
        status = h.status("a")
        assert status.health is DriverHealth.RUNNING
        assert status.restarts == 3
        assert "port busy" in (status.last_error or "")
        assert status.last_error_at is not None
    # One line going degraded and one recovering, not one per retry.
    assert len(messages(caplog, logging.WARNING, "degraded")) == 1
    assert len(messages(caplog, logging.INFO, "recovered")) == 1
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_degraded_status_shows_the_pending_retry() -> None:
    slow_retry = CONFIG.model_copy(update={"backoff_initial_s": 30.0, "backoff_max_s": 60.0})
    h = Harness(slow_retry, rng=CeilingRandom())
    h.supervisor.apply([h.device("a", open="fail", fail_open_times=1)])
    async with running(h):  # shutdown must interrupt the 30 s backoff
        await h.until(lambda: h.status("a").next_retry_in_s is not None)
        status = h.status("a")
        assert status.health is DriverHealth.DEGRADED
        assert 0 < (status.next_retry_in_s or 0) <= 30.0
        assert h.supervisor.driver("a") is None
        assert h.status("a").as_dict()["next_retry_in_s"] is not None
    assert h.lab.opens["a"] == 1


@pytest.mark.parametrize(
    "script",
    [{"open": "config_error"}, {"then": "config_error"}],
    ids=["at-open", "while-running"],
)
async def test_config_error_fails_without_retry(
    script: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness()
    h.supervisor.apply([h.device("a", **script)])
    async with running(h):
        # Failed, and its supervision has ended: no retry can come any more.
        await h.until(
            lambda: h.status("a").health is DriverHealth.FAILED and not live_tasks("driver[a]")
        )
        assert h.lab.opens["a"] == 1
        assert h.status("a").health is DriverHealth.FAILED
        assert h.status("a").restarts == 0
        assert h.supervisor.driver("a") is None
        assert h.lab.drivers["a"][0].closed
    assert len(messages(caplog, logging.ERROR, "not retrying")) == 1


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ({"then": "crash"}, "RuntimeError: driver bug"),
        ({"then": "crash", "close": "raise"}, "RuntimeError: driver bug"),
        ({"then": "end"}, "stopped yielding"),
        ({"then": "hang"}, "silent for 0.2 s"),
        ({"open": "hang"}, "open() did not finish within 0.3 s"),
    ],
    ids=["crash", "crash-and-close-raises", "iterator-ends", "silent", "open-hangs"],
)
async def test_a_failing_driver_restarts_while_the_healthy_one_keeps_delivering(
    script: dict[str, str], message: str
) -> None:
    h = Harness()
    h.supervisor.apply([h.device("good"), h.device("bad", silence=0.2, **script)])
    async with running(h):
        await h.until(lambda: h.status("bad").restarts >= 2)
        before = h.sunk["good"]
        await h.until(lambda: h.sunk["good"] > before + 5)
        bad = h.status("bad")
        assert message in (bad.last_error or "")
        assert bad.health is DriverHealth.DEGRADED or bad.health is DriverHealth.RUNNING
        good = h.status("good")
        assert good.restarts == 0
        assert good.health is DriverHealth.RUNNING
        assert len(h.lab.drivers["good"]) == 1
        assert len(h.lab.drivers["bad"]) >= 3  # a fresh driver object per attempt
        # close() is called after every attempt, even a failed or timed-out open().
        closes = [event for name, event, _ in h.lab.events if name == "bad" and event == "close"]
        assert len(closes) >= 2


async def test_an_unexpected_exception_is_logged_with_traceback_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    h.supervisor.apply([h.device("a", then="crash")])
    async with running(h):
        await h.until(lambda: h.status("a").restarts >= 4)
    bugs = [r for r in caplog.records if "raised unexpectedly" in r.getMessage()]
    assert len(bugs) == 1
    assert bugs[0].exc_info is not None


async def test_heartbeats_keep_a_quiet_driver_from_being_restarted() -> None:
    h = Harness()
    # A heartbeat every 10 ms against a limit of 1 s: only a stall of a whole second (not a
    # busy machine) could look like silence.
    h.supervisor.apply([h.device("a", silence=1.0, heartbeats_only=True)])
    async with running(h):
        await h.until(lambda: h.lab.yields["a"] >= 150)  # well past the silence limit
        status = h.status("a")
        assert status.restarts == 0
        assert status.readings == 0
        assert status.health is DriverHealth.RUNNING
        assert h.sunk["a"] == 0


async def test_running_healthy_for_a_while_resets_the_backoff() -> None:
    clock = FakeClock()
    config = CONFIG.model_copy(
        update={"backoff_initial_s": 0.3, "backoff_max_s": 5.0, "healthy_after_s": 10.0}
    )
    h = Harness(config, clock=clock, rng=CeilingRandom())
    h.supervisor.apply([h.device("a", open="fail", fail_open_times=1)])

    async def next_retry_after_failure(restarts: int) -> float:
        await h.until(
            lambda: h.status("a").restarts == restarts and h.status("a").next_retry_in_s is not None
        )
        delay = h.status("a").next_retry_in_s
        assert delay is not None
        await h.until(lambda: h.status("a").health is DriverHealth.RUNNING)
        return delay

    async with running(h):
        assert await next_retry_after_failure(1) == pytest.approx(0.3)
        h.lab.crash_now.add("a")  # failing again right away: the backoff grows
        assert await next_retry_after_failure(2) == pytest.approx(0.6)
        clock.advance(config.healthy_after_s)
        h.lab.crash_now.add("a")  # failing after a healthy run: back to the initial delay
        assert await next_retry_after_failure(3) == pytest.approx(0.3)


async def test_a_failing_sink_is_logged_once_and_never_stops_the_driver(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(sink_fails_for={"a"})
    h.supervisor.apply([h.device("a"), h.device("b")])
    async with running(h):
        await h.until(lambda: h.status("a").readings >= 10 and h.sunk["b"] >= 10)
        assert h.status("a").restarts == 0
        assert h.status("a").health is DriverHealth.RUNNING
    failures = messages(caplog, logging.ERROR, "reading sink failed")
    assert failures == ["reading sink failed for driver a"]


async def test_apply_restarts_only_changed_instances() -> None:
    h = Harness()
    h.supervisor.apply([h.device("keep"), h.device("change", close="slow"), h.device("drop")])
    async with running(h):
        await h.until(lambda: all(h.sunk[n] > 3 for n in ("keep", "change", "drop")))
        (keep_task,) = live_tasks("driver[keep]")
        keep_driver = h.supervisor.driver("keep")
        old_change = h.supervisor.driver("change")
        dropped = h.supervisor.driver("drop")
        assert isinstance(old_change, FakeDriver)
        assert isinstance(dropped, FakeDriver)

        applied = h.supervisor.apply(
            [h.device("keep"), h.device("change", close="slow", revision=2), h.device("new")]
        )

        assert applied == AppliedChanges(
            started=("new",), restarted=("change",), stopped=("drop",), unchanged=("keep",)
        )
        assert [s.name for s in h.supervisor.statuses()] == ["change", "keep", "new"]
        before = h.sunk["keep"]
        await h.until(lambda: h.sunk["new"] > 3)
        await h.until(lambda: h.supervisor.driver("change") not in (None, old_change))
        await h.until(lambda: h.sunk["keep"] > before + 5)
        assert live_tasks("driver[keep]") == [keep_task]
        assert h.supervisor.driver("keep") is keep_driver
        assert h.status("keep").restarts == 0
        assert len(h.lab.drivers["keep"]) == 1
        assert dropped.closed
        assert old_change.closed
        assert live_tasks("driver[drop]") == []
        # The replacement opened only once the old driver had released the hardware.
        change_events = [
            (event, serial) for name, event, serial in h.lab.events if name == "change"
        ]
        new_serial = h.lab.drivers["change"][1].serial
        assert change_events.index(("closed", old_change.serial)) < change_events.index(
            ("open", new_serial)
        )


async def test_apply_with_a_fixed_config_retries_a_failed_driver() -> None:
    h = Harness()
    h.supervisor.apply([h.device("a", open="config_error")])
    async with running(h):
        await h.until(lambda: h.status("a").health is DriverHealth.FAILED)
        same = h.supervisor.apply([h.device("a", open="config_error")])
        assert same.unchanged == ("a",)
        assert h.status("a").health is DriverHealth.FAILED
        fixed = h.supervisor.apply([h.device("a")])
        assert fixed.restarted == ("a",)
        await h.until(lambda: h.status("a").health is DriverHealth.RUNNING)
        assert h.status("a").last_error is None  # a new configuration starts a clean record


async def test_every_driver_object_of_an_instance_gets_the_instance_memory() -> None:
    h = Harness()
    h.supervisor.apply([h.device("a", after=2, then="crash"), h.device("b")])
    async with running(h):
        await h.until(lambda: len(h.lab.drivers.get("a", [])) >= 3)  # restarted twice
        h.supervisor.apply([h.device("a", revision=1), h.device("b")])  # and reconfigured
        await h.until(lambda: h.lab.drivers["a"][-1].options.revision == 1)
    memories = {id(driver.memory) for driver in h.lab.drivers["a"]}
    assert len(memories) == 1
    assert h.lab.drivers["b"][0].memory is not h.lab.drivers["a"][0].memory


async def test_apply_refuses_duplicate_names() -> None:
    h = Harness()
    with pytest.raises(ValueError, match="duplicate"):
        h.supervisor.apply([h.device("a"), h.device("a", revision=1)])


async def test_shutdown_before_run_starts_nothing() -> None:
    h = Harness()
    h.supervisor.apply([h.device("a")])
    await h.supervisor.shutdown(1.0)
    await h.supervisor.run()  # returns at once
    assert h.lab.opens == Counter()
    assert h.status("a").health is DriverHealth.STOPPED
    with pytest.raises(RuntimeError, match="shut down"):
        h.supervisor.apply([h.device("b")])


async def test_shutdown_stops_within_budget_even_when_close_hangs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(HANGING_CLOSE)
    h.supervisor.apply([h.device("a", close="hang"), h.device("b")])
    async with running(h, budget_s=5.0):
        await h.until(lambda: h.sunk["a"] > 0 and h.sunk["b"] > 0)
        await h.supervisor.shutdown(5.0)
        # shutdown() returned with every driver task finished: close() was bounded.
        assert live_tasks("driver[a]") == []
        assert live_tasks("driver[b]") == []
    assert {s.health for s in h.supervisor.statuses()} == {DriverHealth.STOPPED}
    assert h.lab.drivers["b"][0].closed
    assert messages(caplog, logging.WARNING, "close() took longer than 0.2 s")
    assert not messages(caplog, logging.ERROR, "did not stop")


async def test_a_budget_shorter_than_a_hanging_close_still_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    patient = CONFIG.model_copy(update={"stop_timeout_s": 30.0})
    h = Harness(patient)
    h.supervisor.apply([h.device("a", close="hang")])
    async with running(h, budget_s=0.05):
        await h.until(lambda: h.sunk["a"] > 0)
    assert messages(caplog, logging.ERROR, "did not stop within 0.05 s: driver[a]")
    assert h.status("a").health is DriverHealth.STOPPED


async def test_a_driver_hiding_cancellation_is_still_stopped() -> None:
    h = Harness()
    h.supervisor.apply([h.device("a", then="swallow_cancel", after=1000)])
    async with running(h):
        await h.until(lambda: h.sunk["a"] > 3)
    assert h.lab.opens["a"] == 1  # turned into "link lost", yet never retried
    assert h.status("a").health is DriverHealth.STOPPED
    assert h.lab.drivers["a"][0].closed


async def test_cancelling_run_closes_every_driver_and_propagates() -> None:
    h = Harness()
    h.supervisor.apply([h.device("a"), h.device("b", open="hang")])
    task = asyncio.create_task(h.supervisor.run(), name="supervisor")
    await h.until(lambda: h.sunk["a"] > 0 and h.lab.opens["b"] > 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.lab.drivers["a"][0].closed
    assert h.lab.drivers["b"][0].closed
    assert {s.health for s in h.supervisor.statuses()} == {DriverHealth.STOPPED}


async def test_progress_advances() -> None:
    h = Harness()
    async with running(h):
        first = h.supervisor.progress
        await h.until(lambda: h.supervisor.progress > first, timeout=5)
