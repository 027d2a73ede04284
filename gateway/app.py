"""Composition root and lifecycle of the daemon: it builds the shared services and the
features (:mod:`gateway.feature`), registers what each feature declares — control commands,
HQ commands, tasks, status block — and runs them.

``Gateway.run()`` owns everything under one ``asyncio.TaskGroup``::

    start:  claims (the database's lock, the control socket's path: a second daemon on either
            is refused before it touches anything) → storage (open, checks, migrations)
            → storage.writer → outbox, alerts → features (prices, labels, shelves, presence)
            → the HQ connection → supervisor → drivers → the features' tasks
            → control socket serving → READY=1
    run:    SIGHUP re-reads the config: only changed drivers restart; a bad config is refused
            and the running one kept. The systemd watchdog is pinged only while the event loop,
            the storage writer and the supervisor all show progress.
    stop:   SIGTERM/SIGINT → STOPPING=1 → drivers (half the budget) → control socket
            → flush and close storage; exit 0. The whole stop fits ``supervisor.shutdown_budget_s``,
            which stays below the unit's TimeoutStopSec.

A stop signal during start-up cancels the start-up cleanly: whatever was opened is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.alerts import Alerts
from gateway.clock import Clock
from gateway.config import GatewaySettings
from gateway.control.server import ControlServer
from gateway.diagnostics import FOUND_EMPTY_ALERT, Diagnostics, report_found_empty
from gateway.drivers.config import ResolvedDevice
from gateway.drivers.contracts import DeviceFamily
from gateway.drivers.registry import DriverRegistry
from gateway.drivers.supervisor import Supervisor
from gateway.errors import ConfigError, ConfigIssue, ControlError, StorageError
from gateway.feature import Feature, FeatureServices
from gateway.hub import ReadingHub
from gateway.labels.bindings import LabelBindings
from gateway.labels.feature import LabelsFeature
from gateway.presence.feature import PresenceFeature
from gateway.prices.feature import PricesFeature
from gateway.reload import ReloadOutcome, reload_config
from gateway.shelves.feature import ShelvesFeature
from gateway.store import Database
from gateway.store.lock import DatabaseLock
from gateway.store.outbox import Outbox
from gateway.sync.connection import HqConnection
from gateway.sync.keeper import OutboxKeeper
from gateway.systemd import SystemdNotifier, WatchdogGate, feed_watchdog
from gateway.wire.messages import HealthSnapshot

__all__ = ["FOUND_EMPTY_ALERT", "STREAMS", "Gateway", "ReloadOutcome"]

#: The outbox streams every gateway has (docs/protocol.md).
STREAMS = ("stock", "dwell", "receipts", "alerts")

_LOGGER = logging.getLogger(__name__)

_LOOP_TICK_S = 1.0


@dataclass(slots=True)
class _Runtime:
    """What exists once start-up got far enough; shutdown closes what is there."""

    database: Database | None = None
    labels: LabelsFeature | None = None
    supervisor: Supervisor | None = None
    control: ControlServer | None = None
    diagnostics: Diagnostics | None = None
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)


class Gateway:
    """The storegw daemon. Build with validated settings; ``await run()`` until stopped."""

    def __init__(
        self,
        *,
        config_path: Path,
        settings: GatewaySettings,
        devices: tuple[ResolvedDevice, ...],
        clock: Clock,
        registry: DriverRegistry,
        notifier: SystemdNotifier | None = None,
        environ: Mapping[str, str] | None = None,
        on_ready: Callable[[Gateway], Awaitable[None]] | None = None,
    ) -> None:
        self.config_path = config_path
        self.settings = settings
        self.devices = devices
        self.clock = clock
        self.registry = registry
        self.hub = ReadingHub()
        self._notifier = notifier or SystemdNotifier.from_environment()
        self._environ = environ
        self._on_ready = on_ready
        self._runtime = _Runtime()
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._stop_reason: str | None = None
        self._ready = False
        self._main_task: asyncio.Task[Any] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._started_mono = clock.monotonic()
        self._started_at = clock.utc_now()
        self._loop_ticks = 0
        self.last_reload: ReloadOutcome | None = None

    # --- public -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def database(self) -> Database | None:
        return self._runtime.database

    @property
    def bindings(self) -> LabelBindings | None:
        labels = self._runtime.labels
        return labels.bindings if labels is not None else None

    @property
    def supervisor(self) -> Supervisor | None:
        return self._runtime.supervisor

    def configured(self, family: DeviceFamily) -> tuple[str, ...]:
        """The devices of ``family`` as configured now (the features' LiveDevices)."""
        return tuple(device.name for device in self.devices if device.plugin.family is family)

    def driver(self, name: str) -> object | None:
        """The live driver of device ``name``; None while it is not running."""
        supervisor = self._runtime.supervisor
        return None if supervisor is None else supervisor.driver(name)

    def request_stop(self, reason: str = "requested") -> None:
        """Begin a graceful stop; during start-up this cancels the start-up instead."""
        if self._stop_reason is None:
            self._stop_reason = reason
            _LOGGER.info("stopping (%s)", reason)
        self._stop.set()
        if not self._ready and self._main_task is not None:
            self._main_task.cancel()

    def request_reload(self) -> None:
        self._reload.set()

    async def run(self, *, duration: float | None = None) -> int:
        """Run until a stop signal (or ``duration`` seconds after ready); returns the exit code.

        Raises ConfigError/StorageError from start-up for the CLI to map to exit codes.
        """
        self._main_task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        installed = self._install_signal_handlers(loop)
        try:
            async with self._claims():
                await self._run(duration)
        except asyncio.CancelledError:
            if self._stop_reason is None or self._main_task is None:
                raise
            self._main_task.uncancel()
            _LOGGER.info("start-up interrupted by %s; stopped cleanly", self._stop_reason)
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
        return 0

    # --- lifecycle ----------------------------------------------------------------------

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        installed = []
        handlers: dict[int, Callable[[], None]] = {
            signal.SIGTERM: lambda: self.request_stop("SIGTERM"),
            signal.SIGINT: lambda: self.request_stop("SIGINT"),
            signal.SIGHUP: self.request_reload,
        }
        for signum, handler in handlers.items():
            try:
                loop.add_signal_handler(signum, handler)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                continue
            installed.append(signum)
        return installed

    @contextlib.asynccontextmanager
    async def _claims(self) -> AsyncIterator[None]:
        """Hold the database's lock and the control socket for the daemon's lifetime.

        Both are taken before storage opens (a second daemon must not even count a boot) and
        before READY, so a conflict or an unusable socket path stops the start with exit 78
        instead of failing after READY and looping in restarts."""
        with DatabaseLock(self.settings.storage.path):
            control = ControlServer(
                self.settings.control.socket,
                max_connections=self.settings.control.max_connections,
            )
            try:
                await control.listen()
            except ControlError as exc:
                raise ConfigError(
                    str(self.config_path), [ConfigIssue("control.socket", str(exc))]
                ) from exc
            self._runtime.control = control
            try:
                yield
            finally:
                control.close()

    async def _run(self, duration: float | None) -> None:
        runtime = self._runtime
        storage = self.settings.storage
        self._notifier.status(f"starting: opening storage {storage.path}")
        # Opened before the task group so a storage error surfaces as itself, not a group.
        runtime.database = await Database.open(
            storage.path,
            clock=self.clock,
            commit_interval_s=storage.commit_interval_s,
            commit_max_rows=storage.commit_max_rows,
            busy_timeout_s=storage.busy_timeout_s,
        )
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                await self._start(group)
                self._ready = True
                self._notifier.ready()
                self._notifier.status(self._status_line())
                _LOGGER.info(
                    "storegw %s ready: store %s, %d device(s), started in %.2f s",
                    __version__,
                    self.settings.store.id,
                    len(self.devices),
                    self.clock.monotonic() - self._started_mono,
                )
                if self._on_ready is not None:
                    await self._on_ready(self)
                if self._stop.is_set():  # a stop arrived while on_ready ran
                    pass
                elif duration is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), duration)
                else:
                    await self._stop.wait()
                await self._shutdown()
        finally:
            # Start-up failed or was cancelled: close whatever was opened, flushing storage.
            if runtime.database is not None:
                await runtime.database.close()

    async def _start(self, group: asyncio.TaskGroup) -> None:
        runtime = self._runtime
        database = runtime.database
        assert database is not None
        self._spawn(group, "storage.writer", database.run())
        settings = self.settings
        outbox = Outbox(database, self.clock, settings.outbox.budget())
        await outbox.open(STREAMS)
        alerts = Alerts(database, outbox, self.clock)
        await alerts.load()
        await report_found_empty(database, alerts)
        keeper = OutboxKeeper(
            outbox,
            alerts,
            self.clock,
            ttl_s=settings.outbox.ttl_s,
            expiry_interval_s=settings.outbox.expiry_interval_s,
            database=database,
        )
        self._spawn(group, "outbox.keeper", keeper.run())

        services = FeatureServices(database, outbox, alerts, self.clock, self.hub, devices=self)
        prices = await PricesFeature.start(services, settings.downlink, store_id=settings.store.id)
        runtime.labels = await LabelsFeature.start(
            services,
            settings.labels,
            prices=prices,
            timezone=settings.store.timezone,
            locale=settings.store.locale,
        )
        shelves = await ShelvesFeature.start(services, settings.shelves)
        presence = await PresenceFeature.start(
            services, settings.presence, timezone=settings.store.timezone
        )
        features: tuple[Feature, ...] = (prices, runtime.labels, shelves, presence)

        supervisor = runtime.supervisor = Supervisor(
            clock=self.clock, config=settings.supervisor, sink=self.hub.publish
        )
        connection = None
        if settings.mqtt.enabled:
            connection = HqConnection(
                database=database,
                outbox=outbox,
                alerts=alerts,
                clock=self.clock,
                config=settings.mqtt,
                store_id=settings.store.id,
                verifier=settings.downlink.verifier(),
                groups=settings.downlink.groups,
            )
        runtime.diagnostics = diagnostics = Diagnostics(
            daemon=self,
            clock=self.clock,
            started_at=self._started_at,
            started_mono=self._started_mono,
            database=database,
            outbox=outbox,
            alerts=alerts,
            supervisor=supervisor,
            hub=self.hub,
            registry=self.registry,
            connection=connection,
            prices=prices,
            features=features,
        )
        if connection is not None:
            self._connect(group, connection, prices, features, describe=diagnostics.describe)

        self._spawn(group, "supervisor", supervisor.run())
        supervisor.apply(self.devices)
        for feature in features:
            for name, task in feature.tasks().items():
                self._spawn(group, name, task())

        assert runtime.control is not None  # listening since _claims()
        declared = [feature.control_handlers() for feature in features]
        for handlers in (diagnostics.control_handlers(), *declared):
            for name, handler in handlers.items():
                runtime.control.register(name, handler)
        self._spawn(group, "control", runtime.control.serve())

        self._spawn(group, "storage.maintenance", self._maintenance_loop(database))
        self._spawn(group, "loop.ticker", self._tick_loop())
        self._spawn(group, "config.reloader", self._reload_loop())
        if self._notifier.watchdog_interval() is not None:
            gate = WatchdogGate(
                {
                    "event loop": lambda: self._loop_ticks,
                    "storage writer": lambda: database.writer_progress,
                    "supervisor": lambda: supervisor.progress,
                }
            )
            self._spawn(group, "systemd.watchdog", feed_watchdog(self._notifier, gate))

    def _connect(
        self,
        group: asyncio.TaskGroup,
        connection: HqConnection,
        prices: PricesFeature,
        features: Sequence[Feature],
        *,
        describe: Callable[[], Awaitable[dict[str, Any]]],
    ) -> None:
        """Prices take ``down/prices``; every feature's HQ commands are served beside the
        link's built-ins (``ping`` answers with ``describe()``); the connection's tasks run."""
        prices.attach(connection.link)
        connection.serve_commands(
            [spec for feature in features for spec in feature.hq_commands()],
            announce_prices=prices.announce,
            describe=describe,
        )
        tasks = connection.tasks(refusals=[prices.downlink.refusals], health=self.health_snapshot)
        for name, task in tasks.items():
            self._spawn(group, name, task())

    def _spawn(self, group: asyncio.TaskGroup, name: str, coro: Coroutine[Any, Any, None]) -> None:
        self._runtime.tasks[name] = group.create_task(coro, name=name)

    def spawn_extra(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` under the root task group until shutdown (e.g. the demo's summary)."""
        if self._group is None:
            raise RuntimeError("the gateway is not running")
        self._spawn(self._group, name, coro)

    async def _shutdown(self) -> None:
        runtime = self._runtime
        budget = self.settings.supervisor.shutdown_budget_s
        deadline = time.monotonic() + budget
        self._notifier.stopping()
        self._notifier.status("stopping")
        if runtime.supervisor is not None:
            await runtime.supervisor.shutdown(budget / 2)
        others = [
            task
            for name, task in runtime.tasks.items()
            if name not in {"storage.writer", "supervisor"}
        ]
        for task in others:
            task.cancel()
        if others:  # they may still be writing: let them finish before storage closes
            await asyncio.wait(others, timeout=max(0.5, deadline - time.monotonic()) / 2)
        if runtime.database is not None:
            remaining = max(0.5, deadline - time.monotonic())
            try:
                await asyncio.wait_for(runtime.database.close(), remaining)
            except TimeoutError:
                _LOGGER.error("storage did not close within %.1f s", remaining)
        _LOGGER.info("stopped")

    # --- background loops ---------------------------------------------------------------

    async def _maintenance_loop(self, database: Database) -> None:
        interval = self.settings.storage.maintenance_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await database.maintenance()
            except StorageError as exc:
                _LOGGER.warning("storage maintenance failed: %s", exc)

    async def _tick_loop(self) -> None:
        while True:
            self._loop_ticks += 1
            await asyncio.sleep(_LOOP_TICK_S)

    async def _reload_loop(self) -> None:
        while True:
            await self._reload.wait()
            self._reload.clear()
            self._notifier.reloading()
            assert self._runtime.supervisor is not None
            reload = reload_config(
                self.config_path,
                running=self.settings,
                devices=self.devices,
                registry=self.registry,
                environ=self._environ,
                supervisor=self._runtime.supervisor,
                hub=self.hub,
                now=self.clock.utc_now(),
            )
            self.settings, self.devices = reload.settings, reload.devices
            self.last_reload = reload.outcome
            self._notifier.ready()
            self._notifier.status(self._status_line())

    # --- diagnostics --------------------------------------------------------------------

    def _status_line(self) -> str:
        diagnostics = self._runtime.diagnostics
        return "starting" if diagnostics is None else diagnostics.status_line()

    async def status(self) -> dict[str, Any]:
        """Everything ``storegw status`` shows, JSON-ready (:mod:`gateway.diagnostics`)."""
        if self._runtime.diagnostics is None:
            raise RuntimeError("the gateway is not running")
        return await self._runtime.diagnostics.status()

    async def health_snapshot(self) -> HealthSnapshot:
        """The latest-only ``up/health`` message (:meth:`Diagnostics.health_snapshot`)."""
        if self._runtime.diagnostics is None:
            raise RuntimeError("the gateway is not running")
        return await self._runtime.diagnostics.health_snapshot()
