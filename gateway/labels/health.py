"""ESL fleet health, sans-IO: what the labels' own reports say about them (research/esl.md).

Per label the latest report's battery, signal, next check-in and deep-sleep flag, and which
device heard it last. :meth:`FleetHealth.assess` names the labels with a problem at ``now``:

- ``low_battery``: below 2 400 mV;
- ``timed_out``: more than 600 s past its announced check-in (a label in deep sleep never is);
- ``weak_signal``: RSSI below -85 dBm;
- ``deep_sleep``: told to sleep until woken (listed, not alerted: it is expected to be silent).

:func:`alert_changes` turns an assessment into the alerts to raise or clear (one alert per
problem, listing its labels), for :class:`gateway.alerts.Alerts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway.clock import isoformat_utc
from gateway.drivers.contracts import LabelReport, Reading

__all__ = [
    "ALERTED_PROBLEMS",
    "CHECKIN_GRACE",
    "LOW_BATTERY_MV",
    "WEAK_RSSI_DBM",
    "FleetHealth",
    "LabelHealth",
    "alert_changes",
]

LOW_BATTERY_MV = 2400
CHECKIN_GRACE = timedelta(seconds=600)
WEAK_RSSI_DBM = -85
ALERTED_PROBLEMS = ("low_battery", "timed_out", "weak_signal")
_ALERT_TEXT = {
    "low_battery": f"ESL label(s) with a battery below {LOW_BATTERY_MV} mV",
    "timed_out": "ESL label(s) missed their check-in by more than 600 s",
    "weak_signal": f"ESL label(s) with a signal below {WEAK_RSSI_DBM} dBm",
}


@dataclass(frozen=True, slots=True)
class LabelHealth:
    label: str
    device: str
    last_seen: datetime
    battery_mv: int | None
    rssi: int | None
    next_checkin: datetime | None
    deep_sleep: bool

    def problems(self, now: datetime) -> tuple[str, ...]:
        found: list[str] = []
        if self.battery_mv is not None and 0 < self.battery_mv < LOW_BATTERY_MV:
            found.append("low_battery")
        if self.deep_sleep:
            found.append("deep_sleep")
        elif self.next_checkin is not None and now > self.next_checkin + CHECKIN_GRACE:
            found.append("timed_out")
        if self.rssi is not None and self.rssi < WEAK_RSSI_DBM:
            found.append("weak_signal")
        return tuple(found)

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "label": self.label,
            "device": self.device,
            "last_seen": isoformat_utc(self.last_seen),
            "battery_mv": self.battery_mv,
            "rssi": self.rssi,
            "next_checkin": isoformat_utc(self.next_checkin) if self.next_checkin else None,
            "deep_sleep": self.deep_sleep,
            "problems": list(self.problems(now)),
        }


class FleetHealth:
    """Fed every reading (a hub listener); keeps the latest health facts per label."""

    def __init__(self) -> None:
        self._labels: dict[str, LabelHealth] = {}

    def on_reading(self, device: str, reading: Reading) -> None:
        if not isinstance(reading, LabelReport):
            return
        before = self._labels.get(reading.label_id)
        self._labels[reading.label_id] = LabelHealth(
            label=reading.label_id,
            device=device,
            last_seen=reading.observed_at,
            battery_mv=reading.battery_mv
            if reading.battery_mv is not None
            else (before.battery_mv if before else None),
            rssi=reading.rssi if reading.rssi is not None else (before.rssi if before else None),
            next_checkin=reading.next_checkin
            if reading.next_checkin is not None or reading.deep_sleep
            else (before.next_checkin if before else None),
            deep_sleep=reading.deep_sleep,
        )

    def detail(self, label: str, now: datetime) -> dict[str, Any] | None:
        health = self._labels.get(label)
        return health.as_dict(now) if health is not None else None

    def assess(self, now: datetime) -> dict[str, list[str]]:
        """Problem → the labels having it (sorted); every problem named, empty lists too."""
        found: dict[str, list[str]] = {p: [] for p in (*ALERTED_PROBLEMS, "deep_sleep")}
        for label in sorted(self._labels):
            for problem in self._labels[label].problems(now):
                found[problem].append(label)
        return found

    def summary(self, now: datetime) -> dict[str, Any]:
        assessed = self.assess(now)
        return {
            "labels": len(self._labels),
            "problems": assessed,
            "labels_with_problems": [
                self._labels[label].as_dict(now)
                for label in sorted({label for labels in assessed.values() for label in labels})
            ],
        }


def alert_changes(
    assessed: dict[str, list[str]],
) -> list[tuple[str, str | None, dict[str, Any]]]:
    """``(alert key, message or None to clear, details)`` for each alerted problem."""
    changes: list[tuple[str, str | None, dict[str, Any]]] = []
    for problem in ALERTED_PROBLEMS:
        labels = assessed.get(problem, [])
        key = f"esl.{problem}"
        if labels:
            shown = ", ".join(labels[:10]) + (
                f" and {len(labels) - 10} more" if len(labels) > 10 else ""
            )
            changes.append(
                (key, f"{len(labels)} {_ALERT_TEXT[problem]}: {shown}", {"labels": labels})
            )
        else:
            changes.append((key, None, {}))
    return changes
