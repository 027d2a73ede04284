"""The scheduler stage: promotion starts and ends (*flips*) pre-rendered ahead and promoted
at their instant.

It wakes at the next flip (a fresh timer from wall time each wake, at most ``lookahead_s/4``
or 30 s), promotes due flips (latest per label; earlier ones and those whose validity ended
expire) into jobs that dispatch takes first, then plans the boundaries within ``lookahead_s``
into ``label_schedule``, and announces flips that cannot finish within ``flip_tolerance_s``
(``label.flip_late``). At start it promotes what fell due while the gateway was down and
re-plans every label; a clock jump (wall time moving > 2 s against monotonic time) re-plans
every label for the new time. Nothing flips while the clock is unsynchronised: the policy
instant it last trusted is persisted here and restored at start. Drivers whose labels sleep
between check-ins get them shortened for each flip's window (:mod:`~gateway.labels.flip_checkins`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from gateway.alerts import Severity
from gateway.clock import isoformat_utc
from gateway.drivers.contracts import PreparesFlips
from gateway.labels.context import StageContext, sole_device
from gateway.labels.flip_checkins import FlipCheckins
from gateway.labels.flip_windows import FlipWindowStore
from gateway.labels.job_store import Row
from gateway.labels.planning import Planning
from gateway.prices.book import PriceBook

__all__ = ["FLIP_LATE_ALERT", "Scheduler"]

_LOGGER = logging.getLogger(__name__)

FLIP_LATE_ALERT = "label.flip_late"
_FLIP_SKUS_SHOWN = 20  # SKUs named in the late-flip alert's details
_POLICY_KEY = "labels_policy_at"  # meta: the last synchronised instant
_JUMP_S = 2.0  # wall time moving this much against monotonic time is a clock jump


class Scheduler:
    def __init__(
        self,
        context: StageContext,
        planning: Planning,
        book: PriceBook,
        flip_windows: FlipWindowStore,
    ) -> None:
        self._context = context
        self._planning = planning
        self._book = book
        self._offset: float | None = None  # wall - monotonic at the last pass
        self._planned_at_start = False
        self.checkins = FlipCheckins(context, flip_windows)

    async def load(self) -> None:
        """The policy instant last trusted and the flip windows open, as before the stop."""
        stored = await self._context.store.meta(_POLICY_KEY)
        if stored is not None:
            self._context.policy.last = datetime.fromisoformat(stored)
        await self.checkins.load()

    async def scheduler_pass(self) -> bool:
        """Promote due flips, re-plan after a clock jump or at start, and pre-render the
        flips within the look-ahead. False (nothing done) while the clock is unsynced."""
        ctx = self._context
        now, synced = ctx.policy.instant()
        if not synced:
            return False
        offset = now.timestamp() - ctx.clock.monotonic()
        jumped = self._offset is not None and abs(offset - self._offset) > _JUMP_S
        self._offset = offset
        if jumped:
            _LOGGER.warning("clock jumped: re-planning every label for %s", isoformat_utc(now))
        await ctx.store.commit(
            [*ctx.store.promote_due(now), ctx.store.set_meta(_POLICY_KEY, isoformat_utc(now))]
        )
        ctx.wake.dispatch.set()
        ctx.wake.receipts.set()
        if jumped or not self._planned_at_start:
            self._planned_at_start = True
            await self._planning.plan(reason="re-planned for the current time")
        until = now + timedelta(seconds=ctx.config.lookahead_s)
        boundaries = await self._book.boundaries(now, until)
        await ctx.store.schedule(boundaries, now=now, until=until)
        ctx.wake.render.set()
        flips = await ctx.store.flips_by_device(now, sole_device(ctx.drivers()))
        await self.checkins.update(now, flips)
        await self._check_flips(flips)
        return True

    async def next_flip_in(self) -> float | None:
        """Seconds of wall time until the next scheduled flip (None: none scheduled)."""
        due = await self._context.store.next_flip_due()
        return None if due is None else (due - self._context.clock.utc_now()).total_seconds()

    async def run(self) -> None:
        """Task ``labels.scheduler``: a pass at every flip and every wake, until cancelled."""
        wake = self._context.wake.schedule
        while True:
            wake.clear()
            try:
                await self.scheduler_pass()
                until_flip = await self.next_flip_in()
            except Exception:
                _LOGGER.exception("label scheduler pass failed (retrying)")
                until_flip = None
            # A fresh monotonic timer each wake, from wall time: jumps are seen next wake.
            delay = min(self._context.config.lookahead_s / 4, 30.0)
            if until_flip is not None:
                delay = min(delay, max(0.01, until_flip))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wake.wait()

    async def _check_flips(self, flips: Sequence[Row]) -> None:
        """Announce flips that cannot finish within the tolerance, from driver throughput (and,
        where a driver could not shorten its labels' check-ins, their check-in interval)."""
        alerts = self._context.alerts
        if alerts is None:
            return
        drivers = self._context.drivers()
        late = []
        for row in flips:
            driver = drivers.get(row["device"]) if row["device"] is not None else None
            if driver is None or driver.labels_per_minute <= 0:
                continue
            due = datetime.fromisoformat(row["due_at"])
            radio_s = int(row["n"]) / driver.labels_per_minute * 60
            if row["device"] in self.checkins.unprepared and isinstance(driver, PreparesFlips):
                # Check-ins not shortened: the last labels may get it only when they wake.
                radio_s = max(radio_s, driver.checkin_interval_s)
            finish = due + timedelta(seconds=radio_s)
            late_by = (finish - due).total_seconds() - self._context.config.flip_tolerance_s
            if late_by > 0:
                skus = sorted(str(row["skus"] or "").split(","))
                late.append(
                    {
                        "due_at": row["due_at"],
                        "device": row["device"],
                        "labels": int(row["n"]),
                        "expected_completion": isoformat_utc(finish),
                        "late_by_s": round(late_by),
                        "skus": [sku for sku in skus if sku][:_FLIP_SKUS_SHOWN],
                    }
                )
        if late:
            first = late[0]
            await alerts.raise_(
                FLIP_LATE_ALERT,
                Severity.WARNING,
                f"scheduled flip at {first['due_at']} of {first['labels']} label(s) on "
                f"{first['device']} completes only at {first['expected_completion']} "
                f"({first['late_by_s']} s past the tolerance; SKUs {', '.join(first['skus'])})",
                details={"flips": late},
            )
            await alerts.update_details(FLIP_LATE_ALERT, {"flips": late})
        else:
            await alerts.clear(FLIP_LATE_ALERT, "scheduled flips fit their time")
