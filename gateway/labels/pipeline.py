"""The label pipeline: durable label jobs from price changes to confirmed labels — the thin
object the daemon and the control handlers hold. It composes the stages, gives them one
:class:`~gateway.labels.context.StageContext`, and runs each as a named task::

    planning    price version applied / binding changed / reconcile → job rows (one transaction)
    rendering   faces → PNG + content hash, off the event loop in chunks (a one-thread executor)
    scheduler   promotion starts and ends: pre-rendered ahead, promoted at their instant
    dispatch    ready jobs → the ESL driver that reaches each label, a few seconds of work ahead
    reports     CONFIRMED / FAILED / SEEN → confirmed, retried or re-pushed; what labels show
    upkeep      confirmation timeouts, SLA, driver-down and no-price alerts, drift re-push
    receipts    label_audit rows → the outbox ``receipts`` stream, forwarded mark in the same
                transaction; audit retention
    views       what ``storegw labels`` / ``status`` / ``label show`` print

The tables are the :class:`~gateway.labels.job_store.LabelJobStore`'s alone; what a label
should show is the :class:`~gateway.prices.book.PriceBook`'s. Each stage is woken by the one
that feeds it; the idle interval is only a safety net (and the retry after a failure), so an
idle store reads nothing. A clock jump (wall time moving against monotonic time) triggers a
full re-plan, which converges on the content correct for the new time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import Any

from gateway.alerts import Alerts
from gateway.clock import Clock, isoformat_utc
from gateway.drivers.contracts import LabelModel, LabelReport, Reading
from gateway.errors import StorageError
from gateway.labels.config import LabelsConfig
from gateway.labels.context import DriverMap, PolicyClock, StageContext, Wakeups
from gateway.labels.dispatch import Dispatch
from gateway.labels.flip_windows import FlipWindowStore
from gateway.labels.job_store import LabelJobStore
from gateway.labels.localization import DEFAULT_LOCALE
from gateway.labels.planning import Planning
from gateway.labels.preview import parse_model
from gateway.labels.receipts import Receipts
from gateway.labels.render import LabelRenderer, RenderedLabel
from gateway.labels.rendering import Rendering
from gateway.labels.reports import Reports
from gateway.labels.scheduler import Scheduler
from gateway.labels.shown import ShownLabels, model_text
from gateway.labels.upkeep import Upkeep
from gateway.labels.views import LabelViews
from gateway.labels.wakes import LabelWakes
from gateway.prices.book import PriceBook, WasPrice
from gateway.store.database import Database
from gateway.store.outbox import Outbox

__all__ = ["LabelPipeline"]

_LOGGER = logging.getLogger(__name__)

_TICK_S = 1.0


class LabelPipeline:
    def __init__(
        self,
        *,
        database: Database,
        outbox: Outbox,
        alerts: Alerts | None,
        clock: Clock,
        config: LabelsConfig,
        drivers: DriverMap,
        timezone: str = "UTC",
        locale: str = DEFAULT_LOCALE,
        was_price: WasPrice = "hq",
        rng: random.Random | None = None,
        book: PriceBook | None = None,
    ) -> None:
        self.config = config
        # The daemon's one shared book (its ``was_price`` then rules); a book of its own else.
        self.book = book if book is not None else PriceBook(database, was_price=was_price)
        renderer = LabelRenderer(config.font, config.bold_font, locale=locale, timezone=timezone)
        default_model = model_text(parse_model(config.default_model))
        self._clock = clock
        self._context = StageContext(
            store=LabelJobStore(database, self.book, default_model=default_model),
            shown=ShownLabels(default_model),
            clock=clock,
            policy=PolicyClock(clock),
            config=config,
            drivers=drivers,
            alerts=alerts,
            wake=Wakeups(),
            rng=rng or random.Random(),  # noqa: S311 - retry jitter, not cryptography
        )
        self._planning = Planning(self._context)
        self._rendering = Rendering(self._context, renderer)
        wakes = LabelWakes()
        self._dispatch = Dispatch(self._context, wakes)
        self._reports = Reports(self._context)
        self._receipts = Receipts(self._context, outbox)
        self._scheduler = Scheduler(
            self._context, self._planning, self.book, FlipWindowStore(database)
        )
        self._upkeep = Upkeep(self._context, self._planning, self._receipts, self.book, wakes)
        self._views = LabelViews(self._context, self._planning, self.book)

    async def load(self) -> None:
        """Load what labels show, the forwarded mark and the policy instant; jobs that were
        being handed to a driver when the gateway stopped are queued again (one re-send);
        content drawn for another panel or style than the label's is put right before
        anything is sent."""
        store = self._context.store
        self._context.shown.load(await store.load_shown())
        await self._receipts.load()
        await self._scheduler.load()
        self._upkeep.load()
        await store.requeue_in_flight("in flight at restart: sent again")
        now = isoformat_utc(self._clock.utc_now())
        await store.commit(store.refit(None, now))
        await self._rendering.restyle(now)

    def close(self) -> None:
        self._rendering.close()

    # --- hooks ------------------------------------------------------------------------------

    def on_prices_applied(self, version: int, skus: Collection[str] | None) -> None:
        """PriceDownlink hook, after its commit: ``skus`` changed in ``version`` (None: any —
        a full batch). Planning follows in the planner task."""
        self._planning.on_prices_applied(version, skus)

    def on_bindings_changed(self, labels: Collection[str]) -> None:
        self._planning.on_bindings_changed(labels)

    def on_reading(self, device: str, reading: Reading) -> None:
        """ReadingHub listener: label reports are handled in the reports task (dispatch
        notes when the label checks in next at once)."""
        if isinstance(reading, LabelReport):
            self._dispatch.on_report(reading)
        self._reports.on_reading(device, reading)

    def policy_instant(self) -> tuple[datetime, bool]:
        """(the instant wall-time rules use, whether the clock is synchronised)."""
        return self._context.policy.instant()

    # --- control: a technician's retry and the views -------------------------------------

    async def retry_failed(self, label: str, sku: str, why: str) -> str | None:
        """Queue the label's failed job for ``sku`` (retryable or permanent) again at once,
        audited with ``why`` (a ``label.queued`` receipt with that reason). Returns the job's
        state afterwards (None: the label has no job for ``sku``)."""
        now = isoformat_utc(self._clock.utc_now())
        state = await self._context.store.retry_failed(label, sku, why, now)
        self._context.wake.dispatch.set()
        self._context.wake.receipts.set()
        return state

    async def listing(self, state: str | None = None, limit: int = 200) -> dict[str, Any]:
        return await self._views.listing(state, limit)

    async def summary(self) -> dict[str, Any]:
        return await self._views.summary()

    async def show(self, label: str) -> dict[str, Any]:
        return await self._views.show(label)

    async def render_face(self, face: str, model: LabelModel) -> RenderedLabel:
        """The image a label on ``model`` gets for ``face`` (``label preview``)."""
        return await self._rendering.render_face(face, model)

    # --- each stage's step: what run() loops over, and what tests and benchmarks drive ---

    @property
    def last_plan_s(self) -> float | None:
        return self._planning.last_plan_s

    async def plan_pending(self) -> int:
        return await self._planning.plan_pending()

    async def plan(
        self,
        *,
        skus: Collection[str] | None = None,
        labels: Collection[str] | None = None,
        reason: str = "new content",
    ) -> None:
        await self._planning.plan(skus=skus, labels=labels, reason=reason)

    async def render_some(self) -> int:
        return await self._rendering.render_some()

    async def render_all(self) -> int:
        return await self._rendering.render_all()

    async def dispatch_once(self) -> int:
        return await self._dispatch.dispatch_once()

    async def process_reports(self) -> int:
        return await self._reports.process_reports()

    async def scheduler_pass(self) -> bool:
        return await self._scheduler.scheduler_pass()

    async def next_flip_in(self) -> float | None:
        return await self._scheduler.next_flip_in()

    async def upkeep(self, *, reconcile: bool = True) -> None:
        await self._upkeep.upkeep(reconcile=reconcile)

    async def reconcile(self) -> None:
        await self._upkeep.reconcile()

    async def pump_receipts(self) -> int:
        return await self._receipts.pump_receipts()

    async def prune_audit(self) -> None:
        await self._receipts.prune_audit()

    # --- the loops --------------------------------------------------------------------------

    async def run(self) -> None:
        """Every stage as a named task until cancelled."""
        wake = self._context.wake
        try:
            async with asyncio.TaskGroup() as group:
                # Dispatch also ticks for retry times and confirmation timeouts.
                for name, step, event, idle in (
                    ("labels.planner", self._planning.plan_pending, wake.plan, 15.0),
                    ("labels.render", self._rendering.render_some, wake.render, 15.0),
                    ("labels.dispatch", self._dispatch_step, wake.dispatch, _TICK_S),
                    ("labels.reports", self._reports.process_reports, wake.reports, 15.0),
                    ("labels.receipts", self._receipts.pump_receipts, wake.receipts, 15.0),
                ):
                    group.create_task(_loop(name, step, event, idle), name=name)
                group.create_task(self._scheduler.run(), name="labels.scheduler")
                group.create_task(self._upkeep.run(), name="labels.upkeep")
        finally:
            self.close()

    async def _dispatch_step(self) -> int:
        await self._dispatch.dispatch_once()
        return 0  # paced by reports and the tick, not by its own output


async def _loop(
    name: str, step: Callable[[], Awaitable[int]], wake: asyncio.Event, idle_s: float
) -> None:
    """Run ``step`` while it has work (yielding in between), else wait for ``wake`` or
    ``idle_s``; a failure is logged once, and its recovery."""
    failing = False
    while True:
        wake.clear()
        try:
            busy = await step()
        except StorageError as exc:
            if not failing:
                _LOGGER.warning("%s: %s (retrying)", name, exc)
            failing, busy = True, 0
        except Exception:
            if not failing:
                _LOGGER.exception("%s failed (retrying)", name)
            failing, busy = True, 0
        else:
            if failing:
                _LOGGER.info("%s works again", name)
            failing = False
        if busy:
            await asyncio.sleep(0)  # let the others in between chunks
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(idle_s):
                await wake.wait()
