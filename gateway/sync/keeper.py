"""The outbox keeper (task ``outbox.keeper``): TTL expiry, ``buffer.pressure`` and ``storage.full``.

Every ``expiry_interval_s`` it expires each stream's prefix older than that stream's TTL (see
:meth:`~gateway.store.outbox.Outbox.expire`). Whenever the budget sheds or refuses events it
raises ``buffer.pressure`` — a warning while only lossy data is dropped, critical once essential
events are refused — keeps the counts in the active alert's details (``storegw alerts``) and
clears it with the episode's final counts once the buffer has drained below the relief level.

While the database reports a full disk (:attr:`~gateway.store.database.Database.full_since`) it
raises ``storage.full`` (critical). Persisting the alert may itself fail while the disk is full:
it is active in memory meanwhile (``storegw alerts``), and its clear event, which carries the
whole alert, reaches HQ once writes succeed. It is cleared only after a write succeeded (on an
idle store the keeper makes a tiny one), also when it was found active at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from gateway.alerts import Alerts, Severity
from gateway.clock import Clock
from gateway.errors import StorageError
from gateway.store.budget import Shed
from gateway.store.database import Database
from gateway.store.outbox import Outbox

__all__ = ["PRESSURE_ALERT", "STORAGE_FULL_ALERT", "OutboxKeeper"]

_LOGGER = logging.getLogger(__name__)

PRESSURE_ALERT = "buffer.pressure"
STORAGE_FULL_ALERT = "storage.full"

_CALM_TICK_S = 30.0  # between ticks while nothing is shed or refused


class OutboxKeeper:
    def __init__(
        self,
        outbox: Outbox,
        alerts: Alerts,
        clock: Clock,
        *,
        ttl_s: Mapping[str, float],
        expiry_interval_s: float = 60.0,
        tick_s: float = 1.0,
        database: Database | None = None,
    ) -> None:
        self._outbox = outbox
        self._database = database
        self._last_error: str | None = None
        self._alerts = alerts
        self._clock = clock
        self._ttl_s = dict(ttl_s)
        self._expiry_interval_s = expiry_interval_s
        self._tick_s = tick_s
        self._next_expiry = 0.0
        self.expired: dict[str, int] = {}  # per stream, since start

    async def run(self) -> None:
        self._resume_episode()
        if self._database is not None:  # a full disk starting or ending wakes it too
            self._database.on_full_change = self._outbox.pressure_changed.set
        while True:
            # Every tick under pressure (the alert's counts, the relief) or while storage is
            # full; when calm only to re-anchor the byte count and for expiry. Shedding or
            # refusing wakes it at once.
            wait = self._tick_s
            if not self._outbox.pressure.under_pressure and not self._storage_full_pending():
                until_expiry = self._next_expiry - self._clock.monotonic()
                wait = max(wait, min(_CALM_TICK_S, until_expiry))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._outbox.pressure_changed.wait()
            self._outbox.pressure_changed.clear()
            try:
                await self.tick()
            except StorageError as exc:  # the next tick tries again; appends keep working
                if str(exc) != self._last_error:  # once, not every tick of a full disk
                    _LOGGER.warning("outbox keeper: %s", exc)
                self._last_error = str(exc)
            else:
                if self._last_error is not None:
                    _LOGGER.info("outbox keeper: works again")
                self._last_error = None

    async def tick(self) -> None:
        """One round: the storage.full alert, expiry when due, re-anchor the byte count,
        raise/update/clear the pressure alert."""
        await self._report_storage()
        now = self._clock.monotonic()
        if now >= self._next_expiry:
            self._next_expiry = now + self._expiry_interval_s
            await self.expire_now()
        await self._outbox.refresh_usage()
        await self._report_pressure()

    async def expire_now(self) -> None:
        for stream, ttl in sorted(self._ttl_s.items()):
            if stream not in self._outbox.streams:
                continue
            replaced = await self._outbox.expire(stream, ttl)
            if replaced:
                self.expired[stream] = self.expired.get(stream, 0) + replaced
                _LOGGER.warning(
                    "stream %s: %d buffered event(s) older than %.0f s expired (TTL)",
                    stream,
                    replaced,
                    ttl,
                )

    def _storage_full_pending(self) -> bool:
        active = any(alert.key == STORAGE_FULL_ALERT for alert in self._alerts.active())
        return active or (self._database is not None and self._database.full_since is not None)

    async def _report_storage(self) -> None:
        database = self._database
        if database is None:
            return
        active = any(alert.key == STORAGE_FULL_ALERT for alert in self._alerts.active())
        if database.full_since is None and not active:
            return
        if database.full_since is None or database.full_relief_due():
            # Only a write that succeeds tells that the disk has room: on an idle store (or
            # after a restart) nothing else would try one.
            try:
                await database.probe_writes()
            except StorageError:
                if database.full_since is None:
                    return  # refused for another reason: no news about the disk
        since = database.full_since
        if since is None:
            await self._alerts.clear(STORAGE_FULL_ALERT, "writes succeed again")
            return
        if active:
            return
        with contextlib.suppress(StorageError):  # active in memory; HQ learns it with the clear
            await self._alerts.raise_(
                STORAGE_FULL_ALERT,
                Severity.CRITICAL,
                f"database {database.path}: the disk is full, writes are refused "
                f"(free space: {await _free_bytes(database)} bytes)",
                details={"path": str(database.path), "since": since.isoformat()},
            )

    def _resume_episode(self) -> None:
        """After a restart an active pressure alert is cleared once the buffer is relieved."""
        pressure = self._outbox.pressure
        if any(alert.key == PRESSURE_ALERT for alert in self._alerts.active()):
            pressure.worst = pressure.worst or Shed.DETAIL

    async def _report_pressure(self) -> None:
        pressure = self._outbox.pressure
        if pressure.relieved():
            report = pressure.reset()
            await self._alerts.update_details(PRESSURE_ALERT, report)
            await self._alerts.clear(
                PRESSURE_ALERT, f"buffer relieved ({report['used_bytes']} bytes buffered)"
            )
            return
        if pressure.worst is None:
            return
        severity = Severity.CRITICAL if pressure.worst >= Shed.ESSENTIAL else Severity.WARNING
        report = pressure.report()
        raised = await self._alerts.raise_(
            PRESSURE_ALERT,
            severity,
            "outbox byte budget reached: " + pressure.summary(),
            details=report,
        )
        if not raised:
            await self._alerts.update_details(PRESSURE_ALERT, report)


async def _free_bytes(database: Database) -> int | None:
    try:
        return (await database.stats()).free_disk_bytes
    except OSError:
        return None
