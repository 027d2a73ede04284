"""When each label checks in next, as its ESL system last said, and from when each pushed job
could first reach its label — what dispatch and the confirmation timeout go by.

A label whose ESL system said it sleeps until later (an access point's tag: up to ``maxsleep``
between check-ins) gets its content only when it wakes, so a pushed job's confirmation clock
starts at the label's first chance to receive it: its push, or its next check-in as known at
the push. That instant is noted once per push, so a label that keeps checking in without ever
confirming still times out one ``confirm_timeout_s`` after its first chance. Deep sleep (woken
by the ESL system, not by time) and a check-in more than :data:`LONGEST_SLEEP` ahead do not
move it: such a job times out as if the label were awake. Kept in memory: after a restart
jobs in flight are sent again anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.drivers.contracts import LabelReport, LabelReportKind

__all__ = ["LONGEST_SLEEP", "NEVER", "LabelWakes"]

NEVER = datetime.max.replace(tzinfo=UTC)  # deep sleep: woken by the ESL system, not by time
LONGEST_SLEEP = timedelta(days=1)


class LabelWakes:
    def __init__(self) -> None:
        self._next: dict[str, datetime] = {}  # label → when it checks in next (its report)
        self._first_chance: dict[str, datetime] = {}  # label → its pushed job can reach it

    def on_report(self, report: LabelReport) -> None:
        """Note when the label checks in next (delivery reports say nothing about it: the
        last word stays); a job that ended needs no first chance any more."""
        if report.deep_sleep:
            self._next[report.label_id] = NEVER
        elif report.next_checkin is not None:
            self._next[report.label_id] = report.next_checkin
        if report.kind is not LabelReportKind.SEEN:
            self._first_chance.pop(report.label_id, None)

    def next_checkin(self, label: str) -> datetime | None:
        """When the label checks in next (:data:`NEVER`: deep sleep; None: not said)."""
        return self._next.get(label)

    def pushed(self, label: str, now: datetime) -> None:
        """The label's content was handed to its driver at ``now``."""
        wake = self._next.get(label)
        later = wake is not None and now < wake <= now + LONGEST_SLEEP
        self._first_chance[label] = wake if later and wake is not None else now

    def confirm_deadline(self, label: str, timeout: timedelta) -> datetime | None:
        """When the label's pushed job counts as unconfirmed (None: not noted, e.g. pushed
        before a restart: its submission time plus ``timeout`` rules)."""
        first = self._first_chance.get(label)
        return None if first is None else first + timeout
