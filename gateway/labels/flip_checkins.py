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

Each window is kept in SQLite (:mod:`~gateway.labels.flip_windows`) with its end and the
restore token the driver's first ``prepare_flip`` returned (the settings from before it), so a
gateway restarted within a window — or after it ended — puts back the device's own settings
once its driver runs again. A token that cannot be read any more is handed over as ``{}`` (the
driver puts back its default); that, or a driver saying it put back something else than the
token names, raises ``label.flip_checkins_default:{device}`` until a later window of that
device is put back as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from gateway.alerts import Severity
from gateway.clock import isoformat_utc
from gateway.drivers.contracts import LabelDriver, PreparesFlips
from gateway.labels.context import StageContext
from gateway.labels.flip_windows import FlipWindow, FlipWindowStore, decode_token, encode_token
from gateway.labels.job_store import Row

__all__ = ["FLIP_CHECKINS_ALERT", "FLIP_DEFAULT_ALERT", "FlipCheckins"]

_LOGGER = logging.getLogger(__name__)

FLIP_CHECKINS_ALERT = "label.flip_checkins"
FLIP_DEFAULT_ALERT = "label.flip_checkins_default:"
_LEAD_MARGIN_S = 60.0


class FlipCheckins:
    def __init__(self, context: StageContext, store: FlipWindowStore) -> None:
        self._context = context
        self._store = store
        self._windows: dict[str, FlipWindow] = {}  # device → the window it prepared
        self._unprepared: frozenset[str] = frozenset()
        self._defaulted: set[str] = set()  # devices with FLIP_DEFAULT_ALERT raised
        self._loaded_at = context.clock.monotonic()

    async def load(self) -> None:
        """The windows open when the gateway stopped (closed at the next pass once ended)."""
        self._windows = {window.device: window for window in await self._store.load()}
        self._loaded_at = self._context.clock.monotonic()
        alerts = self._context.alerts
        self._defaulted = {
            alert.key.removeprefix(FLIP_DEFAULT_ALERT)
            for alert in (alerts.active() if alerts else ())
            if alert.key.startswith(FLIP_DEFAULT_ALERT)
        }

    @property
    def windows(self) -> dict[str, datetime]:
        """Devices with shortened check-ins, and until when."""
        return {device: window.end for device, window in self._windows.items()}

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
            window = self._windows.get(device)
            if window is not None and window.end >= end:
                continue
            driver = drivers[device]
            assert isinstance(driver, PreparesFlips)
            try:
                token = await driver.prepare_flip(start, end)
            except Exception as exc:  # noqa: BLE001 - any refusal is alerted and retried
                problems[device] = (
                    f"check-ins not shortened for the flip at {isoformat_utc(start)} "
                    f"({type(exc).__name__}: {exc}); the flip goes ahead, its labels may "
                    f"show it up to {driver.checkin_interval_s / 60:.0f} min late"
                )
                continue
            if window is None:
                window = FlipWindow(device, end, encode_token(token))
            else:  # a longer window: the token from before the first prepare stays
                window = FlipWindow(device, end, window.token or encode_token(token))
            await self._store.open(window, now)
            self._windows[device] = window
        self._unprepared = frozenset(device for device in problems if device in wanted)
        for device, window in list(self._windows.items()):
            if device in wanted or now < window.end:
                continue
            if (problem := await self._close(window, drivers)) is not None:
                problems[device] = problem
        await self._alert(problems)

    async def _close(
        self, window: FlipWindow, drivers: Mapping[str, LabelDriver | None]
    ) -> str | None:
        """Put back the device's check-ins with its window's token; the problem, if any."""
        device = window.device
        driver = drivers.get(device)
        if device not in drivers or (driver is not None and not isinstance(driver, PreparesFlips)):
            _LOGGER.warning(
                "%s: flip window forgotten, its check-ins not put back: the device is no longer "
                "configured with a driver that can",
                device,
            )
            await self._forget(device)
            return None
        if not isinstance(driver, PreparesFlips):
            if self._context.clock.monotonic() - self._loaded_at < _LEAD_MARGIN_S:
                return None  # the gateway is starting: its driver may not be up yet
            return "check-ins not put back yet: the driver is not running"
        unreadable, token = None, None
        if window.token is not None:
            decoded = decode_token(window.token)
            if isinstance(decoded, str):
                _LOGGER.error(
                    "%s: the flip window's restore token is unreadable: %s", device, decoded
                )
                unreadable, token = decoded, {}  # {}: the driver puts back its default
            else:
                token = decoded
        try:
            if token is None:
                instead = await driver.restore_checkins()
            else:
                instead = await driver.restore_checkins(token)
        except Exception as exc:  # noqa: BLE001 - any refusal is alerted and retried
            return (
                f"check-ins not put back after the flip ({type(exc).__name__}: {exc}); "
                "its labels keep checking in often (battery)"
            )
        await self._forget(device)
        await self._note_restored(window, instead, unreadable)
        return None

    async def _forget(self, device: str) -> None:
        await self._store.close(device)
        del self._windows[device]

    async def _note_restored(
        self, window: FlipWindow, instead: str | None, unreadable: str | None
    ) -> None:
        """Alert when the check-ins were not put back as they were before the window."""
        alerts, device = self._context.alerts, window.device
        if alerts is None:
            return
        if instead is None and unreadable is None:
            if device in self._defaulted:
                self._defaulted.discard(device)
                await alerts.clear(FLIP_DEFAULT_ALERT + device, "check-ins put back as they were")
            return
        what = []
        if unreadable is not None:
            what.append(
                f"the restore token stored for the flip window that ended at "
                f"{isoformat_utc(window.end)} is unreadable ({unreadable})"
            )
        what.append(instead or "the driver was asked to put back its default")
        self._defaulted.add(device)
        await alerts.raise_(
            FLIP_DEFAULT_ALERT + device,
            Severity.WARNING,
            f"{device}: {'; '.join(what)}: check its check-in setting",
            details={"device": device, "unreadable": unreadable, "put_back": instead},
        )

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
