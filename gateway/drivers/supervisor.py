"""Runs every driver instance as a named, supervised task.

Each instance lives in its own task ``driver[<name>]`` inside the supervisor's TaskGroup::

    STARTING ──open ok──▶ RUNNING ──failure──▶ DEGRADED ──backoff, open ok──▶ RUNNING
        │                                       │  ▲
        │                                       └──┘ open fails again: stays DEGRADED
        └── DriverConfigError (at any point) ──▶ FAILED (no retry until its config changes)

    shutdown() or removal by apply() ──▶ STOPPED

Transient failures (DriverUnavailableError, an unexpected exception, the readings iterator
ending, silence beyond the instance's limit, a hanging ``open()``) restart the driver after a
capped, jittered backoff; running ``healthy_after_s`` without failure resets the backoff.
Health changes are logged once, not on every retry. Nothing a driver does can stop another
driver, and no driver can swallow the supervisor's cancellation. Every driver object of one
instance name gets the same :class:`~gateway.drivers.contracts.InstanceMemory`, so what the
instance must remember survives its restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gateway.backoff import Backoff
from gateway.clock import Clock, isoformat_utc
from gateway.drivers.config import ResolvedDevice, SupervisorConfig
from gateway.drivers.contracts import (
    DeviceFamily,
    Driver,
    DriverContext,
    Heartbeat,
    InstanceMemory,
    Reading,
    ReportsDetail,
)
from gateway.errors import DriverConfigError, DriverError, DriverUnavailableError

__all__ = [
    "AppliedChanges",
    "DriverHealth",
    "DriverStatus",
    "ReadingSink",
    "Supervisor",
]

_LOGGER = logging.getLogger(__name__)

_TICK_S = 1.0

#: Receives ``(instance name, reading)`` for every non-Heartbeat reading; must not block.
ReadingSink = Callable[[str, Reading], None]


class DriverHealth(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class DriverStatus:
    """A snapshot of one instance's supervision state (``storegw status``, diagnostics)."""

    name: str
    driver: str
    family: DeviceFamily
    health: DriverHealth
    since: datetime
    last_error: str | None
    last_error_at: datetime | None
    restarts: int
    readings: int
    last_reading_at: datetime | None
    next_retry_in_s: float | None
    detail: str | None = None  # the driver's own word on its inner health (ReportsDetail)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "driver": self.driver,
            "family": self.family.value,
            "health": self.health.value,
            "since": isoformat_utc(self.since),
            "last_error": self.last_error,
            "last_error_at": _iso_or_none(self.last_error_at),
            "restarts": self.restarts,
            "readings": self.readings,
            "last_reading_at": _iso_or_none(self.last_reading_at),
            "next_retry_in_s": None
            if self.next_retry_in_s is None
            else round(self.next_retry_in_s, 2),
            "detail": self.detail,
        }


def _iso_or_none(instant: datetime | None) -> str | None:
    return None if instant is None else isoformat_utc(instant)


@dataclass(frozen=True, slots=True)
class AppliedChanges:
    """What :meth:`Supervisor.apply` did, instance names sorted."""

    started: tuple[str, ...]
    restarted: tuple[str, ...]
    stopped: tuple[str, ...]
    unchanged: tuple[str, ...]


