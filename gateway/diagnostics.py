"""The daemon's own answers on the control socket: ``status`` (the daemon's blocks — store,
process, clock, configuration, MQTT, outbox, commands, alerts, drivers, readings, storage —
followed by each feature's block), ``devices`` and ``alerts``; what HQ's ``ping`` says about
the store; and the ``storage.found_empty`` report at start.

They are the wiring's, not a feature's: they read the shared services and the configuration
as a whole. ``storegw status`` renders the result (:mod:`gateway.cli.diagnostics`); the
``up/health`` snapshot is cut from it (:meth:`Diagnostics.health_snapshot`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from gateway import __version__
from gateway.alerts import Alerts, Severity
from gateway.clock import Clock, isoformat_utc
from gateway.config import GatewaySettings
from gateway.control.server import Handler
from gateway.drivers.config import ResolvedDevice
from gateway.drivers.registry import DriverRegistry
from gateway.drivers.supervisor import Supervisor
from gateway.feature import Feature
from gateway.hub import ReadingHub
from gateway.prices.feature import PricesFeature
from gateway.reload import ReloadOutcome
from gateway.store.database import Database
from gateway.store.outbox import Outbox
from gateway.sync.connection import HqConnection
from gateway.wire.messages import (
    BufferReport,
    DriverReport,
    HealthSnapshot,
    HealthStream,
    LastHqAck,
    LinkReport,
)

__all__ = ["FOUND_EMPTY_ALERT", "Configured", "Diagnostics", "report_found_empty"]

#: Raised at a start that found the database file empty; cleared at the next normal start.
FOUND_EMPTY_ALERT = "storage.found_empty"


class Configured(Protocol):
    """The daemon's configuration as it is now (a reload replaces it)."""

    @property
    def config_path(self) -> Path: ...

    @property
    def settings(self) -> GatewaySettings: ...

    @property
    def devices(self) -> tuple[ResolvedDevice, ...]: ...

    @property
    def last_reload(self) -> ReloadOutcome | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnostics:
    """Built once the daemon's parts exist; answers ``status``, ``devices`` and ``alerts``."""

    daemon: Configured
    clock: Clock
    started_at: datetime
    started_mono: float
    database: Database
    outbox: Outbox
    alerts: Alerts
    supervisor: Supervisor
    hub: ReadingHub
    registry: DriverRegistry
    connection: HqConnection | None
    prices: PricesFeature
    features: Sequence[Feature]

    async def health_snapshot(self) -> HealthSnapshot:
        """The latest-only ``up/health`` message, cut from :meth:`status`."""
        status = await self.status()
        storage = status["storage"] or {}
        buffer, ack, link = status["buffer"], status["mqtt"]["last_hq_ack"], status["mqtt"]["link"]
        return HealthSnapshot(
            v=1,
            type="health",
            store=self.daemon.settings.store.id,
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

    def control_handlers(self) -> Mapping[str, Handler]:
        return {
            "status": self._status_command,
            "devices": self._devices_command,
            "alerts": self._alerts_command,
        }

    async def status(self) -> dict[str, Any]:
        """Everything ``storegw status`` shows, JSON-ready."""
        settings, last_reload = self.daemon.settings, self.daemon.last_reload
        mqtt = settings.mqtt
        connection = (
            self.connection.status()
            if self.connection is not None
            else {"link": None, "last_hq_ack": None, "parked_streams": {}, "malformed": None}
        )
        status: dict[str, Any] = {
            "store": {"id": settings.store.id, "timezone": settings.store.timezone},
            "version": __version__,
            "pid": os.getpid(),
            "started_at": isoformat_utc(self.started_at),
            "uptime_s": round(self.clock.monotonic() - self.started_mono, 1),
            "clock": {
                "synchronized": self.clock.is_synchronized(),
                "source": settings.clock.sync.value,
                "utc_now": isoformat_utc(self.clock.utc_now()),
            },
            "config": {
                "path": str(self.daemon.config_path),
                "last_reload": None
                if last_reload is None
                else {
                    "at": isoformat_utc(last_reload.at),
                    "ok": last_reload.ok,
                    "detail": last_reload.detail,
                },
            },
            "mqtt": {
                "enabled": mqtt.enabled,
                "host": mqtt.host,
                "port": mqtt.port,
                "transport": "tls" if mqtt.tls else "PLAINTEXT",
                "custody": mqtt.custody,
                **connection,
            },
            "outbox": [state.as_dict() for state in await self.outbox.states()],
            "buffer": self.outbox.pressure.report(),
            "commands": self.connection.commands.status() if self.connection else None,
            "alerts_active": len(self.alerts.active()),
            "drivers": [status.as_dict() for status in self.supervisor.statuses()],
            "readings": self.hub.summaries(self.clock.monotonic()),
            "storage": (await self.database.stats()).as_dict(),
        }
        for feature in self.features:
            status |= await feature.status()
        return status

    def status_line(self) -> str:
        """One line for ``systemctl status``."""
        statuses = self.supervisor.statuses()
        healthy = sum(1 for status in statuses if status.health.value == "running")
        clock = "clock synced" if self.clock.is_synchronized() else "clock NOT synced"
        return f"{healthy}/{len(statuses)} drivers running, {clock}"

    async def describe(self) -> dict[str, Any]:
        """Who and how this store is: HQ's ``ping`` answers with it."""
        return {
            "store": self.daemon.settings.store.id,
            "version": __version__,
            "boot": self.database.boot,
            "uptime_s": round(self.clock.monotonic() - self.started_mono, 1),
            "clock_synchronized": self.clock.is_synchronized(),
            "price_version": self.prices.downlink.head,
        }

    async def _status_command(self, _args: Mapping[str, Any]) -> dict[str, Any]:
        return await self.status()

    async def _alerts_command(self, _args: Mapping[str, Any]) -> dict[str, Any]:
        return {"active": [alert.as_dict() for alert in self.alerts.active()]}

    async def _devices_command(self, _args: Mapping[str, Any]) -> dict[str, Any]:
        health = {status.name: status.as_dict() for status in self.supervisor.statuses()}
        resolved = {device.name: device for device in self.daemon.devices}
        configured = []
        for device in self.daemon.settings.devices:
            found = resolved.get(device.name)
            configured.append(
                {
                    "name": device.name,
                    "driver": device.driver,
                    "family": found.plugin.family.value if found else None,
                    "enabled": device.enabled,
                    "silence_limit_s": found.silence_limit if found else None,
                    "health": health.get(device.name, {}).get("health", "disabled"),
                    "last_error": health.get(device.name, {}).get("last_error"),
                }
            )
        return {"devices": configured, "known_drivers": list(self.registry.names())}


async def report_found_empty(database: Database, alerts: Alerts) -> None:
    """At start: a database file found empty was started anew (a new epoch, logged by the
    database): say so until the next start, and tell HQ through the alerts stream."""
    if not database.found_empty:
        await alerts.clear(FOUND_EMPTY_ALERT, f"database opened normally at boot #{database.boot}")
        return
    await alerts.raise_(
        FOUND_EMPTY_ALERT,
        Severity.WARNING,
        f"database {database.path} was found empty (0 bytes) and started anew with epoch "
        f"{database.epoch}: what it held before is gone",
        details={"path": str(database.path), "epoch": database.epoch, "boot": database.boot},
    )
