"""When a pushed job's confirmation clock starts: at the push, or at the label's next check-in
when its ESL system said it sleeps until then (deep sleep and far-off check-ins do not count)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from gateway.clock import FakeClock
from gateway.drivers.contracts import LabelReport, LabelReportKind
from gateway.labels.wakes import NEVER, LabelWakes

TIMEOUT = timedelta(seconds=600)


def seen(clock: FakeClock, label: str, **fields: object) -> LabelReport:
    report = LabelReport(label, LabelReportKind.SEEN, clock.monotonic(), clock.utc_now())
    return replace(report, **fields)  # type: ignore[arg-type]


def test_the_confirmation_clock_starts_at_the_first_chance_the_label_has() -> None:
    clock = FakeClock()
    now = clock.utc_now()
    wakes = LabelWakes()
    assert wakes.confirm_deadline("awake", TIMEOUT) is None  # not pushed: submission rules
    wakes.pushed("awake", now)
    assert wakes.confirm_deadline("awake", TIMEOUT) == now + TIMEOUT
    wakes.on_report(seen(clock, "asleep", next_checkin=now + timedelta(minutes=10)))
    wakes.pushed("asleep", now)
    assert wakes.confirm_deadline("asleep", TIMEOUT) == now + timedelta(minutes=10) + TIMEOUT
    # A later check-in without delivery does not move it again.
    wakes.on_report(seen(clock, "asleep", next_checkin=now + timedelta(minutes=20)))
    assert wakes.confirm_deadline("asleep", TIMEOUT) == now + timedelta(minutes=10) + TIMEOUT
    for label, fields in [
        ("deep", {"deep_sleep": True}),
        ("far", {"next_checkin": now + timedelta(days=2)}),
        ("stale", {"next_checkin": now - timedelta(hours=1)}),
    ]:
        wakes.on_report(seen(clock, label, **fields))
        wakes.pushed(label, now)
        assert wakes.confirm_deadline(label, TIMEOUT) == now + TIMEOUT, label
    assert wakes.next_checkin("deep") == NEVER
    confirmed = replace(seen(clock, "asleep"), kind=LabelReportKind.CONFIRMED)
    wakes.on_report(confirmed)
    assert wakes.confirm_deadline("asleep", TIMEOUT) is None
