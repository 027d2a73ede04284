"""What the label pipeline shows a technician: ``storegw labels`` (:meth:`LabelViews.listing`),
the labels block of ``storegw status`` (:meth:`LabelViews.summary`) and ``storegw label show``
(:meth:`LabelViews.show`: binding, panel, the face it should show — the price book's, the one
the pipeline plans — what it last confirmed, its job, flips and audit)."""

from __future__ import annotations

import json
from typing import Any

from gateway.clock import isoformat_utc
from gateway.labels.context import StageContext, sole_device
from gateway.labels.job_store import Row
from gateway.labels.jobs import JobState
from gateway.labels.planning import Planning
from gateway.prices.book import PriceBook

__all__ = ["LabelViews"]

_UNSYNCED = "clock NOT synchronised: scheduled flips are held"


class LabelViews:
    def __init__(self, context: StageContext, planning: Planning, book: PriceBook) -> None:
        self._context = context
        self._planning = planning
        self._book = book

    async def listing(self, state: str | None = None, limit: int = 200) -> dict[str, Any]:
        """Jobs (all, in dispatch order, or those in ``state``; ``unreachable``: no driver
        reaches their label), counts, flips, unbound labels, drivers and the clock's say."""
        ctx = self._context
        counts = await ctx.store.counts()
        if state is not None and state not in {s.value for s in JobState} | {"unreachable"}:
            raise ValueError(
                f"unknown state {state!r}: one of {', '.join(s.value for s in JobState)}, "
                "unreachable"
            )
        drivers = ctx.drivers()
        unreachable = await ctx.store.unreachable(sole_device(drivers))
        if state == "unreachable":
            rows = await ctx.store.jobs(labels=unreachable, limit=limit)
        else:
            rows = await ctx.store.jobs(state=state, limit=limit)
        scheduled = await ctx.store.flips()
        unbound = await ctx.store.unbound_heard()
        _, synced = ctx.policy.instant()
        held_at = f" at {isoformat_utc(ctx.policy.last)}" if ctx.policy.last else ""
        return {
            "counts": counts,
            "total": sum(counts.values()),
            "unreachable": len(unreachable),
            # Labels an ESL driver reports that no binding names: new on the shelf, or left
            # over after a re-layout (bind them, or take them off the shelf).
            "unbound": len(unbound),
            "unbound_labels": [
                {
                    "label": str(r["label"]),
                    "device": r["device"],
                    "model": r["model"],
                    "last_heard": r["at"],
                }
                for r in unbound[:limit]
            ],
            "scheduled_flips": [dict(r) for r in scheduled],
            "clock": {
                "synchronized": synced,
                "note": None
                if synced
                else f"{_UNSYNCED}; labels keep the content in force{held_at}",
            },
            "drivers": {
                name: (
                    {"running": True, "labels_per_minute": driver.labels_per_minute}
                    if driver is not None
                    else {"running": False}
                )
                for name, driver in sorted(drivers.items())
            },
            "jobs": [_job_dict(r) for r in rows],
            "last_plan_s": self._planning.last_plan_s,
        }

    async def summary(self) -> dict[str, Any]:
        """Counts per state and the clock's say over flips (``storegw status``)."""
        counts = await self._context.store.counts()
        _, synced = self._context.policy.instant()
        return {
            "counts": counts,
            "flips_held": not synced,
            "note": None if synced else f"{_UNSYNCED}, labels keep what is in force",
        }

    async def show(self, label: str) -> dict[str, Any]:
        ctx = self._context
        binding, job, flips, audit = await ctx.store.record(label)
        if binding is None and job is None and label not in ctx.shown:
            raise ValueError(f"label {label} is neither bound nor known to a driver")
        shown = ctx.shown.get(label)
        at, _ = ctx.policy.instant()
        should = await self._book.face(binding["sku"], at) if binding is not None else None
        return {
            "label": label,
            "binding": dict(binding) if binding is not None else None,
            # What its content is drawn for; None: no driver has heard the label yet.
            "panel": ctx.shown.panel(label),
            "should_show": {
                "face": should.as_dict(),
                "price_version": should.version,
                "ready": should.ready,
                "content_hash": job["content_hash"] if job is not None else None,
            }
            if should is not None
            else None,
            "last_confirmed": {
                "content_hash": shown.content_hash,
                "evidence": shown.evidence,
                "at": shown.at,
                "device": shown.device,
                "model": shown.model,
            }
            if shown is not None
            else None,
            "in_sync": bool(
                job is not None
                and shown is not None
                and job["content_hash"] is not None
                and job["content_hash"] == shown.content_hash
            ),
            "job": _job_dict(job) if job is not None else None,
            "scheduled": [dict(r) | {"face": json.loads(r["face"])} for r in flips],
            "audit": [dict(r) for r in audit],
        }


def _job_dict(row: Row) -> dict[str, Any]:
    return {
        "label": row["label"],
        "sku": row["sku"],
        "state": row["state"],
        "price_version": row["price_version"],
        "content_hash": row["content_hash"],
        "rendered": row["content_hash"] is not None,
        "model": row["model"],
        "scheduled": row["scheduled"] > 0,  # -1: a redraw in a new style, sent last
        "due_at": row["due_at"],
        "queued_at": row["queued_at"],
        "submitted_at": row["submitted_at"],
        "confirmed_at": row["confirmed_at"],
        "attempts": row["attempts"],
        "next_attempt_at": row["next_attempt_at"],
        "device": row["device"],
        "last_error": row["last_error"],
        "evidence": row["evidence"],
    }
