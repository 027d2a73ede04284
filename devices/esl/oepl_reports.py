"""The ``LabelReport`` s of the ``esl.oepl`` driver: what a tag record says of its label (``SEEN``:
panel, battery, signal, next check-in, and what it shows by *our* content hash — nothing for a
rebooted tag whose hash is zeroed) and the delivery news of a job (``CONFIRMED``/``FAILED``)."""

from __future__ import annotations

from datetime import UTC, datetime

from devices.esl.oepl_state import ApMemory
from devices.esl.oepl_tags import ApTags
from devices.esl.protocol import TagRecord
from gateway.clock import Clock
from gateway.drivers.contracts import LabelReport, LabelReportKind

__all__ = ["ApReports"]


class ApReports:
    def __init__(self, memory: ApMemory, tags: ApTags, clock: Clock, url: str) -> None:
        self._memory = memory
        self._tags = tags
        self._clock = clock
        self._url = url

    def seen(self, record: TagRecord, evidence: str) -> LabelReport:
        shown = self._memory.shown.get(record.mac)
        showing = None
        if shown is not None and (shown.ap_hash is None or shown.ap_hash == record.content_hash):
            showing = shown.content_hash
        if record.rebooted and record.content_hash is None:
            showing, evidence = None, "the tag rebooted (hash zeroed)"
        return LabelReport(
            label_id=record.mac,
            kind=LabelReportKind.SEEN,
            monotonic=self._clock.monotonic(),
            observed_at=self._clock.utc_now(),
            content_hash=showing,
            evidence=f"AP {self._url}: {evidence}",
            model=self._tags.panel(record),
            battery_mv=record.battery_mv,
            rssi=record.rssi,
            next_checkin=_epoch(record.next_checkin) if not record.asleep else None,
            deep_sleep=record.asleep,
        )

    def delivery(
        self, mac: str, kind: LabelReportKind, content_hash: str, evidence: str
    ) -> LabelReport:
        record = self._memory.records.get(mac)
        return LabelReport(
            label_id=mac,
            kind=kind,
            monotonic=self._clock.monotonic(),
            observed_at=self._clock.utc_now(),
            content_hash=content_hash,
            evidence=evidence,
            model=self._tags.panel(record) if record is not None else None,
            battery_mv=record.battery_mv if record is not None else None,
            rssi=record.rssi if record is not None else None,
        )


def _epoch(seconds: int | None) -> datetime | None:
    if seconds is None or seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
