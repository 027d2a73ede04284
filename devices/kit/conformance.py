"""One conformance suite for every driver: what the supervisor relies on, checked against the
driver's real code path and a device the test controls.

A driver package describes its driver and device as a :class:`DriverRig` and runs the checks,
as plain coroutines or through :class:`DriverConformance` (pytest)::

    class TestAcmeScaleConformance(DriverConformance):
        @pytest.fixture
        async def conformance_rig(self) -> AsyncIterator[DriverRig]:
            async with AcmeSimulator() as device:  # a pty or socket:// far end
                yield DriverRig(
                    plugin=PLUGIN,
                    options={"port": device.url},
                    go_quiet=lambda driver: device.mute(),
                    garble=lambda driver: device.send_noise(),
                )

The checks:

- **lifecycle**: built without I/O, ``open()`` within the start budget, readings of its family
  (stamped, at least one before the silence limit), ``status_detail`` readable, and stopped
  cleanly within the stop budget (``readings()`` closed, ``close()`` never raising) — twice,
  so a second driver object gets the device back;
- **cancellation**: the whole lifecycle is cancelled at each of its awaits in turn (all of
  them, or ``max_points`` spread over them): the cancellation propagates, and no task or
  thread the driver started outlives it;
- **silence**: once the device goes quiet the driver, within the silence limit, raises
  ``DriverUnavailableError``, reports the fault (an ERROR sample) or goes silent itself so the
  supervisor's watchdog fires; it never hides the silence behind readings or heartbeats;
- **garbage**: commands naming what does not exist raise a ``DriverError``, and garbage from
  the device (when the rig has a way to send it) never escapes as another exception type: the
  driver reads on or raises ``DriverUnavailableError``.

A failed check raises :class:`ConformanceError`, an ``AssertionError`` (a test failure, not a
gateway error). Durations are bounds, never expectations: keep the rig's silence limit short.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
)
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from devices.kit._probes import CancelAt, LeakWatch, spread
from gateway.clock import Clock, FakeClock
from gateway.drivers.contracts import (
    Advertisement,
    BeaconReceiver,
    DeviceFamily,
    Driver,
    DriverContext,
    DriverPlugin,
    Heartbeat,
    InstanceMemory,
    LabelContent,
    LabelDriver,
    LabelModel,
    LabelPalette,
    LabelReport,
    Reading,
    ReceiverStatus,
    ReportsDetail,
    ScaleDriver,
    ScaleStatus,
    WeightSample,
)
from gateway.errors import DriverConfigError, DriverError, DriverUnavailableError

__all__ = [
    "ConformanceError",
    "DriverConformance",
    "DriverRig",
    "SilenceVerdict",
    "check_cancellation",
    "check_garbage",
    "check_lifecycle",
    "check_silence",
]

_T = TypeVar("_T")

_FAMILY: dict[DeviceFamily, tuple[type[Driver], type[Reading]]] = {
    DeviceFamily.SCALE: (ScaleDriver, WeightSample),
    DeviceFamily.BEACON: (BeaconReceiver, Advertisement),
    DeviceFamily.ESL: (LabelDriver, LabelReport),
}
_NOWHERE = "\x00conformance: no such thing"


class ConformanceError(AssertionError):
    """A driver does not do what the supervisor relies on; the message says what and why."""


@dataclass(slots=True)
class DriverRig:
    """A driver under test and the device it talks to.

    ``options`` is the ``[devices.options]`` table (validated by the plugin's model).
    ``go_quiet(driver)`` makes the device fall silent (stop sending, stop answering);
    ``garble(driver)`` makes it send garbage among its valid traffic, or is None when the
    device has no input to garble (a simulated driver). Both get the running driver object.
    """

    plugin: DriverPlugin
    options: Mapping[str, Any]
    go_quiet: Callable[[Any], Awaitable[None]]
    garble: Callable[[Any], Awaitable[None]] | None = None
    silence_limit_s: float = 2.0
    start_budget_s: float = 10.0
    stop_budget_s: float = 5.0
    name: str = "conformance"
    clock: Clock = field(default_factory=FakeClock)
    memory: InstanceMemory = field(default_factory=InstanceMemory)

    def create(self) -> Driver:
        """A fresh driver object, as the supervisor builds one for every start."""
        options = self.plugin.options_model.model_validate(dict(self.options))
        return self.plugin.create(DriverContext(self.name, self.clock, self.memory), options)


class SilenceVerdict(StrEnum):
    """How a driver let the supervisor know its device went quiet."""

    RAISED = "raised DriverUnavailableError"
    REPORTED = "reported the fault in its readings"
    SILENT = "went silent (the watchdog restarts it)"
    ENDED = "ended its readings (the supervisor restarts it)"


# --- the checks -----------------------------------------------------------------------------


async def check_lifecycle(rig: DriverRig, *, readings: int = 3) -> None:
    """Start, read, report, stop — twice; nothing left running."""
    watch = LeakWatch()
    contract, _ = _FAMILY[rig.plugin.family]
    for run in ("first", "second"):
        tasks_before = asyncio.all_tasks()
        driver = rig.create()
        if not isinstance(driver, contract):
            raise ConformanceError(f"{type(driver).__name__} is not a {contract.__name__}")
        if asyncio.all_tasks() - tasks_before:
            raise ConformanceError("creating the driver started a task: no I/O before open()")
        _tell_identity_keys(driver)  # before open: given to a new driver object at start
        async with _open(rig, driver) as stream:
            await _collect(rig, stream, readings)
            _tell_identity_keys(driver)  # and while it runs: an enrolment changed
            if isinstance(driver, ReportsDetail) and not isinstance(driver.status_detail, str):
                raise ConformanceError("status_detail is not a str")
        await _no_leaks(watch, f"after the {run} start and stop")


_CONFORMANCE_IRK = bytes(range(16))


def _tell_identity_keys(driver: Driver) -> None:
    """A beacon receiver takes the enrolled identity keys at any time, without blocking."""
    if isinstance(driver, BeaconReceiver):
        before = asyncio.all_tasks()
        driver.set_identity_keys({"conformance": _CONFORMANCE_IRK})
        if asyncio.all_tasks() - before:
            raise ConformanceError("set_identity_keys() must apply the keys, not start work")


async def check_cancellation(rig: DriverRig, *, readings: int = 2, max_points: int = 40) -> int:
    """Cancel a whole lifecycle at each of its awaits in turn; return how many were hit."""
    measured = CancelAt(_lifecycle(rig, rig.create(), readings), at=None)
    await _bounded(rig, measured.run(), "an uncancelled lifecycle")
    hit = 0
    for point in spread(measured.suspensions, max_points):
        watch = LeakWatch()
        probe = CancelAt(_lifecycle(rig, rig.create(), readings), at=point)
        task = asyncio.create_task(probe.run(), name=f"conformance-cancel-at-{point}")
        _done, pending = await asyncio.wait({task}, timeout=_budget(rig))
        if pending:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise ConformanceError(f"cancelled at await #{point}, it did not stop")
        if probe.cancelled_at is None:  # this run needed fewer awaits: it ran to its end
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise ConformanceError(
                    f"a run that never reached await #{point} failed: {error!r}"
                ) from error
            continue
        hit += 1
        if not task.cancelled():
            error = task.exception()
            if error is None:
                raise ConformanceError(f"swallowed the cancellation at await #{point}")
            if not isinstance(error, DriverError):  # tolerated: the supervisor re-raises
                raise ConformanceError(
                    f"cancelled at await #{point}, it raised {type(error).__name__}: {error}"
                ) from error
        await _no_leaks(watch, f"after a cancellation at await #{point}")
    return hit


async def check_silence(rig: DriverRig) -> SilenceVerdict:
    """Make the device go quiet after a first reading; see how the driver tells."""
    driver = rig.create()
    async with _open(rig, driver) as stream:
        await _collect(rig, stream, 1)
        await rig.go_quiet(driver)
        return await _watch_silence(rig, stream)


async def check_garbage(rig: DriverRig, *, readings: int = 3) -> None:
    """Commands naming nothing that exists, then garbage from the device."""
    driver = rig.create()
    async with _open(rig, driver) as stream:
        await _bad_commands(driver)
        await _collect(rig, stream, 1)
        if rig.garble is None:
            return
        await rig.garble(driver)
        try:
            await _collect(rig, stream, readings, after="after garbage")
        except DriverUnavailableError:
            return  # the supervisor reopens the device
        except DriverConfigError as exc:
            raise ConformanceError(f"garbage is not a configuration error: {exc}") from exc
        except ConformanceError:
            raise
        except Exception as exc:
            raise ConformanceError(
                f"garbage from the device escaped as {type(exc).__name__}: {exc}"
            ) from exc


class DriverConformance:
    """The checks as pytest tests: subclass it as ``Test…`` in a test module and provide an
    async ``conformance_rig`` fixture yielding a :class:`DriverRig` (pytest-asyncio)."""

    async def test_lifecycle(self, conformance_rig: DriverRig) -> None:
        await check_lifecycle(conformance_rig)

    async def test_cancellation(self, conformance_rig: DriverRig) -> None:
        assert await check_cancellation(conformance_rig) > 0

    async def test_silence(self, conformance_rig: DriverRig) -> None:
        await check_silence(conformance_rig)

    async def test_garbage(self, conformance_rig: DriverRig) -> None:
        await check_garbage(conformance_rig)


# --- how -------------------------------------------------------------------------------------


async def _no_leaks(watch: LeakWatch, when: str) -> None:
    leaks = await watch.leaks()
    if leaks is not None:
        raise ConformanceError(f"{when}: {leaks}")


def _budget(rig: DriverRig) -> float:
    return rig.start_budget_s + 10 * rig.silence_limit_s + 2 * rig.stop_budget_s


async def _bounded(rig: DriverRig, step: Awaitable[_T], what: str) -> _T:
    try:
        async with asyncio.timeout(_budget(rig)):
            return await step
    except TimeoutError:
        raise ConformanceError(f"{what} did not finish within {_budget(rig):g} s") from None


@contextlib.asynccontextmanager
async def _open(rig: DriverRig, driver: Driver) -> AsyncIterator[AsyncGenerator[Reading, None]]:
    """``open()`` within the start budget, the readings, then both closed within the stop
    budget, as the supervisor does (``close()`` even when ``open()`` failed)."""
    try:
        await _step(driver.open(), rig.start_budget_s, "open()")
        stream = driver.readings()
        if not isinstance(stream, AsyncGenerator):
            raise ConformanceError("readings() must be an async generator (aclose() ends it)")
        try:
            yield stream
        finally:
            await _step(stream.aclose(), rig.stop_budget_s, "closing readings()")
    finally:
        await _step(driver.close(), rig.stop_budget_s, "close()")


async def _step(step: Awaitable[None], budget: float, what: str) -> None:
    deadline = asyncio.timeout(budget)
    try:
        async with deadline:
            await step
    except TimeoutError:
        if not deadline.expired():
            raise
        raise ConformanceError(f"{what} took longer than {budget:g} s") from None


async def _collect(
    rig: DriverRig, stream: AsyncIterator[Reading], count: int, *, after: str = ""
) -> None:
    """``count`` readings of the driver's family, each before the silence limit."""
    _, kind = _FAMILY[rig.plugin.family]
    found = 0
    while found < count:
        reading = await _next(rig, stream, after)
        if isinstance(reading, Heartbeat | ReceiverStatus):
            continue  # alive, or news about one of several receivers: not the family's data
        if not isinstance(reading, kind):
            raise ConformanceError(f"yielded a {type(reading).__name__}, not a {kind.__name__}")
        if reading.observed_at.tzinfo is None:
            raise ConformanceError("readings are stamped with the injected clock (aware UTC)")
        found += 1


async def _next(rig: DriverRig, stream: AsyncIterator[Reading], after: str) -> Reading:
    limit = rig.silence_limit_s
    watchdog = asyncio.timeout(limit)
    try:
        async with watchdog:
            return await anext(stream)
    except TimeoutError:
        if not watchdog.expired():
            raise
        raise ConformanceError(
            f"no reading {after or 'from a working device'} for {limit:g} s"
        ) from None
    except StopAsyncIteration:
        raise ConformanceError(f"readings() ended {after or 'with the device working'}") from None


async def _lifecycle(rig: DriverRig, driver: Driver, readings: int) -> None:
    async with _open(rig, driver) as stream:
        found = 0
        async for _reading in stream:
            found += 1
            if found >= readings:
                break


async def _watch_silence(rig: DriverRig, stream: AsyncIterator[Reading]) -> SilenceVerdict:
    loop = asyncio.get_running_loop()
    quiet_at, limit = loop.time(), rig.silence_limit_s
    while True:
        watchdog = asyncio.timeout(limit)
        try:
            async with watchdog:
                reading = await anext(stream)
        except TimeoutError:
            if not watchdog.expired():
                raise
            return SilenceVerdict.SILENT
        except StopAsyncIteration:
            return SilenceVerdict.ENDED
        except DriverUnavailableError:
            return SilenceVerdict.RAISED
        except Exception as exc:
            raise ConformanceError(
                f"its device went quiet and it raised {type(exc).__name__}: {exc} (expected "
                "DriverUnavailableError, a fault reading or silence)"
            ) from exc
        if isinstance(reading, WeightSample) and reading.status is ScaleStatus.ERROR:
            return SilenceVerdict.REPORTED
        if loop.time() - quiet_at > limit:
            raise ConformanceError(
                f"still yielding {type(reading).__name__} {loop.time() - quiet_at:.1f} s after "
                f"its device went quiet: the silence watchdog ({limit:g} s) never fires"
            )


async def _bad_commands(driver: Driver) -> None:
    commands: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    if isinstance(driver, ScaleDriver):
        commands += [
            ("zero", lambda: driver.zero(_NOWHERE)),
            ("tare", lambda: driver.tare(_NOWHERE)),
        ]
    if isinstance(driver, LabelDriver):
        content = LabelContent(_NOWHERE, b"", "0" * 64, LabelModel(296, 128, LabelPalette.BWR))
        commands += [
            ("push", lambda: driver.push(content)),
            ("flash", lambda: driver.flash(_NOWHERE)),
        ]
    for name, command in commands:
        try:
            await command()
        except DriverError:
            continue
        except Exception as exc:
            raise ConformanceError(
                f"{name}() of something that does not exist raised {type(exc).__name__}: "
                f"{exc} (expected a DriverError)"
            ) from exc
        raise ConformanceError(f"{name}() of something that does not exist returned normally")
