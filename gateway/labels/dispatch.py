"""The dispatch stage: drawn jobs → the ESL driver that reaches each label, a few seconds of
its radio time ahead.

Per running driver at most ``queue_ahead_s`` of its ``labels_per_minute`` are in flight
(submitted + pending), by priority (a scheduled flip, then new content, then cosmetic
redraws), then by due or queued time. A label whose ESL system said it sleeps until later
(``next_checkin`` of its last report, or deep sleep) gets content only when it wakes: its job
waits at the access point without using the radio, so it does not count against the window
until its wake is within ``queue_ahead_s`` (nor once it is overdue past the fleet health's
600 s grace: timed out). Without this, an access point whose tags sleep minutes between
check-ins would be handed two labels at a time and wait out each wake.
The driver reaching a label is the one that last reported it; with a single ESL driver, unheard
labels go to it. A job is marked *submitted* (committed) before ``push``, *pending* after it
returns; a failure is retried with backoff, a :class:`~gateway.errors.DriverConfigError` is
permanent, and a refusal naming the label's panel has the content drawn again for it. When the
supervisor restarts a driver (a new driver object), what was in flight to it goes again at
once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.clock import isoformat_utc
from gateway.drivers.contracts import LabelContent, LabelDriver, LabelModel, LabelReport
from gateway.errors import DriverConfigError, LabelPanelMismatchError
from gateway.labels.context import StageContext, sole_device
from gateway.labels.health import CHECKIN_GRACE
from gateway.labels.job_store import Row, Statement
from gateway.labels.jobs import JobFacts, JobState, after_push
from gateway.labels.preview import parse_model
from gateway.labels.shown import model_text
from gateway.labels.wakes import LabelWakes

__all__ = ["Dispatch"]

_LOGGER = logging.getLogger(__name__)

_DISPATCH_CAP = 20_000  # jobs handed to one driver per pass, whatever its rate


@dataclass(slots=True)
class _Pushed:
    label: str
    rev: int
    attempts: int
    error: str | None = None
    permanent: bool = False
    panel: str | None = None  # the ESL system named another panel: drawn again for it


class Dispatch:
    def __init__(self, context: StageContext, wakes: LabelWakes) -> None:
        self._context = context
        self._dispatched_to: dict[str, LabelDriver] = {}  # the driver object last pushed to
        self._wakes = wakes

    def on_report(self, report: LabelReport) -> None:
        """Note when the label checks in next, as its ESL system says."""
        self._wakes.on_report(report)

    async def dispatch_once(self) -> int:
        """Hand ready jobs to the drivers that reach their labels, each up to a few seconds
        of its radio time; returns how many were pushed (the stage's step)."""
        ctx = self._context
        drivers = ctx.drivers()
        fallback = sole_device(drivers)
        now = ctx.clock.utc_now()
        pushed = 0
        for device, driver in drivers.items():
            if driver is None:
                continue
            previous = self._dispatched_to.get(device)
            if previous is not None and previous is not driver:
                # The supervisor restarted this driver: what its access point held is gone
                # (or unknown), so what was in flight goes again now — once — instead of
                # waiting out confirm_timeout_s.
                why = f"in flight when driver {device} restarted: sent again"
                await ctx.store.requeue_in_flight(why, device)
            self._dispatched_to[device] = driver
            handed = 0
            while handed < _DISPATCH_CAP:  # again while what went waits for sleeping labels
                capacity = min(await self._capacity(device, driver, now), _DISPATCH_CAP - handed)
                if capacity <= 0:
                    break
                rows = await ctx.store.ready(device, fallback, isoformat_utc(now), capacity)
                if not rows:
                    break
                handed += len(rows)
                accepted = await self._push(device, driver, rows, now)
                pushed += accepted
                if accepted < len(rows):
                    break  # refusals or stale renders: the next pass
        return pushed

    async def _capacity(self, device: str, driver: LabelDriver, now: datetime) -> int:
        config = self._context.config
        window = max(1, math.ceil(driver.labels_per_minute / 60 * config.queue_ahead_s))
        cutoff = now - timedelta(seconds=config.confirm_timeout_s)
        soon = now + timedelta(seconds=config.queue_ahead_s)
        gone = now - CHECKIN_GRACE  # due to wake before this: timed out, not on the radio
        busy = 0
        for label in await self._context.store.in_flight(device, cutoff):
            wake = self._wakes.next_checkin(label)
            busy += wake is None or gone <= wake <= soon  # asleep until later: not yet
        return min(_DISPATCH_CAP, window - busy)

    async def _push(
        self, device: str, driver: LabelDriver, rows: Sequence[Row], now: datetime
    ) -> int:
        ctx = self._context
        now_text = isoformat_utc(now)
        ready = await self._drop_stale_renders(rows)
        if not ready:
            return 0
        images = await ctx.store.images({str(r["content_hash"]) for r in ready})
        await ctx.store.claim(ready, device, now_text)
        models: dict[str, LabelModel] = {}
        results: list[_Pushed] = []
        for row in ready:
            model_name = str(row["model"])
            if model_name not in models:
                models[model_name] = parse_model(model_name)
            content = LabelContent(
                label_id=str(row["label"]),
                image_png=images[str(row["content_hash"])],
                content_hash=str(row["content_hash"]),
                model=models[model_name],
            )
            result = _Pushed(content.label_id, int(row["rev"]), int(row["attempts"]) + 1)
            await _push_one(driver, content, model_name, result)
            results.append(result)
        statements: list[Statement] = []
        for result in results:
            if result.panel is not None:
                statements += self._panel_named(device, result, now_text)
                continue
            outcome = after_push(
                JobFacts(result.label, JobState.SUBMITTED, None, result.attempts),
                error=result.error,
                permanent=result.permanent,
                now=now,
                rng=ctx.rng,
                initial_s=ctx.config.retry_initial_s,
                max_s=ctx.config.retry_max_s,
            )
            if outcome.state is JobState.PENDING:
                statements.append(ctx.store.to_pending(result.label, result.rev))
                self._wakes.pushed(result.label, now)
            else:
                statements += ctx.store.transition(result.label, result.rev, outcome, now_text)
        await ctx.store.commit(statements)
        failed = sum(1 for r in results if r.error is not None)
        if failed:
            _LOGGER.info("%d of %d label push(es) to %s failed", failed, len(results), device)
            ctx.wake.receipts.set()
        if any(r.panel is not None for r in results):
            ctx.wake.render.set()
        return len(results) - failed

    def _panel_named(self, device: str, result: _Pushed, now: str) -> list[Statement]:
        """The ESL system refused content for its size and named the label's panel: that is
        the label's model now, and its content is drawn again for it."""
        assert result.panel is not None
        shown = self._context.shown.name_panel(result.label, device, result.panel, now)
        _LOGGER.info(
            "label %s: the ESL system says its panel is %s: drawing its content again",
            result.label,
            result.panel,
        )
        return [
            self._context.store.shown(result.label, shown),
            *self._context.store.refit(
                [result.label], now, reason=f"{result.error}: drawn again for {result.panel}"
            ),
        ]

    async def _drop_stale_renders(self, rows: Sequence[Row]) -> list[Row]:
        """Rows rendered for another panel than the label's driver reports go back to the
        render stage; the others are returned."""
        ready, stale = [], []
        for row in rows:
            label = str(row["label"])
            model = self._context.shown.panel(label)
            if model is not None and model != row["model"]:
                stale.append((label, int(row["rev"])))
            else:
                ready.append(row)
        if stale:
            await self._context.store.rerender(stale)
            self._context.wake.render.set()
        return ready


async def _push_one(
    driver: LabelDriver, content: LabelContent, model_name: str, result: _Pushed
) -> None:
    """Hand one label's content to its driver; how it went lands in ``result``."""
    try:
        await driver.push(content)
    except LabelPanelMismatchError as exc:
        panel = model_text(exc.panel) if exc.panel is not None else None
        result.error = f"{type(exc).__name__}: {exc}"
        if panel is not None and panel != model_name:
            result.panel = panel  # drawn again for it, at once
        # else: the ESL system does not say which panel: retried after a backoff, by then
        # the label may have reported it.
    except DriverConfigError as exc:
        result.error, result.permanent = str(exc), True
    except Exception as exc:  # noqa: BLE001 - any driver failure is retried later
        result.error = f"{type(exc).__name__}: {exc}"
