"""The upkeep stage: confirmation timeouts, reconciliation, and the alerts that say what a
technician should look at.

Every ``reconcile_interval_s``: every face re-planned, content drawn for another panel than
the label's drawn again, confirmed jobs whose label shows other content pushed again (drift),
``label.no_price:{sku}`` for bound SKUs without a price. Every 10 s: pending jobs unconfirmed
for ``confirm_timeout_s`` retried (counted from the label's next check-in when its ESL system
said it was asleep at the push: :mod:`~gateway.labels.wakes`), one aggregated ``label.sla``
alert (count, oldest due time, first 20 labels — not one per label),
``label.driver_down:{device}`` while jobs wait for a driver that is not running, audit
retention and image collection. Alerts are raised and cleared on change.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from gateway.alerts import Severity
from gateway.clock import isoformat_utc
from gateway.labels.context import StageContext, sole_device
from gateway.labels.job_store import Statement
from gateway.labels.jobs import JobFacts, JobState, on_confirmation_timeout
from gateway.labels.planning import Planning
from gateway.labels.receipts import Receipts
from gateway.labels.wakes import LabelWakes
from gateway.prices.book import PriceBook

__all__ = ["DRIVER_DOWN_ALERT", "NO_PRICE_ALERT", "SLA_ALERT", "Upkeep"]

_LOGGER = logging.getLogger(__name__)

SLA_ALERT = "label.sla"
DRIVER_DOWN_ALERT = "label.driver_down:"
NO_PRICE_ALERT = "label.no_price:"


class Upkeep:
    def __init__(
        self,
        context: StageContext,
        planning: Planning,
        receipts: Receipts,
        book: PriceBook,
        wakes: LabelWakes,
    ) -> None:
        self._context = context
        self._wakes = wakes
        self._planning = planning
        self._receipts = receipts
        self._book = book
        self._no_price: set[str] = set()
        self._drivers_down: set[str] = set()

    def load(self) -> None:
        """The no-price alerts already raised (so they are cleared when priced)."""
        alerts = self._context.alerts
        self._no_price = {
            alert.key.removeprefix(NO_PRICE_ALERT)
            for alert in (alerts.active() if alerts else ())
            if alert.key.startswith(NO_PRICE_ALERT)
        }

    async def upkeep(self, *, reconcile: bool = True) -> None:
        """One round (the stage's step); ``reconcile`` adds the reconciliation."""
        now = self._context.clock.utc_now()
        await self._time_out_pending(now)
        if reconcile:
            await self.reconcile()
        await self._check_sla(now)
        await self._check_drivers()
        await self._receipts.prune_audit()
        await self._context.store.collect_images()

    async def run(self) -> None:
        """Task ``labels.upkeep``: a round every 10 s (reconciling every
        ``reconcile_interval_s``), until cancelled."""
        config, clock = self._context.config, self._context.clock
        last_reconcile = clock.monotonic()
        while True:
            await asyncio.sleep(min(10.0, config.reconcile_interval_s))
            due = clock.monotonic() - last_reconcile >= config.reconcile_interval_s
            try:
                await self.upkeep(reconcile=due)
            except Exception:
                _LOGGER.exception("label upkeep failed (retrying)")
            if due:
                last_reconcile = clock.monotonic()

    async def reconcile(self) -> None:
        """Should-show vs last confirmed for every bound label: faces re-planned, content
        drawn for another panel than the label's drawn again, drifted labels re-pushed,
        bound SKUs without a price alerted."""
        ctx = self._context
        await self._planning.plan(reason="reconciliation")
        now = isoformat_utc(ctx.clock.utc_now())
        await ctx.store.commit([*ctx.store.refit(None, now), *ctx.store.requeue_drifted(now)])
        ctx.wake.render.set()
        ctx.wake.dispatch.set()
        ctx.wake.receipts.set()
        await self._check_no_price()

    async def _time_out_pending(self, now: datetime) -> None:
        ctx = self._context
        timeout = timedelta(seconds=ctx.config.confirm_timeout_s)
        rows = await ctx.store.pending_since(now - timeout)
        statements: list[Statement] = []
        now_text = isoformat_utc(now)
        for row in rows:
            deadline = self._wakes.confirm_deadline(str(row["label"]), timeout)
            if deadline is not None and now < deadline:
                continue  # asleep when pushed: its clock started at its check-in
            outcome = on_confirmation_timeout(
                JobFacts(str(row["label"]), JobState.PENDING, None, int(row["attempts"])),
                waited_s=ctx.config.confirm_timeout_s,
                now=now,
                rng=ctx.rng,
                initial_s=ctx.config.retry_initial_s,
                max_s=ctx.config.retry_max_s,
            )
            label, rev = str(row["label"]), int(row["rev"])
            statements += ctx.store.transition(label, rev, outcome, now_text)
        if statements:
            await ctx.store.commit(statements)
            ctx.wake.receipts.set()

    async def _check_no_price(self) -> None:
        alerts = self._context.alerts
        if alerts is None:
            return
        bound = await self._context.store.bound_skus()
        missing = {sku: bound[sku] for sku in await self._book.unpriced(bound)}
        for sku in sorted(missing.keys() - self._no_price):
            await alerts.raise_(
                NO_PRICE_ALERT + sku,
                Severity.WARNING,
                f"SKU {sku} is bound to {missing[sku]} label(s) but has no price: they show "
                "'price unavailable'",
                details={"sku": sku, "labels": missing[sku]},
            )
        for sku in sorted(self._no_price - missing.keys()):
            await alerts.clear(NO_PRICE_ALERT + sku, "priced or unbound")
        self._no_price = set(missing)

    async def _check_sla(self, now: datetime) -> None:
        alerts, sla_s = self._context.alerts, self._context.config.sla_s
        if alerts is None:
            return
        rows = await self._context.store.late(now - timedelta(seconds=sla_s))
        if not rows:
            await alerts.clear(SLA_ALERT, "every label is confirmed within its SLA")
            return
        details = {
            "count": len(rows),
            "oldest_due": rows[0]["due"],
            "labels": [f"{r['label']} ({r['state']})" for r in rows[:20]],
        }
        await alerts.raise_(
            SLA_ALERT,
            Severity.WARNING,
            f"{len(rows)} label(s) not confirmed within {sla_s:g} s of their due "
            "time (storegw labels --state failed / pending / awaiting_model)",
            details=details,
        )
        await alerts.update_details(SLA_ALERT, details)

    async def _check_drivers(self) -> None:
        alerts = self._context.alerts
        if alerts is None:
            return
        drivers = self._context.drivers()
        fallback = sole_device(drivers)
        for device, driver in sorted(drivers.items()):
            key = DRIVER_DOWN_ALERT + device
            if driver is not None:
                if device in self._drivers_down:
                    self._drivers_down.discard(device)
                    await alerts.clear(key, "driver running again")
                continue
            waiting = await self._context.store.waiting_for(device, fallback)
            if waiting:
                self._drivers_down.add(device)
                await alerts.raise_(
                    key,
                    Severity.CRITICAL,
                    f"ESL driver {device} is not running: {waiting} label job(s) wait for it",
                    details={"waiting": waiting},
                )
                await alerts.update_details(key, {"waiting": waiting})
            elif device in self._drivers_down:
                self._drivers_down.discard(device)
                await alerts.clear(key, "no label job waits for it")
        for device in sorted(self._drivers_down - drivers.keys()):  # removed from the config
            self._drivers_down.discard(device)
            await alerts.clear(DRIVER_DOWN_ALERT + device, "driver removed")
