"""The planning stage: price versions applied, bindings changed, start-up, clock jumps and
reconciliation → label jobs, set-based (one transaction for all affected labels; the SQL is
the job store's, :mod:`gateway.labels._plan_sql`, over the price book's faces).

The hooks only note what changed and wake the stage; planning runs in its own task, so the
downlink and the bindings never wait for it. Faces are planned for the *policy instant*
(:class:`~gateway.labels.context.PolicyClock`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from gateway.labels.context import StageContext

__all__ = ["Planning"]

_LOGGER = logging.getLogger(__name__)


class Planning:
    def __init__(self, context: StageContext) -> None:
        self._context = context
        self._pending_skus: set[str] | None = set()  # None: plan every label
        self._pending_labels: set[str] = set()
        self._requested = False
        self.last_plan_s: float | None = None  # seconds the last planning commit took

    def on_prices_applied(self, version: int, skus: Collection[str] | None) -> None:
        """PriceDownlink hook, after its commit: ``skus`` changed in ``version`` (None: any —
        a full batch)."""
        _LOGGER.debug("price version %d: planning label jobs", version)
        if skus is None or self._pending_skus is None:
            self._pending_skus = None
        else:
            self._pending_skus.update(skus)
        self._request()

    def on_bindings_changed(self, labels: Collection[str]) -> None:
        self._pending_labels.update(labels)
        self._request()

    def _request(self) -> None:
        self._requested = True
        self._context.wake.plan.set()
        self._context.wake.schedule.set()

    async def plan_pending(self) -> int:
        """Plan what the hooks asked for since the last call (the stage's step)."""
        if not self._requested:
            return 0
        skus, labels = self._pending_skus, self._pending_labels
        self._pending_skus, self._pending_labels, self._requested = set(), set(), False
        if skus is None:
            await self.plan(reason="new price version")
        else:
            if skus:
                await self.plan(skus=skus, reason="new price version")
            if labels:
                await self.plan(labels=labels, reason="binding changed")
        return 0

    async def plan(
        self,
        *,
        skus: Collection[str] | None = None,
        labels: Collection[str] | None = None,
        reason: str = "new content",
    ) -> None:
        """Commit jobs for the labels (of ``skus`` / ``labels``; neither: all bound labels)
        whose should-show face changed — one transaction."""
        ctx = self._context
        at, _synced = ctx.policy.instant()
        started = ctx.clock.monotonic()
        now = ctx.clock.utc_now()
        await ctx.store.plan(at=at, now=now, skus=skus, labels=labels, reason=reason)
        self.last_plan_s = ctx.clock.monotonic() - started
        ctx.wake.render.set()
        ctx.wake.receipts.set()