class _Instance:
    """Supervision state of one driver instance; only its own task (and apply/shutdown, for
    STOPPED) writes it."""

    def __init__(
        self, device: ResolvedDevice, clock: Clock, config: SupervisorConfig, rng: random.Random
    ) -> None:
        self.device = device
        self.clock = clock
        self.health = DriverHealth.STARTING
        self.since = clock.utc_now()
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.restarts = 0
        self.readings = 0
        self.last_reading_at: datetime | None = None
        self.retry_at: float | None = None
        self.running_since: float | None = None
        self.driver: Driver | None = None
        self.task: asyncio.Task[None] | None = None
        self.backoff = Backoff(config.backoff_initial_s, config.backoff_max_s, rng=rng)
        self.healthy_after = config.healthy_after_s
        # Tracebacks and sink failures are logged once, not on every retry or reading.
        self.logged_bug: str | None = None
        self.sink_failing = False

    @property
    def name(self) -> str:
        return self.device.name

    def same_as(self, device: ResolvedDevice) -> bool:
        current = self.device
        return (
            current.config == device.config
            and current.options == device.options
            and current.plugin == device.plugin
        )

    def _become(self, health: DriverHealth) -> None:
        self.health = health
        self.since = self.clock.utc_now()

    def opened(self, driver: Driver) -> None:
        self.driver = driver
        self.running_since = self.clock.monotonic()
        if self.health is DriverHealth.DEGRADED:
            _LOGGER.info("driver %s recovered (restarts so far: %d)", self.name, self.restarts)
        else:
            _LOGGER.info("driver %s running", self.name)
        self._become(DriverHealth.RUNNING)

    def failed(self, error: str, *, permanent: bool) -> None:
        self.driver = None
        self.last_error = error
        self.last_error_at = self.clock.utc_now()
        if permanent:
            _LOGGER.error(
                "driver %s failed, not retrying until its config changes: %s", self.name, error
            )
            self._become(DriverHealth.FAILED)
            return
        self.restarts += 1
        if self.health is not DriverHealth.DEGRADED:
            _LOGGER.warning("driver %s degraded, retrying with backoff: %s", self.name, error)
            self._become(DriverHealth.DEGRADED)
        else:
            _LOGGER.debug("driver %s still degraded: %s", self.name, error)
        if self.running_since is not None:
            if self.clock.monotonic() - self.running_since >= self.healthy_after:
                self.backoff.reset()
                self.logged_bug = None
            self.running_since = None

    def stopped(self) -> None:
        self.driver = None
        self.retry_at = None
        if self.health is not DriverHealth.STOPPED:
            _LOGGER.debug("driver %s stopped", self.name)
            self._become(DriverHealth.STOPPED)

    def status(self) -> DriverStatus:
        retry_in = None
        if self.retry_at is not None:
            retry_in = max(0.0, self.retry_at - self.clock.monotonic())
        return DriverStatus(
            name=self.name,
            driver=self.device.config.driver,
            family=self.device.plugin.family,
            health=self.health,
            since=self.since,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            restarts=self.restarts,
            readings=self.readings,
            last_reading_at=self.last_reading_at,
            next_retry_in_s=retry_in,
            detail=self._detail(),
        )

    def _detail(self) -> str | None:
        driver = self.driver
        if not isinstance(driver, ReportsDetail):
            return None
        try:
            return driver.status_detail
        except Exception:  # noqa: BLE001 - a status snapshot must survive a driver bug
            return None


