"""The alert model: de-duplication, escalation, clearing, persistence, the alerts stream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.alerts import AlertBook, Alerts, Severity
from gateway.cli.diagnostics import render_alerts
from gateway.clock import FakeClock
from gateway.store import Database
from gateway.store.outbox import Outbox


def test_book_deduplicates_escalates_and_clears() -> None:
    clock = FakeClock()
    book = AlertBook()
    first = book.raise_("stock.low:slot-1", Severity.WARNING, "3 left", clock.utc_now())
    assert first is not None
    assert first.type == "alert.raised"
    clock.advance(60)
    assert book.raise_("stock.low:slot-1", Severity.WARNING, "3 left", clock.utc_now()) is None
    kept_current = book.raise_("stock.low:slot-1", Severity.WARNING, "2 left", clock.utc_now())
    assert kept_current is not None
    assert not kept_current.is_event  # the same alert: nothing new for the alerts stream
    assert kept_current.alert.message == "2 left"
    assert kept_current.alert.raised_at == first.alert.raised_at
    assert kept_current.alert.updated_at > first.alert.updated_at
    escalated = book.raise_("stock.low:slot-1", Severity.CRITICAL, "empty", clock.utc_now())
    assert escalated is not None
    assert escalated.alert.raised_at == first.alert.raised_at  # same episode
    assert escalated.alert.updated_at > first.alert.raised_at
    cleared = book.clear("stock.low:slot-1", clock.utc_now(), "restocked")
    assert cleared is not None
    assert cleared.event().model_dump()["clear_message"] == "restocked"
    assert book.clear("stock.low:slot-1", clock.utc_now()) is None
    assert book.active() == ()


@pytest.mark.parametrize("key", ["", "has space", "tab\there"])
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="alert key"):
        AlertBook().raise_(key, Severity.INFO, "x", FakeClock().utc_now())


async def test_alerts_persist_and_travel_on_the_alerts_stream(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "g.db"
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("alerts",))
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        assert await alerts.raise_("sensor.fault:shelf-a", Severity.CRITICAL, "no data", {"s": 30})
        assert not await alerts.raise_("sensor.fault:shelf-a", Severity.CRITICAL, "no data")
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("alerts",))
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        [active] = alerts.active()
        assert active.key == "sensor.fault:shelf-a"
        assert active.details == {"s": 30}
        # Still active after the restart: raising it again is not a new alert.
        assert not await alerts.raise_("sensor.fault:shelf-a", Severity.CRITICAL, "no data")
        assert await alerts.clear("sensor.fault:shelf-a", "data again")
        events = await outbox.read("alerts", after_seq=0, max_events=10, max_bytes=10**6)
    assert [e.type for e in events] == ["alert.raised", "alert.cleared"]
    cleared = json.loads(events[1].body)
    assert cleared["key"] == "sensor.fault:shelf-a"
    assert cleared["severity"] == "critical"
    assert "cleared_at" in cleared
    text = render_alerts({"active": [active.as_dict()]})
    assert text.startswith("CRITICAL sensor.fault:shelf-a")
    assert render_alerts({"active": []}) == "no active alerts"


async def test_raising_an_active_alert_again_keeps_its_details_current_across_a_restart(
    tmp_path: Path,
) -> None:
    """Item 9: a re-raised alert's count, reason and updated_at move (stored), with no new
    event; the clear carries the final details."""
    clock = FakeClock()
    path = tmp_path / "g.db"
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("alerts",))
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        raised_at = clock.utc_now()
        for n in range(1, 11):
            raised = await alerts.raise_(
                "downlink.signature", Severity.CRITICAL, f"refused: reason {n}", {"refused": n}
            )
            assert raised is (n == 1)
            clock.advance(5)
        assert not await alerts.raise_(
            "downlink.signature", Severity.CRITICAL, "refused: reason 10"
        )
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("alerts",))
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        [active] = alerts.active()
        assert active.details == {"refused": 10}  # None kept them
        assert active.message == "refused: reason 10"
        assert active.raised_at == raised_at
        assert (active.updated_at - raised_at).total_seconds() == 45
        assert await alerts.clear("downlink.signature", "quiet")
        events = await outbox.read("alerts", after_seq=0, max_events=10, max_bytes=10**6)
    assert [e.type for e in events] == ["alert.raised", "alert.cleared"]
    assert json.loads(events[1].body)["details"] == {"refused": 10}
