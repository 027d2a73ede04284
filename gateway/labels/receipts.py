"""The receipts stage: ``label_audit`` rows → the outbox ``receipts`` stream, in id order, the
forwarded mark (in ``meta``) advancing in the same transaction; and the audit's retention.

Receipts flow up from the audit table, so pushing labels never waits on the uplink or the
outbox budget. One ``append_atomic`` per run of one receipt type; audit events HQ does not
need (``awaiting_model``) only move the mark. Rows are pruned once forwarded and older than
``audit_retention_days``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from gateway.labels.context import StageContext
from gateway.labels.job_store import Row
from gateway.labels.jobs import AuditEvent, JobState
from gateway.store.outbox import Outbox

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
        runs: list[tuple[str | None, list[dict[str, Any]], int]] = []
        for row in rows:
            kind = RECEIPT_TYPES.get(str(row["event"]))
            body = _receipt_body(row) if kind is not None else None
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
                futures.append(self._outbox.append_atomic("receipts", kind, bodies, before=[mark]))
        await asyncio.gather(*futures)
        self._forwarded = runs[-1][2]
        return len(rows)

    async def prune_audit(self) -> None:
        """Forwarded audit rows older than the retention go."""
        ctx = self._context
        cutoff = ctx.clock.utc_now() - timedelta(days=ctx.config.audit_retention_days)
        await ctx.store.prune_audit(forwarded=self._forwarded, before=cutoff)


def _receipt_body(row: Row) -> dict[str, Any]:
    event = str(row["event"])
    body: dict[str, Any] = {
        "label": row["label"],
        "sku": row["sku"],
        "price_version": int(row["price_version"] or 0),
        "content_hash": row["content_hash"],
    }
    at = str(row["at"])
    detail = str(row["detail"] or "")
    if event in {AuditEvent.QUEUED, AuditEvent.REQUEUED}:
        body["queued_at"] = at
        if event == AuditEvent.REQUEUED:
            body["reason"] = detail
    elif event in {AuditEvent.CONFIRMED, AuditEvent.UNCHANGED}:
        body["confirmed_at"] = at
        body["evidence"] = detail or "confirmed by the label"
        body["unchanged"] = event == AuditEvent.UNCHANGED
    elif event == AuditEvent.FAILED:
        body["failed_at"] = at
        body["reason"] = detail
        body["permanent"] = row["state"] == JobState.FAILED_PERMANENT
    elif event == AuditEvent.SUPERSEDED:
        body["superseded_at"] = at
        body["reason"] = detail
    elif event == AuditEvent.EXPIRED:
        body["expired_at"] = at
        body["reason"] = detail
    return body
