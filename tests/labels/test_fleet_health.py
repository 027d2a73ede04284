"""ESL fleet health: low battery, timed-out and sleeping labels, weak signal — from the labels'
own reports (through the real esl.oepl driver and a fake AP), into alerts of the one alert
model and the text of ``storegw labels --health`` / ``label show``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from devices.simulated.oepl_ap import FakeAccessPoint, FakeTag
from gateway.alerts import Alerts, Severity
from gateway.cli.diagnostics import render_label, render_labels
from gateway.clock import ClockSyncSource, FakeClock, SystemClock
from gateway.drivers.contracts import LabelReport, LabelReportKind
from gateway.labels.health import FleetHealth, alert_changes
from gateway.store import Database
from gateway.store.outbox import Outbox
from tests.devices.oepl_support import running
from tests.labels.support import STREAMS
from tests.waiting import until

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def report(label: str, **fields: object) -> LabelReport:
    return LabelReport(label, LabelReportKind.SEEN, 0.0, NOW, **fields)  # type: ignore[arg-type]


def test_each_problem_is_named_from_the_reports() -> None:
    health = FleetHealth()
    health.on_reading("ap-1", report("A", battery_mv=2300, rssi=-60))
    health.on_reading("ap-1", report("B", next_checkin=NOW - timedelta(seconds=601)))
    health.on_reading("ap-1", report("C", next_checkin=NOW - timedelta(seconds=599)))
    health.on_reading("ap-2", report("D", deep_sleep=True))
    health.on_reading("ap-2", report("E", rssi=-90, battery_mv=0))  # 0: not measured
    assessed = health.assess(NOW)
    assert assessed == {
        "low_battery": ["A"],
        "timed_out": ["B"],
        "weak_signal": ["E"],
        "deep_sleep": ["D"],
    }
    health.on_reading("ap-2", report("A"))  # heard again without a battery: kept, moved
    detail = health.detail("A", NOW)
    assert detail is not None
    assert (detail["device"], detail["battery_mv"]) == ("ap-2", 2300)
    assert health.detail("nobody", NOW) is None


async def test_problems_become_alerts_and_clear_again(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        health = FleetHealth()
        health.on_reading("ap-1", report("A", battery_mv=2100))

        async def sync() -> None:
            for key, message, details in alert_changes(health.assess(NOW)):
                if message is None:
                    await alerts.clear(key)
                else:
                    await alerts.raise_(key, Severity.WARNING, message, details)

        await sync()
        raised = alerts.get("esl.low_battery")
        assert raised is not None
        assert raised.details["labels"] == ["A"]
        assert alerts.get("esl.timed_out") is None
        health.on_reading("ap-1", report("A", battery_mv=2900))  # battery changed
        await sync()
        assert alerts.get("esl.low_battery") is None


async def test_the_oepl_driver_reports_battery_signal_and_checkin_for_the_health() -> None:
    tags = [
        FakeTag("0000A00000000001", battery_mv=2200, rssi=-92),
        FakeTag("0000A00000000002", deep_sleep=True),
    ]
    async with FakeAccessPoint(tags, checkin_s=3600) as ap, running(ap) as rig:
        health = FleetHealth()
        await until(
            lambda: len({r.label_id for r in rig.readings if isinstance(r, LabelReport)}) == 2
        )
        for reading in rig.readings:
            health.on_reading("ap-1", reading)
        now = SystemClock(sync=ClockSyncSource.ASSUME).utc_now()
        assessed = health.assess(now)
        assert assessed["low_battery"] == ["0000A00000000001"]
        assert assessed["weak_signal"] == ["0000A00000000001"]
        assert assessed["deep_sleep"] == ["0000A00000000002"]
        summary = health.summary(now)
        text = render_labels({"total": 0, "health": summary})
        assert "1 battery below 2400 mV" in text
        assert "0000A00000000002 via ap-1: in deep sleep" in text
        shown = render_label(
            {"label": "0000A00000000001", "health": health.detail("0000A00000000001", now)}
        )
        assert "health    battery below 2400 mV, signal below -85 dBm (battery 2200 mV" in shown
