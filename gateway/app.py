"""Composition root and lifecycle of the daemon.

``Gateway.run()`` owns everything under one ``asyncio.TaskGroup``::

    start:  claims (the database's lock, the control socket's path: a second daemon on either
            is refused before it touches anything) → storage (open, checks, migrations)
            → storage.writer → supervisor → drivers → control socket serving → READY=1
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
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.alerts import Alerts, Severity
from gateway.clock import Clock, isoformat_utc
from gateway.config import GatewaySettings, load_config
from gateway.control.args import flag_arg, number_arg, optional_text_arg, text_arg
from gateway.control.server import ControlServer
from gateway.drivers.config import ResolvedDevice
from gateway.drivers.contracts import DeviceFamily, LabelDriver
from gateway.drivers.registry import DriverRegistry
from gateway.drivers.supervisor import Supervisor
from gateway.errors import (
    CommandRefusedError,
    ConfigError,
    ConfigIssue,
    ControlError,
    InvalidArgsError,
    ShelfError,
    StorageError,
)
from gateway.hub import ReadingHub
from gateway.labels.bindings import LabelBindings
from gateway.labels.commands import binding_commands, flash_command
from gateway.labels.directory import LabelDirectory
from gateway.labels.pipeline import LabelPipeline
from gateway.prices.book import PriceBook
from gateway.prices.downlink import PriceDownlink, PriceDownlinkSettings
from gateway.shelves.service import ShelfService
from gateway.store import Database
from gateway.store.lock import DatabaseLock
from gateway.store.outbox import Outbox
from gateway.sync.commands import CommandProcessor, builtin_commands
from gateway.sync.health import publish_health
from gateway.sync.inbound import MALFORMED_ALERT, RefusalCounter, expire_refusals
from gateway.sync.keeper import OutboxKeeper
from gateway.sync.link import InboundMessage, MqttLink
from gateway.sync.uplink import Uplink, connect_outbox
from gateway.systemd import SystemdNotifier, WatchdogGate
from gateway.wire.messages import (
    BufferReport,
    DriverReport,
    HealthSnapshot,
    HealthStream,
    LastHqAck,
    LinkReport,
)

__all__ = ["FOUND_EMPTY_ALERT", "STREAMS", "Gateway", "ReloadOutcome"]

#: The outbox streams every gateway has (docs/protocol.md).
STREAMS = ("stock", "dwell", "receipts", "alerts")
#: Raised at a start that found the database file empty; cleared at the next normal start.
FOUND_EMPTY_ALERT = "storage.found_empty"

_LOGGER = logging.getLogger(__name__)

_LOOP_TICK_S = 1.0


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    at: datetime
    ok: bool
    detail: str


@dataclass(slots=True)
class _Runtime:
    """What exists once start-up got far enough; shutdown closes what is there."""

    database: Database | None = None
    outbox: Outbox | None = None
    alerts: Alerts | None = None
    link: MqttLink | None = None
    uplink: Uplink | None = None
    prices: PriceDownlink | None = None
    commands: CommandProcessor | None = None
    malformed: RefusalCounter | None = None
    bindings: LabelBindings | None = None
    labels: LabelPipeline | None = None
    shelves: ShelfService | None = None
    supervisor: Supervisor | None = None
    control: ControlServer | None = None
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
        self.labels = LabelDirectory(self.hub, self.clock)
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
        return self._runtime.bindings

    @property
    def label_pipeline(self) -> LabelPipeline | None:
        return self._runtime.labels

    @property
    def supervisor(self) -> Supervisor | None:
        return self._runtime.supervisor

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
        assert runtime.database is not None
        self._spawn(group, "storage.writer", runtime.database.run())
        outbox_config = self.settings.outbox
        runtime.outbox = Outbox(runtime.database, self.clock, outbox_config.budget())
        await runtime.outbox.open(STREAMS)
        runtime.alerts = Alerts(runtime.database, runtime.outbox, self.clock)
        await runtime.alerts.load()
        await self._report_found_empty(runtime.database, runtime.alerts)
        keeper = OutboxKeeper(
            runtime.outbox,
            runtime.alerts,
            self.clock,
            ttl_s=outbox_config.ttl_s,
            expiry_interval_s=outbox_config.expiry_interval_s,
            database=runtime.database,
        )
        self._spawn(group, "outbox.keeper", keeper.run())
        runtime.bindings = LabelBindings(runtime.database, runtime.outbox, self.clock)
        runtime.prices = await self._price_downlink(
            runtime.database, runtime.outbox, runtime.alerts
        )
        runtime.labels = await self._label_pipeline(
            runtime.database, runtime.outbox, runtime.alerts
        )
        runtime.shelves = ShelfService(
            database=runtime.database,
            outbox=runtime.outbox,
            alerts=runtime.alerts,
            clock=self.clock,
            config=self.settings.shelves,
            scale_devices=[
                device.name for device in self.devices if device.plugin.family is DeviceFamily.SCALE
            ],
            device_up=self._device_up,
            driver=self._live_driver,
        )
        await runtime.shelves.load()
        self.hub.subscribe(runtime.shelves.on_reading)
        self._spawn(group, "shelves", runtime.shelves.run())
        if self.settings.mqtt.enabled:
            self._start_sync(group, runtime.database, runtime.outbox, runtime.alerts)

        runtime.supervisor = Supervisor(
            clock=self.clock, config=self.settings.supervisor, sink=self.hub.publish
        )
        self._spawn(group, "supervisor", runtime.supervisor.run())
        runtime.supervisor.apply(self.devices)
        if runtime.labels is not None:
            self._spawn(group, "labels", runtime.labels.run())

        assert runtime.control is not None  # listening since _claims()
        self._register_control_commands(runtime.control)
        self._spawn(group, "control", runtime.control.serve())

        self._spawn(group, "storage.maintenance", self._maintenance_loop(runtime.database))
        self._spawn(group, "loop.ticker", self._tick_loop())
        self._spawn(group, "config.reloader", self._reload_loop())
        if self._notifier.watchdog_interval() is not None:
            self._spawn(group, "systemd.watchdog", self._watchdog_loop())

    async def _report_found_empty(self, database: Database, alerts: Alerts) -> None:
        """A database file found empty was started anew (a new epoch, logged by the database):
        say so until the next start, and tell HQ through the alerts stream."""
        if not database.found_empty:
            await alerts.clear(
                FOUND_EMPTY_ALERT, f"database opened normally at boot #{database.boot}"
            )
            return
        await alerts.raise_(
            FOUND_EMPTY_ALERT,
            Severity.WARNING,
            f"database {database.path} was found empty (0 bytes) and started anew with epoch "
            f"{database.epoch}: what it held before is gone",
            details={"path": str(database.path), "epoch": database.epoch, "boot": database.boot},
        )

    def _start_sync(
        self, group: asyncio.TaskGroup, database: Database, outbox: Outbox, alerts: Alerts
    ) -> None:
        mqtt = self.settings.mqtt
        store_id = self.settings.store.id
        link, uplink = connect_outbox(
            outbox,
            config=mqtt,
            store_id=store_id,
            boot=database.boot,
            clock=self.clock,
            alerts=alerts,
        )
        self._runtime.link, self._runtime.uplink = link, uplink
        prices = self._runtime.prices
        if prices is not None:
            prices.attach(link)
            self._spawn(group, "prices.downlink", prices.run())
        commands = CommandProcessor(
            database=database,
            clock=self.clock,
            verifier=self.settings.downlink.verifier(),
            store_id=store_id,
            groups=self.settings.downlink.groups,
            alerts=alerts,
        )
        for spec in builtin_commands(
            link=link,
            announce_prices=prices.announce if prices is not None else _nothing_announced,
            describe=self._describe_for_hq,
        ):
            commands.register(spec)
        if self._runtime.bindings is not None:
            for spec in binding_commands(self._runtime.bindings):
                commands.register(spec)
        commands.register(flash_command(self.labels, lambda: self._runtime.supervisor))
        if self._runtime.shelves is not None:
            commands.register(self._runtime.shelves.command())
        commands.attach(link)
        self._runtime.commands = commands
        self._spawn(group, "commands", commands.run())
        # Every down/ message ends in an ack: what no handler takes is counted and alerted.
        malformed = RefusalCounter(
            MALFORMED_ALERT,
            Severity.WARNING,
            "a message from HQ was refused unread",
            alerts=alerts,
            clock=self.clock,
        )

        async def count_refused(topic_filter: str, _message: InboundMessage, reason: str) -> None:
            await malformed.refuse(reason, topic=topic_filter)

        link.on_refused = count_refused
        self._runtime.malformed = malformed
        refusals = [malformed, commands.refusals]
        if prices is not None:
            refusals.append(prices.refusals)
        self._spawn(group, "downlink.refusals", expire_refusals(refusals))
        self._spawn(group, "mqtt.link", link.run())
        self._spawn(group, "uplink", uplink.run())
        self._spawn(
            group,
            "health",
            publish_health(link, self.health_snapshot, interval_s=mqtt.health_interval_s),
        )

    def _device_up(self, name: str) -> bool:
        supervisor = self._runtime.supervisor
        return supervisor is None or supervisor.driver(name) is not None

    def _live_driver(self, name: str) -> object | None:
        supervisor = self._runtime.supervisor
        return None if supervisor is None else supervisor.driver(name)

    async def _describe_for_hq(self) -> dict[str, Any]:
        runtime = self._runtime
        return {
            "store": self.settings.store.id,
            "version": __version__,
            "boot": runtime.database.boot if runtime.database is not None else None,
            "uptime_s": round(self.clock.monotonic() - self._started_mono, 1),
            "clock_synchronized": self.clock.is_synchronized(),
            "price_version": runtime.prices.head if runtime.prices is not None else None,
        }

    async def _label_pipeline(
        self, database: Database, outbox: Outbox, alerts: Alerts
    ) -> LabelPipeline | None:
        """The label pipeline, hooked to the price downlink, the bindings and the readings."""
        runtime = self._runtime
        try:
            pipeline = LabelPipeline(
                database=database,
                outbox=outbox,
                alerts=alerts,
                clock=self.clock,
                config=self.settings.labels,
                drivers=self._label_drivers,
                timezone=self.settings.store.timezone,
                locale=self.settings.store.locale,
                was_price=self.settings.downlink.was_price,
            )
        except FileNotFoundError as exc:
            _LOGGER.error("label pipeline disabled: %s", exc)
            return None
        await pipeline.load()
        if runtime.prices is not None:
            runtime.prices.on_applied = pipeline.on_prices_applied
        if runtime.bindings is not None:
            runtime.bindings.on_change = lambda label: pipeline.on_bindings_changed([label])
        self.hub.subscribe(pipeline.on_reading)
        return pipeline

    def _label_drivers(self) -> dict[str, LabelDriver | None]:
        """Every configured ESL device → its live driver (None while it is not running)."""
        supervisor = self._runtime.supervisor
        drivers: dict[str, LabelDriver | None] = {}
        for device in self.devices:
            if device.plugin.family is not DeviceFamily.ESL:
                continue
            driver = supervisor.driver(device.name) if supervisor is not None else None
            drivers[device.name] = driver if isinstance(driver, LabelDriver) else None
        return drivers

    async def _price_downlink(
        self, database: Database, outbox: Outbox, alerts: Alerts
    ) -> PriceDownlink:
        config = self.settings.downlink
        verifier = config.verifier()
        if not verifier.signed:
            _LOGGER.warning(
                "no HQ public keys configured ([downlink] hq_public_keys): price batches and "
                "commands are accepted UNSIGNED — anyone who can publish to the broker can "
                "change prices"
            )
        downlink = PriceDownlink(
            database=database,
            outbox=outbox,
            alerts=alerts,
            clock=self.clock,
            verifier=verifier,
            store_id=self.settings.store.id,
            settings=PriceDownlinkSettings(
                groups=tuple(config.groups),
                parts_timeout_s=config.parts_timeout_s,
                resync_interval_s=config.resync_interval_s,
                history_days=config.price_history_days,
            ),
        )
        await downlink.load()
        return downlink

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

    async def _watchdog_loop(self) -> None:
        interval = self._notifier.watchdog_interval()
        assert interval is not None
        runtime = self._runtime
        database, supervisor = runtime.database, runtime.supervisor
        assert database is not None
        assert supervisor is not None
        gate = WatchdogGate(
            {
                "event loop": lambda: self._loop_ticks,
                "storage writer": lambda: database.writer_progress,
                "supervisor": lambda: supervisor.progress,
            }
        )
        reported: list[str] = []
        while True:
            await asyncio.sleep(interval / 2)
            if gate.should_ping():
                self._notifier.watchdog()
                if reported:
                    _LOGGER.info("all components progressing again")
                    reported = []
            else:
                stalled = gate.stalled()
                if stalled != reported:
                    _LOGGER.error("withholding watchdog ping: no progress from %s", stalled)
                    self._notifier.status(f"stalled: {', '.join(stalled)}")
                    reported = stalled

    async def _reload_loop(self) -> None:
        while True:
            await self._reload.wait()
            self._reload.clear()
            self._notifier.reloading()
            self.last_reload = self._reload_config()
            self._notifier.ready()
            self._notifier.status(self._status_line())

    def _reload_config(self) -> ReloadOutcome:
        now = self.clock.utc_now()
        try:
            settings, devices = load_config(
                self.config_path, registry=self.registry, environ=self._environ
            )
        except ConfigError as exc:
            _LOGGER.error("reload refused, keeping the running configuration: %s", exc)
            return ReloadOutcome(now, ok=False, detail=str(exc))
        changed_sections = [
            name
            for name in GatewaySettings.model_fields
            if name not in {"devices", "logging"}
            and getattr(settings, name) != getattr(self.settings, name)
        ]
        if changed_sections:
            _LOGGER.warning(
                "reload: changes to [%s] take effect at the next restart",
                "], [".join(changed_sections),
            )
        if settings.logging != self.settings.logging:
            root = logging.getLogger()
            root.setLevel(settings.logging.level)
            for name, level in settings.logging.levels.items():
                logging.getLogger(name).setLevel(level)
        assert self._runtime.supervisor is not None
        applied = self._runtime.supervisor.apply(devices)
        for name in applied.stopped:
            self.hub.forget(name)
        self.settings = settings.model_copy(
            update={name: getattr(self.settings, name) for name in changed_sections}
        )
        self.devices = devices
        detail = (
            f"started {list(applied.started)}, restarted {list(applied.restarted)}, "
            f"stopped {list(applied.stopped)}, unchanged {len(applied.unchanged)}"
        )
        _LOGGER.info("configuration reloaded: %s", detail)
        return ReloadOutcome(now, ok=True, detail=detail)

    # --- diagnostics --------------------------------------------------------------------

    def _status_line(self) -> str:
        supervisor = self._runtime.supervisor
        if supervisor is None:
            return "starting"
        statuses = supervisor.statuses()
        healthy = sum(1 for status in statuses if status.health.value == "running")
        clock = "clock synced" if self.clock.is_synchronized() else "clock NOT synced"
        return f"{healthy}/{len(statuses)} drivers running, {clock}"

    def _register_control_commands(self, control: ControlServer) -> None:
        control.register("status", self._status_command)
        control.register("devices", self._devices_command)
        control.register("alerts", self._alerts_command)
        control.register("prices", self._prices_command)
        control.register("label.preview", self._label_preview_command)
        control.register("label.bind", self._label_bind_command)
        control.register("label.unbind", self._label_unbind_command)
        control.register("label.flash", self._label_flash_command)
        control.register("label.seed", self._label_seed_command)
        control.register("labels", self._labels_command)
        control.register("label.show", self._label_show_command)
        control.register("slots", self._slots_command)
        control.register("scale.read", self._scale_read_command)
        control.register("scale.tare", self._scale_tare_command)
        control.register("scale.calibrate", self._scale_calibrate_command)

    async def status(self) -> dict[str, Any]:
        """Everything ``storegw status`` shows, JSON-ready."""
        runtime = self._runtime
        storage: dict[str, Any] | None = None
        if runtime.database is not None:
            stats = await runtime.database.stats()
            storage = stats.as_dict()
        now_mono = self.clock.monotonic()
        mqtt = self.settings.mqtt
        outbox = (
            [state.as_dict() for state in await runtime.outbox.states()]
            if runtime.outbox is not None
            else []
        )
        link = runtime.link.stats.as_dict() if runtime.link is not None else None
        return {
            "store": {"id": self.settings.store.id, "timezone": self.settings.store.timezone},
            "version": __version__,
            "pid": os.getpid(),
            "started_at": isoformat_utc(self._started_at),
            "uptime_s": round(now_mono - self._started_mono, 1),
            "clock": {
                "synchronized": self.clock.is_synchronized(),
                "source": self.settings.clock.sync.value,
                "utc_now": isoformat_utc(self.clock.utc_now()),
            },
            "config": {
                "path": str(self.config_path),
                "last_reload": None
                if self.last_reload is None
                else {
                    "at": isoformat_utc(self.last_reload.at),
                    "ok": self.last_reload.ok,
                    "detail": self.last_reload.detail,
                },
            },
            "mqtt": {
                "enabled": mqtt.enabled,
                "host": mqtt.host,
                "port": mqtt.port,
                "transport": "tls" if mqtt.tls else "PLAINTEXT",
                "custody": mqtt.custody,
                "link": link,
                "last_hq_ack": runtime.uplink.last_ack if runtime.uplink else None,
                "parked_streams": dict(runtime.uplink.parked) if runtime.uplink else {},
                "malformed": runtime.malformed.status() if runtime.malformed else None,
            },
            "outbox": outbox,
            "buffer": runtime.outbox.pressure.report() if runtime.outbox is not None else None,
            "downlink": runtime.prices.status() if runtime.prices is not None else None,
            "commands": runtime.commands.status() if runtime.commands is not None else None,
            "alerts_active": len(runtime.alerts.active()) if runtime.alerts else 0,
            "labels": await runtime.labels.summary() if runtime.labels is not None else None,
            "drivers": [
                status.as_dict()
                for status in (runtime.supervisor.statuses() if runtime.supervisor else ())
            ],
            "readings": self.hub.summaries(now_mono),
            "slots": runtime.shelves.listing() if runtime.shelves is not None else [],
            "storage": storage,
        }

    async def health_snapshot(self) -> HealthSnapshot:
        """The latest-only ``up/health`` message."""
        status = await self.status()
        storage = status["storage"] or {}
        buffer, ack, link = status["buffer"], status["mqtt"]["last_hq_ack"], status["mqtt"]["link"]
        return HealthSnapshot(
            v=1,
            type="health",
            store=self.settings.store.id,
            boot=storage.get("boot"),
            sent_at=isoformat_utc(self.clock.utc_now()),
            clock_synchronized=status["clock"]["synchronized"],
            streams=[
                HealthStream(
                    stream=s["stream"],
                    depth=s["depth"],
                    bytes=s["bytes"],
                    oldest_ts=s["oldest_ts"],
                    acked_seq=s["acked_seq"],
                )
                for s in status["outbox"]
            ],
            buffer=None if buffer is None else BufferReport(**buffer),
            last_hq_ack=None if ack is None else LastHqAck(**ack),
            disk_free_bytes=storage.get("free_disk_bytes"),
            drivers=[
                DriverReport(
                    **{k: d[k] for k in ("name", "family", "health", "last_error", "restarts")}
                )
                for d in status["drivers"]
            ],
            link=None if link is None else LinkReport(**link),
        )

    async def _prices_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        runtime = self._runtime
        sku = optional_text_arg(args, "sku")
        if runtime.database is None:
            return {"prices": [], "promotions": [], "head_version": 0}
        listing = await PriceBook(
            runtime.database, was_price=self.settings.downlink.was_price
        ).listing(self.clock.utc_now(), sku)
        if runtime.prices is not None:
            listing["downlink"] = runtime.prices.status()
        return listing

    async def _label_bind_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        bindings = self._require_bindings()
        label, sku = text_arg(args, "label"), text_arg(args, "sku")
        try:
            binding = await bindings.bind(label, sku, "local")
        except CommandRefusedError as exc:
            raise InvalidArgsError(str(exc)) from exc
        reply = binding.as_dict()
        if self._runtime.labels is not None:  # a failed job for this SKU is tried again now
            reply["job_state"] = await self._runtime.labels.retry_failed(
                binding.label, binding.sku, "retried by a technician (storegw label bind)"
            )
        return reply

    async def _label_unbind_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        removed = await self._require_bindings().unbind(text_arg(args, "label"), "local")
        return {"removed": removed.as_dict() if removed is not None else None}

    async def _label_seed_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        from gateway.labels.bindings import check_binding_rows

        rows = args.get("rows")
        if not isinstance(rows, list) or not all(
            isinstance(row, list) and len(row) == 2 for row in rows
        ):
            raise InvalidArgsError("rows: a list of [label, sku] pairs")
        try:  # the daemon checks again: the socket is not only the CLI's
            checked = check_binding_rows([{"label": label, "sku": sku} for label, sku in rows])
        except ValueError as exc:
            raise InvalidArgsError(f"invalid seed rows: {exc}") from exc
        return (await self._require_bindings().seed(checked)).as_dict()

    async def _label_flash_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        label, seconds = text_arg(args, "label"), number_arg(args, "seconds", 10.0)
        try:
            return dict(await self.labels.flash(self._runtime.supervisor, label, seconds))
        except CommandRefusedError as exc:
            raise InvalidArgsError(str(exc)) from exc

    def _require_labels(self) -> LabelPipeline:
        if self._runtime.labels is None:
            raise InvalidArgsError("the label pipeline is not running")
        return self._runtime.labels

    async def _labels_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        state = optional_text_arg(args, "state")
        try:
            return await self._require_labels().listing(state)
        except ValueError as exc:
            raise InvalidArgsError(str(exc)) from exc

    async def _label_show_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        label = text_arg(args, "label")
        try:
            return await self._require_labels().show(label)
        except ValueError as exc:
            raise InvalidArgsError(str(exc)) from exc

    def _require_bindings(self) -> LabelBindings:
        if self._runtime.bindings is None:
            raise InvalidArgsError("storage is not open yet")
        return self._runtime.bindings

    async def _label_preview_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Render what a label for ``sku`` shows now (PNG, base64) on ``model`` (WxH:palette):
        the pipeline's face and renderer at its policy instant, as the shelf gets it."""
        from gateway.labels.preview import preview_label

        sku, model = text_arg(args, "sku"), optional_text_arg(args, "model") or "296x128:bwr"
        pipeline = self._require_labels()
        at, _synced = pipeline.policy_instant()
        try:
            return await preview_label(
                pipeline.book,
                pipeline,
                sku=sku,
                model=model,
                at=at,
            )
        except ValueError as exc:
            raise InvalidArgsError(str(exc)) from exc

    def _require_shelves(self) -> ShelfService:
        if self._runtime.shelves is None:
            raise InvalidArgsError("the shelves service is not running yet")
        return self._runtime.shelves

    async def _slots_command(self, _args: Mapping[str, Any]) -> dict[str, Any]:
        return {"slots": self._require_shelves().listing()}

    async def _scale_read_command(self, args: Mapping[str, Any]) -> object:
        slot, follow = text_arg(args, "slot"), flag_arg(args, "follow")
        shelves = self._require_shelves()
        try:
            current = shelves.reading(slot)
        except ShelfError as exc:
            raise InvalidArgsError(str(exc)) from exc
        return shelves.follow(slot) if follow else current

    async def _scale_tare_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        slot, device, force = (
            text_arg(args, "slot"),
            flag_arg(args, "device"),
            flag_arg(args, "force"),
        )
        try:
            return await self._require_shelves().tare(slot, device=device, force=force)
        except ShelfError as exc:
            raise InvalidArgsError(str(exc)) from exc

    async def _scale_calibrate_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        slot, known = text_arg(args, "slot"), number_arg(args, "known_grams")
        try:
            return await self._require_shelves().calibrate(slot, known)
        except ShelfError as exc:
            raise InvalidArgsError(str(exc)) from exc

    async def _alerts_command(self, _args: Mapping[str, Any]) -> dict[str, Any]:
        alerts = self._runtime.alerts
        return {"active": [alert.as_dict() for alert in (alerts.active() if alerts else ())]}

    async def _status_command(self, _args: Mapping[str, Any]) -> dict[str, Any]:
        return await self.status()

    async def _devices_command(self, _args: Mapping[str, Any]) -> dict[str, Any]:
        runtime = self._runtime
        health = {
            status.name: status.as_dict()
            for status in (runtime.supervisor.statuses() if runtime.supervisor else ())
        }
        configured = []
        for device in self.settings.devices:
            resolved = next((d for d in self.devices if d.name == device.name), None)
            configured.append(
                {
                    "name": device.name,
                    "driver": device.driver,
                    "family": resolved.plugin.family.value if resolved else None,
                    "enabled": device.enabled,
                    "silence_limit_s": resolved.silence_limit if resolved else None,
                    "health": health.get(device.name, {}).get("health", "disabled"),
                    "last_error": health.get(device.name, {}).get("last_error"),
                }
            )
        return {"devices": configured, "known_drivers": list(self.registry.names())}


async def _nothing_announced() -> dict[str, Any] | None:
    return None
