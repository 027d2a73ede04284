"""The receipts stage: ``label_audit`` rows → the outbox ``receipts`` stream, in id order, the
forwarded mark (in ``meta``) advancing in the same transaction; and the audit's retention.

Receipts flow up from the audit table, so pushing labels never waits on the uplink or the
outbox budget. One ``append_atomic`` per run of one receipt type; audit events HQ does not
need (``awaiting_model``) only move the mark. Rows are pruned once forwarded and older than
``audit_retention_days``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from gateway.labels.context import StageContext
from gateway.labels.job_store import Row
from gateway.labels.jobs import AuditEvent, JobState
from gateway.store.outbox import Outbox
from gateway.wire.envelope import EventBody
from gateway.wire.labels import (
    LabelConfirmed,
    LabelExpired,
    LabelFailed,
    LabelQueued,
    LabelSuperseded,
)

__all__ = ["RECEIPT_TYPES", "Receipts"]

#: label_audit event → receipt type on the ``receipts`` stream (the others stay local).
RECEIPT_TYPES: Mapping[str, str] = {
    AuditEvent.QUEUED: "label.queued",
    AuditEvent.REQUEUED: "label.queued",
    AuditEvent.CONFIRMED: "label.confirmed",
    AuditEvent.UNCHANGED: "label.confirmed",
    AuditEvent.FAILED: "label.failed",
    AuditEvent.SUPERSEDED: "label.superseded",
    AuditEvent.EXPIRED: "label.expired",
}

_LOGGER = logging.getLogger(__name__)

_FORWARDED_KEY = "label_audit_forwarded"  # meta: the last audit id forwarded
_PUMP_BATCH = 1_000


class Receipts:
    def __init__(self, context: StageContext, outbox: Outbox) -> None:
        self._context = context
        self._outbox = outbox
        self._forwarded = 0

    async def load(self) -> None:
        self._forwarded = int(await self._context.store.meta(_FORWARDED_KEY) or "0")

    async def pump_receipts(self) -> int:
        """Forward audit rows past the mark to the ``receipts`` stream, the mark advancing in
        the same transaction; returns the rows consumed (the stage's step)."""
        store = self._context.store
        rows = await store.audit_after(self._forwarded, _PUMP_BATCH)
        if not rows:
            return 0
        runs: list[tuple[str | None, list[EventBody], int]] = []
        for row in rows:
            kind = RECEIPT_TYPES.get(str(row["event"]))
            body = _receipt(row) if kind is not None else None
            if runs and runs[-1][0] == kind:
                if body is not None:
                    runs[-1][1].append(body)
                runs[-1] = (kind, runs[-1][1], int(row["id"]))
            else:
                runs.append((kind, [body] if body is not None else [], int(row["id"])))
        futures = []
        for kind, bodies, last_id in runs:
            mark = store.set_meta(_FORWARDED_KEY, str(last_id))
            if kind is None or not bodies:
                futures.append(store.commit([mark]))
            else:
                futures.append(self._outbox.append_atomic("receipts", bodies, before=[mark]))
        await asyncio.gather(*futures)
        self._forwarded = runs[-1][2]
        return len(rows)

    async def prune_audit(self) -> None:
        """Forwarded audit rows older than the retention go."""
        ctx = self._context
        cutoff = ctx.clock.utc_now() - timedelta(days=ctx.config.audit_retention_days)
        await ctx.store.prune_audit(forwarded=self._forwarded, before=cutoff)


def _receipt(row: Row) -> EventBody | None:
    """An audit row as its receipt; None (logged) for a row no receipt can describe."""
    event = str(row["event"])
    job: dict[str, Any] = {
        "label": row["label"],
        "sku": row["sku"],
        "price_version": int(row["price_version"] or 0),
        "content_hash": row["content_hash"],
    }
    at = str(row["at"])
    detail = str(row["detail"] or "")
    try:
        if event in {AuditEvent.QUEUED, AuditEvent.REQUEUED}:
            why: dict[str, Any] = {}
            if event == AuditEvent.REQUEUED and detail:  # new content has no reason
                why["reason"] = detail
            return LabelQueued(**job, queued_at=at, **why)
        if event in {AuditEvent.CONFIRMED, AuditEvent.UNCHANGED}:
            return LabelConfirmed(
                **job,
                confirmed_at=at,
                evidence=detail or "confirmed by the label",
                unchanged=event == AuditEvent.UNCHANGED,
            )
        if event == AuditEvent.FAILED:
            permanent = row["state"] == JobState.FAILED_PERMANENT
            return LabelFailed(**job, failed_at=at, reason=detail, permanent=permanent)
        if event == AuditEvent.SUPERSEDED:
            return LabelSuperseded(**job, superseded_at=at, reason=detail)
        if event == AuditEvent.EXPIRED:
            return LabelExpired(**job, expired_at=at, reason=detail)
    except ValidationError as exc:
        _LOGGER.error("label audit row %s (%s) sent no receipt: %s", row["id"], event, exc)
    return None
