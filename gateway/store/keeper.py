"""The outbox keeper (task ``outbox.keeper``): TTL expiry and the ``buffer.pressure`` alert.

Every ``expiry_interval_s`` it expires each stream's prefix older than that stream's TTL (see
:meth:`~gateway.store.outbox.Outbox.expire`). Whenever the budget sheds or refuses events it
raises ``buffer.pressure`` — a warning while only lossy data is dropped, critical once essential
events are refused — keeps the counts in the active alert's details (``storegw alerts``) and
clears it with the episode's final counts once the buffer has drained below the relief level.
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
from gateway.store.outbox import Outbox

__all__ = ["PRESSURE_ALERT", "OutboxKeeper"]

_LOGGER = logging.getLogger(__name__)

PRESSURE_ALERT = "buffer.pressure"

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
    ) -> None:
        self._outbox = outbox
        self._alerts = alerts
        self._clock = clock
        self._ttl_s = dict(ttl_s)
        self._expiry_interval_s = expiry_interval_s
        self._tick_s = tick_s
        self._next_expiry = 0.0
        self.expired: dict[str, int] = {}  # per stream, since start

    async def run(self) -> None:
        self._resume_episode()
        while True:
            # Every tick under pressure (the alert's counts, the relief); when calm only to
            # re-anchor the byte count and for expiry. Shedding or refusing wakes it at once.
            wait = self._tick_s
            if not self._outbox.pressure.under_pressure:
                until_expiry = self._next_expiry - self._clock.monotonic()
                wait = max(wait, min(_CALM_TICK_S, until_expiry))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._outbox.pressure_changed.wait()
            self._outbox.pressure_changed.clear()
            try:
                await self.tick()
            except StorageError as exc:  # the next tick tries again; appends keep working
                _LOGGER.warning("outbox keeper: %s", exc)

    async def tick(self) -> None:
        """One round: expiry when due, re-anchor the byte count, raise/update/clear the alert."""
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
