"""One alert model for every feature: keyed, de-duplicated while active, raised and cleared.

A key names the condition and its subject (``stock.low:slot-12``, ``uplink.refused:stock``).
Raising an active key again is no new alert (no event) unless its severity changed, but it
keeps the alert current: its message and details become the ones given and ``updated_at``
moves (a running count stays true in ``storegw alerts`` and across a restart). Clearing an
inactive key changes nothing. Raising, escalating and clearing become events on the ``alerts``
outbox stream (a clear carries the final details), and the active set lives in SQLite so a
restart neither repeats nor forgets an alert.

:class:`AlertBook` is the sans-IO core; :class:`Alerts` persists it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from gateway.clock import Clock, isoformat_utc
from gateway.store.database import Database
from gateway.store.outbox import Outbox
from gateway.wire.alerts import AlertCleared, AlertRaised, SeverityName

__all__ = ["Alert", "AlertBook", "AlertChange", "Alerts", "Severity"]

_LOGGER = logging.getLogger(__name__)


_UPDATED = "alert.updated"
_UPSERT_ACTIVE = (
    "INSERT INTO alerts_active (key, severity, message, details, raised_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET severity = excluded.severity, "
    "message = excluded.message, details = excluded.details, updated_at = excluded.updated_at"
)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Alert:
    key: str
    severity: Severity
    message: str
    raised_at: datetime
    updated_at: datetime
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "severity": self.severity.value,
            "message": self.message,
            "raised_at": isoformat_utc(self.raised_at),
            "updated_at": isoformat_utc(self.updated_at),
            "details": dict(self.details),
        }


@dataclass(frozen=True, slots=True)
class AlertChange:
    """A change of the active set: ``alert.raised`` and ``alert.cleared`` are events for the
    ``alerts`` stream; ``alert.updated`` (an active alert kept current) is only stored."""

    type: str
    alert: Alert
    cleared_at: datetime | None = None
    clear_message: str = ""

    @property
    def is_event(self) -> bool:
        return self.type != _UPDATED

    def event(self) -> AlertRaised | AlertCleared:
        """The change as its event on the ``alerts`` stream (raised, or cleared with the
        alert as it last was)."""
        alert = self.alert
        severity: SeverityName = alert.severity.value
        raised_at, updated_at = isoformat_utc(alert.raised_at), isoformat_utc(alert.updated_at)
        if self.cleared_at is None:
            return AlertRaised(
                key=alert.key,
                severity=severity,
                message=alert.message,
                raised_at=raised_at,
                updated_at=updated_at,
                details=dict(alert.details),
            )
        said = {"clear_message": self.clear_message} if self.clear_message else {}  # or absent
        return AlertCleared(
            key=alert.key,
            severity=severity,
            message=alert.message,
            raised_at=raised_at,
            updated_at=updated_at,
            details=dict(alert.details),
            cleared_at=isoformat_utc(self.cleared_at),
            **said,
        )


class AlertBook:
    """The active alerts and the rules for changing them (no I/O)."""

    def __init__(self, active: Mapping[str, Alert] | None = None) -> None:
        self._active: dict[str, Alert] = dict(active or {})

    def active(self) -> tuple[Alert, ...]:
        return tuple(self._active[key] for key in sorted(self._active))

    def get(self, key: str) -> Alert | None:
        return self._active.get(key)

    def raise_(
        self,
        key: str,
        severity: Severity,
        message: str,
        now: datetime,
        details: Mapping[str, Any] | None = None,
    ) -> AlertChange | None:
        if not key or any(ch.isspace() for ch in key):
            raise ValueError(f"alert key must be non-empty without spaces: {key!r}")
        current = self._active.get(key)
        if current is not None and current.severity is severity:
            # The same alert still: no new event, but its message and details stay current
            # (``details=None`` keeps the ones it has).
            kept = current.details if details is None else details
            if current.message == message and dict(current.details) == dict(kept):
                return None
            refreshed = Alert(
                key=key,
                severity=severity,
                message=message,
                raised_at=current.raised_at,
                updated_at=now,
                details=dict(kept),
            )
            self._active[key] = refreshed
            return AlertChange(_UPDATED, refreshed)
        alert = Alert(
            key=key,
            severity=severity,
            message=message,
            raised_at=current.raised_at if current is not None else now,
            updated_at=now,
            details=dict(details or {}),
        )
        self._active[key] = alert
        return AlertChange("alert.raised", alert)

    def update_details(self, key: str, details: Mapping[str, Any], now: datetime) -> Alert | None:
        """Refresh an active alert's details (running counts) without a new event; None when
        ``key`` is not active or nothing changed."""
        current = self._active.get(key)
        if current is None or dict(current.details) == dict(details):
            return None
        alert = Alert(
            key=key,
            severity=current.severity,
            message=current.message,
            raised_at=current.raised_at,
            updated_at=now,
            details=dict(details),
        )
        self._active[key] = alert
        return alert

    def clear(self, key: str, now: datetime, message: str = "") -> AlertChange | None:
        alert = self._active.pop(key, None)
        if alert is None:
            return None
        return AlertChange("alert.cleared", alert, cleared_at=now, clear_message=message)


class Alerts:
    """The alert book, persisted, with every change carried on the ``alerts`` stream."""

    def __init__(self, database: Database, outbox: Outbox, clock: Clock) -> None:
        self._db = database
        self._outbox = outbox
        self._clock = clock
        self._book = AlertBook()

    async def load(self) -> None:
        rows = await self._db.fetchall(
            "SELECT key, severity, message, details, raised_at, updated_at FROM alerts_active"
        )
        self._book = AlertBook(
            {
                str(row["key"]): Alert(
                    key=str(row["key"]),
                    severity=Severity(row["severity"]),
                    message=str(row["message"]),
                    raised_at=datetime.fromisoformat(row["raised_at"]),
                    updated_at=datetime.fromisoformat(row["updated_at"]),
                    details=json.loads(row["details"]),
                )
                for row in rows
            }
        )

    def active(self) -> tuple[Alert, ...]:
        return self._book.active()

    def get(self, key: str) -> Alert | None:
        """The active alert ``key`` (None when it is not active)."""
        return self._book.get(key)

    async def raise_(
        self,
        key: str,
        severity: Severity,
        message: str,
        details: Mapping[str, Any] | None = None,
    ) -> bool:
        """Raise (or escalate) ``key``; returns after it is durable. False if it was active
        already with this severity: then its message and details (unless None) are kept
        current — stored with the next group commit, not awaited, and no event."""
        change = self._book.raise_(key, severity, message, self._clock.utc_now(), details)
        if change is None:
            return False
        alert = change.alert
        if not change.is_event:
            # Not awaited: a flood of re-raises (a running count) must not wait out a group
            # commit each; the writer keeps the order, so a later clear still wins.
            stored = self._db.submit(
                "UPDATE alerts_active SET message = ?, details = ?, updated_at = ? WHERE key = ?",
                (
                    alert.message,
                    json.dumps(dict(alert.details), default=str),
                    alert.updated_at.isoformat(),
                    key,
                ),
            )
            stored.add_done_callback(_log_failed_update)
            return False
        _LOGGER.warning("alert %s (%s): %s", key, severity.value, message)
        # The active row and the event commit together: a crash can never leave an alert
        # active here (so de-duplicated after a restart) that HQ was never told about.
        await self._outbox.append_atomic(
            "alerts",
            [change.event()],
            before=[
                (
                    _UPSERT_ACTIVE,
                    (
                        key,
                        alert.severity.value,
                        alert.message,
                        json.dumps(dict(alert.details), default=str),
                        alert.raised_at.isoformat(),
                        alert.updated_at.isoformat(),
                    ),
                )
            ],
        )
        return True

    async def update_details(self, key: str, details: Mapping[str, Any]) -> bool:
        """Keep an active alert's details current (``storegw alerts``); the ``alerts`` stream
        sees them with the clear. False when the alert is not active or nothing changed."""
        alert = self._book.update_details(key, details, self._clock.utc_now())
        if alert is None:
            return False
        await self._db.submit(
            "UPDATE alerts_active SET details = ?, updated_at = ? WHERE key = ?",
            (json.dumps(dict(alert.details), default=str), alert.updated_at.isoformat(), key),
        )
        return True

    async def clear(self, key: str, message: str = "") -> bool:
        change = self._book.clear(key, self._clock.utc_now(), message)
        if change is None:
            return False
        _LOGGER.info("alert %s cleared%s", key, f": {message}" if message else "")
        await self._outbox.append_atomic(
            "alerts",
            [change.event()],
            before=[("DELETE FROM alerts_active WHERE key = ?", (key,))],
        )
        return True


def _log_failed_update(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        _LOGGER.warning("alert details not stored: %s", future.exception())