class Supervisor:
    """Starts, watches and restarts driver instances; see the module docstring.

    ``apply()`` may be called before ``run()`` (instances wait for it) and while it runs;
    ``shutdown()`` stops every driver and makes ``run()`` return.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        config: SupervisorConfig,
        sink: ReadingSink,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._config = config
        self._sink = sink
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._instances: dict[str, _Instance] = {}
        # Handed to every driver object of an instance name, restarts and reconfigurations too.
        self._memories: dict[str, InstanceMemory] = {}
        # Cancelled tasks still closing their driver, by instance name: a replacement waits for
        # them so two driver objects never hold the same port.
        self._retiring: dict[str, set[asyncio.Task[None]]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self._started = False
        self._closed = False
        self._progress = 0

    @property
    def progress(self) -> int:
        """Supervision ticks so far; the systemd watchdog checks that it keeps moving."""
        return self._progress

    def statuses(self) -> tuple[DriverStatus, ...]:
        return tuple(self._instances[name].status() for name in sorted(self._instances))

    def driver(self, name: str) -> Driver | None:
        """The live driver object of ``name`` (for commands), or None when it is not open."""
        instance = self._instances.get(name)
        if instance is None or instance.health not in {DriverHealth.RUNNING, DriverHealth.DEGRADED}:
            return None
        return instance.driver

    async def run(self) -> None:
        """Own the driver tasks until :meth:`shutdown`; returns when every driver stopped."""
        if self._started:
            raise RuntimeError("Supervisor.run() may only be called once")
        self._started = True
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                try:
                    if not self._stopping.is_set():
                        for instance in self._instances.values():
                            self._launch(instance)
                    await self._monitor()
                finally:
                    self._group = None
                    self._closed = True
                    # Normally shutdown() already stopped them; this covers run() being
                    # cancelled, so the group never waits on a driver that would run forever.
                    for task in self._unfinished_tasks():
                        task.cancel()
        finally:
            for instance in self._instances.values():
                instance.stopped()

    def apply(self, devices: Sequence[ResolvedDevice]) -> AppliedChanges:
        """Make the instances match ``devices``: start new ones, restart changed ones (config,
        validated options or plugin), stop removed ones; the rest run on undisturbed."""
        if self._closed:
            raise RuntimeError("the supervisor has shut down")
        wanted: dict[str, ResolvedDevice] = {}
        for device in devices:
            if device.name in wanted:
                raise ValueError(f"duplicate device name {device.name!r}")
            wanted[device.name] = device
        started: list[str] = []
        restarted: list[str] = []
        stopped: list[str] = []
        unchanged: list[str] = []
        for name in sorted(self._instances.keys() - wanted.keys()):
            self._retire(self._instances.pop(name))
            stopped.append(name)
        for name in sorted(wanted):
            device = wanted[name]
            current = self._instances.get(name)
            if current is not None and current.same_as(device):
                unchanged.append(name)
                continue
            if current is None:
                started.append(name)
            else:
                self._retire(current)
                restarted.append(name)
            instance = _Instance(device, self._clock, self._config, self._rng)
            self._instances[name] = instance
            if self._group is not None:
                self._launch(instance)
        return AppliedChanges(tuple(started), tuple(restarted), tuple(stopped), tuple(unchanged))

    async def shutdown(self, budget_s: float) -> None:
        """Stop every driver within ``budget_s``; then :meth:`run` returns."""
        self._closed = True
        try:
            tasks = self._unfinished_tasks()
            for task in tasks:
                task.cancel()
            if tasks:
                _done, pending = await asyncio.wait(tasks, timeout=budget_s)
                if pending:
                    _LOGGER.error(
                        "%d driver(s) did not stop within %g s: %s",
                        len(pending),
                        budget_s,
                        ", ".join(sorted(task.get_name() for task in pending)),
                    )
                    for task in pending:  # it may have swallowed the first cancellation
                        task.cancel()
            for instance in self._instances.values():
                instance.stopped()
        finally:
            self._stopping.set()

    # --- bookkeeping ----------------------------------------------------------------------

    async def _monitor(self) -> None:
        while not self._stopping.is_set():
            self._progress += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_TICK_S):
                    await self._stopping.wait()

    def _unfinished_tasks(self) -> list[asyncio.Task[None]]:
        tasks = [i.task for i in self._instances.values() if i.task is not None]
        tasks.extend(task for retiring in self._retiring.values() for task in retiring)
        return [task for task in tasks if not task.done()]

    def _launch(self, instance: _Instance) -> None:
        assert self._group is not None
        predecessors = tuple(self._retiring.get(instance.name, ()))
        instance.task = self._group.create_task(
            self._supervise(instance, predecessors), name=f"driver[{instance.name}]"
        )

    def _retire(self, instance: _Instance) -> None:
        instance.stopped()
        task = instance.task
        if task is None or task.done():
            return
        task.cancel()
        self._retiring.setdefault(instance.name, set()).add(task)
        task.add_done_callback(lambda done: self._retired(instance.name, done))

    def _retired(self, name: str, task: asyncio.Task[None]) -> None:
        retiring = self._retiring.get(name)
        if retiring is not None:
            retiring.discard(task)
            if not retiring:
                del self._retiring[name]

    # --- per-instance supervision ---------------------------------------------------------

    async def _supervise(
        self, instance: _Instance, predecessors: tuple[asyncio.Task[None], ...]
    ) -> None:
        try:
            if predecessors:
                await self._await_predecessors(instance, predecessors)
            while True:
                try:
                    await self._run_once(instance)
                except DriverConfigError as exc:
                    _reraise_if_cancelled()
                    instance.failed(str(exc), permanent=True)
                    return
                except DriverError as exc:
                    _reraise_if_cancelled()
                    error = str(exc)
                except Exception as exc:  # a buggy driver must not take the gateway down
                    _reraise_if_cancelled()
                    error = f"{type(exc).__name__}: {exc}"
                    if instance.logged_bug != error:
                        instance.logged_bug = error
                        _LOGGER.error("driver %s raised unexpectedly", instance.name, exc_info=exc)
                instance.failed(error, permanent=False)
                delay = instance.backoff.next_delay()
                instance.retry_at = self._clock.monotonic() + delay
                try:
                    await asyncio.sleep(delay)
                finally:
                    instance.retry_at = None
        except asyncio.CancelledError:
            instance.stopped()
            raise

    async def _await_predecessors(
        self, instance: _Instance, predecessors: tuple[asyncio.Task[None], ...]
    ) -> None:
        # Each predecessor closes its iterator and its driver, each bounded by stop_timeout_s.
        limit = 2 * self._config.stop_timeout_s + _TICK_S
        _done, pending = await asyncio.wait(predecessors, timeout=limit)
        if pending:
            _LOGGER.warning(
                "driver %s: the previous instance is still stopping after %g s; starting anyway",
                instance.name,
                limit,
            )

    async def _run_once(self, instance: _Instance) -> None:
        """Create, open and pump one driver object; always raises when it ends."""
        device = instance.device
        memory = self._memories.setdefault(device.name, InstanceMemory())
        context = DriverContext(device.name, self._clock, memory)
        driver = device.plugin.create(context, device.options)
        try:
            opening = asyncio.timeout(self._config.start_timeout_s)
            try:
                async with opening:
                    await driver.open()
            except TimeoutError:
                if not opening.expired():
                    raise  # the driver's own timeout, not ours
                raise DriverUnavailableError(
                    f"open() did not finish within {self._config.start_timeout_s:g} s"
                ) from None
            instance.opened(driver)
            await self._pump(instance, driver)
        finally:
            instance.driver = None  # no command may reach a driver being closed
            await self._close(instance, driver)

    async def _pump(self, instance: _Instance, driver: Driver) -> None:
        limit = instance.device.silence_limit
        readings = driver.readings()
        try:
            while True:
                watchdog = asyncio.timeout(limit)  # any reading, Heartbeat included, rearms it
                try:
                    async with watchdog:
                        reading = await anext(readings)
                except StopAsyncIteration:
                    raise DriverUnavailableError("driver stopped yielding readings") from None
                except TimeoutError:
                    if not watchdog.expired():
                        raise
                    raise DriverUnavailableError(f"silent for {limit:g} s") from None
                if isinstance(reading, Heartbeat):
                    continue
                instance.readings += 1
                instance.last_reading_at = self._clock.utc_now()
                self._deliver(instance, reading)
        finally:
            if isinstance(readings, AsyncGenerator):
                await self._bounded(instance, readings.aclose(), "closing readings()")

    def _deliver(self, instance: _Instance, reading: Reading) -> None:
        try:
            self._sink(instance.name, reading)
        except Exception:
            if not instance.sink_failing:
                instance.sink_failing = True
                _LOGGER.exception("reading sink failed for driver %s", instance.name)
        else:
            if instance.sink_failing:
                instance.sink_failing = False
                _LOGGER.info("reading sink accepts readings from driver %s again", instance.name)

    async def _close(self, instance: _Instance, driver: Driver) -> None:
        await self._bounded(instance, driver.close(), "close()")

    async def _bounded(self, instance: _Instance, step: Awaitable[None], what: str) -> None:
        """Await a clean-up step within stop_timeout_s; its failures are logged, not raised."""
        limit = self._config.stop_timeout_s
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                await step
        except TimeoutError:
            if not deadline.expired():
                _LOGGER.warning("driver %s: %s timed out", instance.name, what)
            else:
                _LOGGER.warning(
                    "driver %s: %s took longer than %g s; abandoned", instance.name, what, limit
                )
        except Exception:
            _LOGGER.exception("driver %s: %s raised", instance.name, what)


def _reraise_if_cancelled() -> None:
    """A driver may turn our CancelledError into its own error; the cancellation still wins."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
