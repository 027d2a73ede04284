"""Check-ins shortened for scheduled flips: the scheduler's helper for ESL drivers that
implement :class:`~gateway.drivers.contracts.PreparesFlips` (an access point whose tags sleep
up to ``maxsleep`` between check-ins and get new content only when they wake).

A flip's *window* runs from its instant until the radio should have delivered it (its labels
at the driver's ``labels_per_minute``) plus ``flip_tolerance_s``. The driver is asked to
shorten its labels' check-ins once the flip is nearer than its current check-in interval (plus
a minute: the scheduler wakes at least every 30 s), so every label has woken and learnt the
short interval by the flip; after the last window ends it is asked to put the interval back.
A driver that refuses or cannot be reached raises ``label.flip_checkins`` (the flip itself goes
ahead as planned, its labels may then show it up to one check-in interval later) and is asked
again at the next pass; the alert clears once every driver did what it was asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from gateway.alerts import Severity
from gateway.clock import isoformat_utc
from gateway.drivers.contracts import PreparesFlips
from gateway.labels.context import StageContext
from gateway.labels.job_store import Row

__all__ = ["FLIP_CHECKINS_ALERT", "FlipCheckins"]

FLIP_CHECKINS_ALERT = "label.flip_checkins"
_LEAD_MARGIN_S = 60.0


class FlipCheckins:
    def __init__(self, context: StageContext) -> None:
        self._context = context
        self._windows: dict[str, datetime] = {}  # device → end of the window it prepared
        self._unprepared: frozenset[str] = frozenset()

    @property
    def windows(self) -> dict[str, datetime]:
        """Devices with shortened check-ins, and until when."""
        return dict(self._windows)

    @property
    def unprepared(self) -> frozenset[str]:
        """Devices whose check-ins could not be shortened for a coming flip (last pass)."""
        return self._unprepared

    async def update(self, now: datetime, flips: Sequence[Row]) -> None:
        """Prepare the devices whose next flip (``flips``: due_at, device, n per instant and
        device, by due time) is within their check-in interval; put back those whose windows
        ended."""
        drivers = self._context.drivers()
        wanted: dict[str, tuple[datetime, datetime]] = {}
        for row in flips:
            device = row["device"]
            driver = drivers.get(device) if device is not None else None
            if not isinstance(driver, PreparesFlips):
                continue
            due = datetime.fromisoformat(row["due_at"])
            if (due - now).total_seconds() > driver.checkin_interval_s + _LEAD_MARGIN_S:
                continue
            rate = driver.labels_per_minute
            radio_s = int(row["n"]) / rate * 60 if rate > 0 else 0.0
            end = due + timedelta(seconds=radio_s + self._context.config.flip_tolerance_s)
            start, until = wanted.get(device, (due, end))
            wanted[device] = (min(start, due), max(until, end))
        problems: dict[str, str] = {}
        for device, (start, end) in wanted.items():
            if device in self._windows and self._windows[device] >= end:
                continue
            driver = drivers[device]
            assert isinstance(driver, PreparesFlips)
            try:
                await driver.prepare_flip(start, end)
            except Exception as exc:  # noqa: BLE001 - any refusal is alerted and retried
                problems[device] = (
                    f"check-ins not shortened for the flip at {isoformat_utc(start)} "
                    f"({type(exc).__name__}: {exc}); the flip goes ahead, its labels may "
                    f"show it up to {driver.checkin_interval_s / 60:.0f} min late"
                )
                continue
            self._windows[device] = max(end, self._windows.get(device, end))
        self._unprepared = frozenset(device for device in problems if device in wanted)
        for device, end in list(self._windows.items()):
            if device in wanted or now < end:
                continue
            driver = drivers.get(device)
            if not isinstance(driver, PreparesFlips):
                problems[device] = "check-ins not put back yet: the driver is not running"
                continue
            try:
                await driver.restore_checkins()
            except Exception as exc:  # noqa: BLE001 - any refusal is alerted and retried
                problems[device] = (
                    f"check-ins not put back after the flip ({type(exc).__name__}: {exc}); "
                    "its labels keep checking in often (battery)"
                )
                continue
            del self._windows[device]
        await self._alert(problems)

    async def _alert(self, problems: dict[str, str]) -> None:
        alerts = self._context.alerts
        if alerts is None:
            return
        if not problems:
            await alerts.clear(FLIP_CHECKINS_ALERT, "check-ins as the flips need them")
            return
        device, problem = min(problems.items())
        await alerts.raise_(
            FLIP_CHECKINS_ALERT,
            Severity.WARNING,
            f"{device}: {problem}",
            details={"devices": problems},
        )
