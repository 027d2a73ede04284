"""Runs every driver instance as a named, supervised task.

Each instance lives in its own task ``driver[<name>]`` inside the supervisor's TaskGroup::

    STARTING ──open ok──▶ RUNNING ──failure──▶ DEGRADED ──backoff──▶ STARTING …
        │                                          ▲
        └── DriverConfigError ──▶ FAILED (no retry until its configuration changes)

Transient failures (DriverUnavailableError, an unexpected exception, the readings iterator
ending, silence beyond the instance's limit, a hanging ``open()``) restart the driver after a
capped, jittered backoff; a run of ``healthy_after_s`` resets the backoff. Health changes are
logged once, not on every retry. Nothing a driver does can stop another driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from gateway.backoff import Backoff
from gateway.clock import Clock, isoformat_utc
from gateway.config import ResolvedDevice, SupervisorConfig
from gateway.drivers.contracts import DeviceFamily, Driver, DriverContext, Heartbeat, Reading
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

ReadingSink = Callable[[str, Reading], None]


class DriverHealth(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class DriverStatus:
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "driver": self.driver,
            "family": self.family.value,
            "health": self.health.value,
            "since": isoformat_utc(self.since),
            "last_error": self.last_error,
            "last_error_at": None
            if self.last_error_at is None
            else isoformat_utc(self.last_error_at),
            "restarts": self.restarts,
            "readings": self.readings,
            "last_reading_at": None
            if self.last_reading_at is None
            else isoformat_utc(self.last_reading_at),
            "next_retry_in_s": None
            if self.next_retry_in_s is None
            else round(self.next_retry_in_s, 2),
        }


@dataclass(frozen=True, slots=True)
class AppliedChanges:
    started: tuple[str, ...]
    restarted: tuple[str, ...]
    stopped: tuple[str, ...]
    unchanged: tuple[str, ...]


class _SilenceError(DriverUnavailableError):
    pass


class _Instance:
    """Supervision state of one driver instance (mutable; only its own task writes it)."""

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
        self.driver: Driver | None = None
        self.task: asyncio.Task[None] | None = None
        self.backoff = Backoff(config.backoff_initial_s, config.backoff_max_s, rng=rng)

    @property
    def name(self) -> str:
        return self.device.name

    def set_health(self, health: DriverHealth, error: str | None = None) -> None:
        if error is not None:
            self.last_error = error
            self.last_error_at = self.clock.utc_now()
        if health is self.health:
            return
        previous, self.health = self.health, health
        self.since = self.clock.utc_now()
        if health is DriverHealth.RUNNING and previous is DriverHealth.STARTING:
            if self.restarts:
                _LOGGER.info("driver %s recovered (after %d restarts)", self.name, self.restarts)
            else:
                _LOGGER.info("driver %s running", self.name)
        elif health is DriverHealth.DEGRADED:
            _LOGGER.warning("driver %s degraded: %s", self.name, error)
        elif health is DriverHealth.FAILED:
            _LOGGER.error("driver %s failed, not retrying: %s", self.name, error)

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
        )


class Supervisor:
    """Starts, watches and restarts driver instances; see the module docstring."""

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
        self._rng = rng or random.Random()  # noqa: S311 - jitter
        self._instances: dict[str, _Instance] = {}
        self._group: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self._progress = 0
        self._queued: list[_Instance] = []

    @property
    def progress(self) -> int:
        return self._progress

    def statuses(self) -> tuple[DriverStatus, ...]:
        return tuple(self._instances[name].status() for name in sorted(self._instances))

    def driver(self, name: str) -> Driver | None:
        instance = self._instances.get(name)
        if instance is None or instance.health not in {DriverHealth.RUNNING, DriverHealth.DEGRADED}:
            return None
        return instance.driver

    async def run(self) -> None:
        """Own the driver tasks until :meth:`shutdown`; returns when every driver stopped."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for instance in self._queued:
                self._launch(instance)
            self._queued.clear()
            while not self._stopping.is_set():
                self._progress += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), _TICK_S)
            self._group = None

    def apply(self, devices: Sequence[ResolvedDevice]) -> AppliedChanges:
        """Bring the running instances in line with ``devices`` (see module docstring)."""
        wanted = {device.name: device for device in devices}
        started, restarted, stopped, unchanged = [], [], [], []
        for name in list(self._instances):
            if name not in wanted:
                self._retire(self._instances.pop(name))
                stopped.append(name)
        for name, device in wanted.items():
            current = self._instances.get(name)
            if current is not None and current.device.config == device.config:
                unchanged.append(name)
                continue
            if current is not None:
                self._retire(current)
                restarted.append(name)
            else:
                started.append(name)
            instance = _Instance(device, self._clock, self._config, self._rng)
            self._instances[name] = instance
            if self._group is None:
                self._queued.append(instance)
            else:
                self._launch(instance)
        return AppliedChanges(tuple(started), tuple(restarted), tuple(stopped), tuple(unchanged))

    async def shutdown(self, budget_s: float) -> None:
        """Stop every driver within ``budget_s``; then :meth:`run` returns."""
        tasks = [i.task for i in self._instances.values() if i.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=budget_s)
            if pending:
                _LOGGER.error(
                    "%d driver(s) did not stop within %.1f s: %s",
                    len(pending),
                    budget_s,
                    ", ".join(task.get_name() for task in pending),
                )
        for instance in self._instances.values():
            instance.set_health(DriverHealth.STOPPED)
        self._stopping.set()

    # --- per-instance supervision -------------------------------------------------------

    def _launch(self, instance: _Instance) -> None:
        assert self._group is not None
        instance.task = self._group.create_task(
            self._supervise(instance), name=f"driver[{instance.name}]"
        )

    def _retire(self, instance: _Instance) -> None:
        if instance in self._queued:
            self._queued.remove(instance)
        if instance.task is not None:
            instance.task.cancel()
        instance.set_health(DriverHealth.STOPPED)

    async def _supervise(self, instance: _Instance) -> None:
        while True:
            instance.set_health(DriverHealth.STARTING)
            started = self._clock.monotonic()
            error = "driver returned"
            try:
                await self._run_once(instance)
            except DriverConfigError as exc:
                instance.set_health(DriverHealth.FAILED, str(exc))
                return
            except DriverError as exc:
                error = str(exc)
            except Exception as exc:  # a buggy driver must not take the gateway down
                error = f"{type(exc).__name__}: {exc}"
                if instance.last_error != error:
                    _LOGGER.exception("driver %s raised unexpectedly", instance.name)
            finally:
                instance.driver = None
            if self._clock.monotonic() - started >= self._config.healthy_after_s:
                instance.backoff.reset()
            instance.restarts += 1
            instance.set_health(DriverHealth.DEGRADED, error)
            delay = instance.backoff.next_delay()
            instance.retry_at = self._clock.monotonic() + delay
            try:
                await asyncio.sleep(delay)
            finally:
                instance.retry_at = None

    async def _run_once(self, instance: _Instance) -> None:
        device = instance.device
        driver = device.plugin.create(DriverContext(device.name, self._clock), device.options)
        try:
            try:
                async with asyncio.timeout(self._config.start_timeout_s):
                    await driver.open()
            except TimeoutError:
                raise DriverUnavailableError(
                    f"open() did not finish within {self._config.start_timeout_s:g} s"
                ) from None
            instance.driver = driver
            instance.set_health(DriverHealth.RUNNING)
            await self._pump(instance, driver)
        finally:
            await self._close(instance, driver)

    async def _pump(self, instance: _Instance, driver: Driver) -> None:
        limit = instance.device.silence_limit
        readings = driver.readings()
        try:
            while True:
                try:
                    async with asyncio.timeout(limit):
                        reading = await anext(readings)
                except StopAsyncIteration:
                    raise DriverUnavailableError("driver stopped yielding readings") from None
                except TimeoutError:
                    raise _SilenceError(f"silent for {limit:g} s (watchdog)") from None
                if isinstance(reading, Heartbeat):
                    continue
                instance.readings += 1
                instance.last_reading_at = reading.observed_at
                try:
                    self._sink(instance.name, reading)
                except Exception:
                    _LOGGER.exception("reading sink failed for %s", instance.name)
        finally:
            closer = getattr(readings, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._config.stop_timeout_s):
                        await closer()

    async def _close(self, instance: _Instance, driver: Driver) -> None:
        try:
            async with asyncio.timeout(self._config.stop_timeout_s):
                await driver.close()
        except TimeoutError:
            _LOGGER.warning(
                "driver %s: close() took longer than %.1f s; abandoned",
                instance.name,
                self._config.stop_timeout_s,
            )
        except Exception:
            _LOGGER.exception("driver %s: close() raised", instance.name)
