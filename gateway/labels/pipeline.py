"""The label pipeline service: durable label jobs from price changes to confirmed labels.

Stages, each a step method (tests call them directly) and a named loop under :meth:`run`::

    planner    price version applied / binding changed / reconcile → job rows (one transaction)
    render     faces → PNG + content hash, off the event loop in chunks (a one-thread executor)
    scheduler  promotion starts and ends: pre-rendered ahead, promoted at their instant
    dispatch   ready jobs → the ESL driver that reaches each label, a few seconds of work ahead
    reports    CONFIRMED / FAILED / SEEN → confirmed, retried or re-pushed; what labels show
    upkeep     confirmation timeouts, SLA, driver-down and no-price alerts, drift re-push
    receipts   label_audit rows → the outbox ``receipts`` stream, forwarded mark in the same
               transaction; audit retention

Every state change writes its ``label_audit`` row in the same transaction; receipts flow up from
the audit table, so pushing labels never waits on the uplink or the outbox budget.

Wall-time decisions use the *policy instant*: the clock's time while it is synchronised, else
the last synchronised instant — so while unsynced, what is in force stays in force and no
scheduled flip happens. A clock jump (wall time moving against monotonic time) triggers a full
re-plan, which converges on the content correct for the new time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from gateway.alerts import Alerts, Severity
from gateway.clock import Clock, isoformat_utc
from gateway.config import LabelsConfig
from gateway.drivers.contracts import (
    LabelContent,
    LabelDriver,
    LabelModel,
    LabelReport,
    LabelReportKind,
    Reading,
)
from gateway.errors import DriverConfigError, LabelPanelMismatchError, StorageError
from gateway.labels.jobs import (
    AuditEvent,
    JobFacts,
    JobState,
    Outcome,
    ReportFacts,
    after_push,
    after_render,
    on_confirmation_timeout,
    on_report,
)
from gateway.labels.localization import DEFAULT_LOCALE
from gateway.labels.planner import BOUNDARIES, FACES, LabelPlanner, Statement
from gateway.labels.preview import parse_model
from gateway.labels.render import LabelFace, LabelRenderer, RenderedLabel
from gateway.prices.book import PriceBook, WasPrice
from gateway.store.database import Database
from gateway.store.outbox import Outbox
from gateway.wire.envelope import EventBody
from gateway.wire.labels import (
    LabelConfirmed,
    LabelExpired,
    LabelFailed,
    LabelQueued,
    LabelSuperseded,
)

__all__ = ["RECEIPT_TYPES", "LabelPipeline", "face_to_label"]

_LOGGER = logging.getLogger(__name__)

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

SLA_ALERT = "label.sla"
FLIP_LATE_ALERT = "label.flip_late"
DRIVER_DOWN_ALERT = "label.driver_down:"
NO_PRICE_ALERT = "label.no_price:"

_FORWARDED_KEY = "label_audit_forwarded"
_POLICY_KEY = "labels_policy_at"
_STYLE_KEY = "labels_style"  # the renderer's style the labels' content was drawn in

# The renderer's style changed (locale, time zone, fonts or template): every label's content,
# confirmed or not, and every pre-rendered flip is drawn again (audit: ?1 now, ?2 the reason;
# jobs: ?1 the reason). Each label shows its right price meanwhile, so these redraws go last
# (scheduled -1): a content change made later (a price, a flip, a drift) is rendered and
# sent before them, not after hours of redraws.
_RESTYLE_AUDIT = (
    "INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, "
    "detail) SELECT ?1, label, 'superseded', state, sku, price_version, content_hash, ?2 "
    "FROM label_jobs WHERE content_hash IS NOT NULL "
    "AND state IN ('queued', 'submitted', 'pending', 'failed')"
)
_RESTYLE_JOBS = (
    "UPDATE label_jobs SET state = 'queued', rev = rev + 1, content_hash = NULL, model = NULL, "
    "attempts = 0, next_attempt_at = NULL, device = NULL, submitted_at = NULL, "
    "confirmed_at = NULL, evidence = NULL, last_error = ?1, scheduled = -1 "
    "WHERE content_hash IS NOT NULL AND state <> 'failed_permanent'"
)
_RESTYLE_FLIPS = (
    "UPDATE label_schedule SET content_hash = NULL, model = NULL WHERE content_hash IS NOT NULL"
)
_RENDER_CHUNK = 64
_DISPATCH_CAP = 20_000  # jobs handed to one driver per pass, whatever its rate
_REPORT_BATCH = 2_000
_PUMP_BATCH = 1_000
_JUMP_S = 2.0  # wall time moving this much against monotonic time is a clock jump
_TICK_S = 1.0

DriverMap = Callable[[], Mapping[str, LabelDriver | None]]

_AUDIT_JOB = (
    "INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, "
    "detail) SELECT ?1, label, ?2, state, sku, price_version, content_hash, ?3 "
    "FROM label_jobs WHERE label = ?4 AND rev = ?5"
)
_RENDERED_JOB = (
    "UPDATE label_jobs SET content_hash = ?1, model = ?2, state = ?3, "
    "confirmed_at = ?4, evidence = ?5 WHERE label = ?6 AND rev = ?7 AND state = 'queued' "
    "AND content_hash IS NULL"
)
_RENDERED_SCHEDULE = (
    "UPDATE label_schedule SET content_hash = ?1, model = ?2 "
    "WHERE label = ?3 AND due_at = ?4 AND face = ?5"
)
_STORE_IMAGE = (
    "INSERT INTO label_images (content_hash, png, created_at) VALUES (?, ?, ?) "
    "ON CONFLICT (content_hash) DO NOTHING"
)
_COLLECT_IMAGES = (
    "DELETE FROM label_images WHERE content_hash NOT IN "
    "(SELECT content_hash FROM label_jobs WHERE content_hash IS NOT NULL) "
    "AND content_hash NOT IN "
    "(SELECT content_hash FROM label_schedule WHERE content_hash IS NOT NULL)"
)
_RERENDER = (
    "UPDATE label_jobs SET content_hash = NULL, model = NULL "
    "WHERE label = ? AND rev = ? AND state IN ('queued', 'failed')"
)
_CLAIM = (
    "UPDATE label_jobs SET state = 'submitted', attempts = attempts + 1, submitted_at = ?1, "
    "device = ?2 WHERE label = ?3 AND rev = ?4 AND state IN ('queued', 'failed')"
)
_TO_PENDING = (
    "UPDATE label_jobs SET state = 'pending' WHERE label = ? AND rev = ? AND state = 'submitted'"
)
_TO_CONFIRMED = (
    "UPDATE label_jobs SET state = 'confirmed', confirmed_at = ?1, evidence = ?2, "
    "last_error = NULL, next_attempt_at = NULL WHERE label = ?3 AND rev = ?4"
)
_TO_FAILED = (
    "UPDATE label_jobs SET state = ?1, next_attempt_at = ?2, last_error = ?3 "
    "WHERE label = ?4 AND rev = ?5"
)
_TO_REQUEUED = (
    "UPDATE label_jobs SET state = 'queued', attempts = 0, next_attempt_at = NULL, "
    "confirmed_at = NULL, evidence = NULL, last_error = ?1, queued_at = ?2, order_at = ?2, "
    "scheduled = 0 WHERE label = ?3 AND rev = ?4"
)
_REQUEUE_DRIFTED = (
    "UPDATE label_jobs SET state = 'queued', attempts = 0, confirmed_at = NULL, "
    "last_error = 'drift found by reconciliation', queued_at = ?1, order_at = ?1, "
    "scheduled = 0 WHERE state = 'confirmed' AND content_hash IS NOT NULL AND content_hash "
    "IS NOT (SELECT content_hash FROM label_shown s WHERE s.label = label_jobs.label)"
)
_AUDIT_DRIFTED = (
    "INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, "
    "detail) SELECT ?1, label, 'requeued', 'queued', sku, price_version, content_hash, "
    "'reconciliation: the label does not show its confirmed content' FROM label_jobs "
    "WHERE state = 'confirmed' AND content_hash IS NOT NULL AND content_hash "
    "IS NOT (SELECT content_hash FROM label_shown s WHERE s.label = label_jobs.label)"
)
_SHOWN_UPSERT = (
    "INSERT INTO label_shown (label, content_hash, evidence, at, device, model) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (label) DO UPDATE SET "
    "content_hash = excluded.content_hash, evidence = excluded.evidence, at = excluded.at, "
    "device = excluded.device, model = excluded.model"
)
_READY = (
    "SELECT j.label, j.rev, j.content_hash, j.model, j.attempts, j.scheduled "
    "FROM label_jobs j LEFT JOIN label_shown s ON s.label = j.label "
    "WHERE j.content_hash IS NOT NULL AND j.state IN ('queued', 'failed') "
    "AND (j.state = 'queued' OR j.next_attempt_at <= ?1) AND coalesce(s.device, ?2) = ?3 "
    "ORDER BY j.scheduled DESC, j.order_at LIMIT ?4"
)
_SET_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
    "DO UPDATE SET value = excluded.value"
)
_TO_AWAITING_MODEL = (
    "UPDATE label_jobs SET state = 'awaiting_model', last_error = ?1 "
    "WHERE label = ?2 AND rev = ?3 AND state = 'queued' AND content_hash IS NULL"
)
_AWAITING_NOTE = "waiting for the label to report its panel (no ESL driver has heard it yet)"

# --- panels: content is drawn for the panel its label reports -------------------------------


def _refit_sql(*, some: bool) -> tuple[str, str, str, str]:
    """The statements that put content on its label's panel: for the labels in ?2 (a JSON
    array; ``some``) or for every label (?2 NULL). ?1 is the configured default panel.

    A label's panel is the model its driver reported, or the default when the driver reports
    none; labels no driver has heard have none, and their jobs wait for it (awaiting_model)
    until they are heard. Content drawn for another panel than the label's is drawn again
    from ``queued`` with a new rev (a render or push of the old content finishing late lands
    nowhere); active jobs (HQ heard of their hash) are audited as superseded. ?3 now and ?4
    the reason (NULL: the panels named) for the audit; ?3 the reason for the jobs.
    """
    which = "label IN (SELECT value FROM json_each(?2))" if some else "?2 IS NULL"
    panels = f"(SELECT label, coalesce(model, ?1) AS model FROM label_shown WHERE {which})"  # noqa: S608
    # The label shows nothing of this content yet: in line with other content changes, even
    # when it was a redraw in a new style (scheduled -1, sent last).
    awaiting_to_queued = (
        "UPDATE label_jobs SET state = 'queued', last_error = NULL, "  # noqa: S608
        "scheduled = max(scheduled, 0) "
        f"WHERE state = 'awaiting_model' AND label IN (SELECT label FROM {panels})"
    )
    audit = f"""
INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, detail)
SELECT ?3, j.label, 'superseded', j.state, j.sku, j.price_version, j.content_hash,
  coalesce(?4, 'drawn for ' || j.model || ', the label''s panel is ' || p.model
    || ': drawn again')
FROM {panels} AS p JOIN label_jobs j ON j.label = p.label
WHERE j.content_hash IS NOT NULL AND j.model IS NOT p.model
  AND j.state IN ('queued', 'submitted', 'pending', 'failed')
"""  # noqa: S608 - constant fragments
    jobs = f"""
UPDATE label_jobs SET state = 'queued', rev = label_jobs.rev + 1, content_hash = NULL,
  model = NULL, attempts = 0, next_attempt_at = NULL, device = NULL, submitted_at = NULL,
  confirmed_at = NULL, evidence = NULL, scheduled = max(label_jobs.scheduled, 0),
  last_error = coalesce(?3, 'drawn for ' || label_jobs.model || ', the label''s panel is '
    || p.model || ': drawn again')
FROM {panels} AS p
WHERE p.label = label_jobs.label AND label_jobs.content_hash IS NOT NULL
  AND label_jobs.model IS NOT p.model
"""  # noqa: S608 - constant fragments
    schedule = f"""
UPDATE label_schedule SET content_hash = NULL, model = NULL
FROM {panels} AS p
WHERE p.label = label_schedule.label AND label_schedule.content_hash IS NOT NULL
  AND label_schedule.model IS NOT p.model
"""  # noqa: S608 - constant fragments
    return awaiting_to_queued, audit, jobs, schedule


_REFIT_ALL = _refit_sql(some=False)
_REFIT_SOME = _refit_sql(some=True)

# A technician's `label bind` of the SKU a failed job is for: queued again now.
_AUDIT_RETRIED = (
    "INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, "
    "detail) SELECT ?1, label, 'requeued', 'queued', sku, price_version, content_hash, ?2 "
    "FROM label_jobs WHERE label = ?3 AND sku = ?4 AND state IN ('failed', 'failed_permanent')"
)
_RETRY_FAILED = (
    "UPDATE label_jobs SET state = 'queued', attempts = 0, next_attempt_at = NULL, "
    "scheduled = max(scheduled, 0) "
    "WHERE label = ?1 AND sku = ?2 AND state IN ('failed', 'failed_permanent')"
)


@dataclass(slots=True)
class _Shown:
    content_hash: str | None
    evidence: str
    at: str
    device: str | None
    model: str | None


@dataclass(slots=True)
class _Pushed:
    label: str
    rev: int
    attempts: int
    error: str | None = None
    permanent: bool = False
    panel: str | None = None  # the ESL system named another panel: drawn again for it


def model_text(model: LabelModel) -> str:
    return f"{model.width}x{model.height}:{model.palette.value}"


def face_to_label(face_json: str) -> LabelFace:
    """A planned face (canonical JSON from the price book) as the renderer's input; the blank
    face of an unbound label is the "not in use" face. How its money and dates are written is
    the renderer's (the store's locale and time zone)."""
    face = json.loads(face_json)
    if face.get("blank"):
        return LabelFace.not_in_use()
    until = face.get("promotion_until")
    return LabelFace(
        sku=str(face["sku"]),
        name=face.get("name"),
        price=face.get("price"),
        currency=face.get("currency") or "EUR",
        unit_price=face.get("unit_price"),
        unit=face.get("unit"),
        reference_price=face.get("reference_price"),
        promotion=face.get("promotion"),
        promotion_until=datetime.fromisoformat(until) if until else None,
    )


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
    ) -> None:
        self._db = database
        self._outbox = outbox
        self._alerts = alerts
        self._clock = clock
        self.config = config
        self._drivers = drivers
        self.book = PriceBook(database, was_price=was_price)
        self._rng = rng or random.Random()  # noqa: S311 - retry jitter, not cryptography
        self._renderer = LabelRenderer(
            config.font, config.bold_font, locale=locale, timezone=timezone
        )
        self._default_model = model_text(parse_model(config.default_model))
        self._executor: ThreadPoolExecutor | None = None
        self._shown: dict[str, _Shown] = {}
        self._reports: list[tuple[str, LabelReport]] = []
        self._pending_skus: set[str] | None = set()  # None: plan every label
        self._pending_labels: set[str] = set()
        self._plan_requested = False
        self._policy_at: datetime | None = None
        self._offset: float | None = None  # wall - monotonic at the last scheduler pass
        self._planned_at_start = False
        self._forwarded = 0
        self._no_price: set[str] = set()
        self._drivers_down: set[str] = set()
        self._dispatched_to: dict[str, LabelDriver] = {}  # the driver object last pushed to
        self._wake = {
            name: asyncio.Event()
            for name in ("plan", "render", "dispatch", "reports", "schedule", "receipts")
        }
        self.last_plan_s: float | None = None  # seconds the last planning commit took

    # --- set-up -------------------------------------------------------------------------

    async def load(self) -> None:
        """Load what labels show, the forwarded mark and the policy instant; jobs that were
        being handed to a driver when the gateway stopped are queued again (one re-send)."""
        rows = await self._db.fetchall(
            "SELECT label, content_hash, evidence, at, device, model FROM label_shown"
        )
        self._shown = {
            str(r["label"]): _Shown(
                r["content_hash"], r["evidence"], r["at"], r["device"], r["model"]
            )
            for r in rows
        }
        meta = {
            str(r["key"]): str(r["value"])
            for r in await self._db.fetchall(
                "SELECT key, value FROM meta WHERE key IN (?, ?, ?)",
                (_FORWARDED_KEY, _POLICY_KEY, _STYLE_KEY),
            )
        }
        self._forwarded = int(meta.get(_FORWARDED_KEY, "0"))
        if _POLICY_KEY in meta:
            self._policy_at = datetime.fromisoformat(meta[_POLICY_KEY])
        self._no_price = {
            alert.key.removeprefix(NO_PRICE_ALERT)
            for alert in (self._alerts.active() if self._alerts else ())
            if alert.key.startswith(NO_PRICE_ALERT)
        }
        await self._db.submit(
            "UPDATE label_jobs SET state = 'queued', last_error = 'in flight at restart: "
            "sent again' WHERE state IN ('submitted', 'pending')"
        )
        # Content drawn for a panel the label does not have (or jobs parked while the label
        # was unheard) is put right before anything is sent.
        now = isoformat_utc(self._clock.utc_now())
        await self._db.submit_atomic(self._refit_statements(None, now))
        await self._restyle(meta.get(_STYLE_KEY), now)

    async def _restyle(self, drawn_in: str | None, now: str) -> None:
        """Content drawn in another style than the renderer's (the store's locale, time zone,
        fonts or the template changed; or drawn before styles were recorded) is drawn again."""
        style = self._renderer.style
        if drawn_in == style:
            return
        reason = f"label style changed ({drawn_in or 'unrecorded'} → {style}): drawn again"
        await self._db.submit_atomic(
            [
                (_RESTYLE_AUDIT, (now, reason)),
                (_RESTYLE_JOBS, (reason,)),
                (_RESTYLE_FLIPS, ()),
                (_SET_META, (_STYLE_KEY, style)),
            ]
        )
        _LOGGER.log(logging.INFO if drawn_in is None else logging.WARNING, "labels: %s", reason)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # --- hooks --------------------------------------------------------------------------

    def on_prices_applied(self, version: int, skus: Collection[str] | None) -> None:
        """PriceDownlink hook, after its commit: ``skus`` changed in ``version`` (None: any —
        a full batch). Planning follows in the planner task."""
        _LOGGER.debug("price version %d: planning label jobs", version)
        if skus is None or self._pending_skus is None:
            self._pending_skus = None
        else:
            self._pending_skus.update(skus)
        self._plan_requested = True
        self._wake["plan"].set()
        self._wake["schedule"].set()

    def on_bindings_changed(self, labels: Collection[str]) -> None:
        self._pending_labels.update(labels)
        self._plan_requested = True
        self._wake["plan"].set()
        self._wake["schedule"].set()

    def on_reading(self, device: str, reading: Reading) -> None:
        """ReadingHub listener: label reports are handled in the reports task."""
        if isinstance(reading, LabelReport):
            self._reports.append((device, reading))
            self._wake["reports"].set()

    # --- time ---------------------------------------------------------------------------

    def policy_instant(self) -> tuple[datetime, bool]:
        """(the instant wall-time rules use, whether the clock is synchronised)."""
        if self._clock.is_synchronized():
            self._policy_at = self._clock.utc_now()
            return self._policy_at, True
        if self._policy_at is None:  # never synced: the best there is, but nothing scheduled
            return self._clock.utc_now(), False
        return self._policy_at, False

    # --- planning -----------------------------------------------------------------------

    async def plan_pending(self) -> int:
        """Plan what the hooks asked for since the last call; returns the labels staged."""
        if not self._plan_requested:
            return 0
        skus, labels = self._pending_skus, self._pending_labels
        self._pending_skus, self._pending_labels, self._plan_requested = set(), set(), False
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
        at, _synced = self.policy_instant()
        started = self._clock.monotonic()
        await self._db.submit_atomic(
            LabelPlanner.plan_statements(
                at=at,
                now=self._clock.utc_now(),
                skus=skus,
                labels=labels,
                reason=reason,
                was_price=self.book.was_price,
            )
        )
        self.last_plan_s = self._clock.monotonic() - started
        self._wake["render"].set()
        self._wake["receipts"].set()

    # --- rendering ----------------------------------------------------------------------

    async def render_some(self, limit: int = _RENDER_CHUNK) -> int:
        """Render up to ``limit`` faces — scheduled flips first (they have a deadline), then
        jobs (scheduled ones first); returns how many were rendered."""
        # Ordered by SKU too, so labels sharing a face share a chunk (drawn once). Flips of
        # labels no driver has heard wait for their panel (promoted undrawn, they wait as jobs).
        rows = await self._db.fetchall(
            "SELECT label, due_at, face FROM label_schedule WHERE content_hash IS NULL "
            "AND label IN (SELECT label FROM label_shown) ORDER BY due_at, sku LIMIT ?",
            (limit,),
        )
        if rows:
            await self._render_schedule(rows)
            return len(rows)
        rows = await self._db.fetchall(
            "SELECT label, rev, face FROM label_jobs WHERE content_hash IS NULL "
            "AND state = 'queued' "
            "ORDER BY scheduled DESC, order_at, sku LIMIT ?",
            (limit,),
        )
        if rows:
            await self._render_jobs(rows)
        return len(rows)

    async def render_all(self) -> int:
        total = 0
        while count := await self.render_some():
            total += count
        return total

    async def _render(self, items: list[tuple[str, str]]) -> list[tuple[bytes, str]]:
        jobs = [(self._label_face(face), parse_model(model)) for face, model in items]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._render_executor(), _render_chunk, self._renderer, jobs
        )

    def _render_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="label-render")
        return self._executor

    def _label_face(self, face: str) -> LabelFace:
        """A planned face as the renderer's input: the one conversion, for jobs, flips and
        previews alike (the face itself carries every price; nothing is added here)."""
        return face_to_label(face)

    async def render_face(self, face: str, model: LabelModel) -> RenderedLabel:
        """The image a label on ``model`` gets for ``face`` — ``label preview`` draws with
        this, so its bytes are the shelf's (in the render thread: fonts are not shared
        across threads)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._render_executor(), self._renderer.render, self._label_face(face), model
        )

    def _model_for(self, label: str) -> str | None:
        """The panel the label's content is drawn for: the model its driver reported, the
        configured default when its driver reports none; None while no driver heard it."""
        shown = self._shown.get(label)
        if shown is None:
            return None
        return shown.model or self._default_model

    async def _render_schedule(self, rows: Sequence[Any]) -> None:
        # The query picked labels with a panel; a panel never goes away.
        items = [(str(r["face"]), self._model_for(str(r["label"])) or "") for r in rows]
        rendered = await self._render(items)
        now = isoformat_utc(self._clock.utc_now())
        await self._db.submit_atomic(
            [(_STORE_IMAGE, image) for image in _distinct_images(rendered, now)]
            + [
                (_RENDERED_SCHEDULE, (digest, model, r["label"], r["due_at"], r["face"]))
                for r, (_, digest), (_, model) in zip(rows, rendered, items, strict=True)
            ]
        )

    async def _render_jobs(self, rows: Sequence[Any]) -> None:
        drawable = []
        items: list[tuple[str, str]] = []
        for row in rows:
            model = self._model_for(str(row["label"]))
            if model is not None:
                drawable.append(row)
                items.append((str(row["face"]), model))
        rendered = await self._render(items) if items else []
        now = isoformat_utc(self._clock.utc_now())
        updates: list[Sequence[Any]] = []
        # Decided after the render, with no wait before the commit is queued: a label heard
        # meanwhile is drawn next pass; one heard later finds its job parked and queues it.
        # (A label's panel, once known, stays known: the drawn rows are not among these.)
        waiting = [row for row in rows if self._model_for(str(row["label"])) is None]
        audits: list[Sequence[Any]] = [
            (now, AuditEvent.AWAITING_MODEL.value, _AWAITING_NOTE, row["label"], row["rev"])
            for row in waiting
        ]
        if waiting:
            _LOGGER.info(
                "%d label job(s) wait for their label to report its panel (first %s)",
                len(waiting),
                waiting[0]["label"],
            )
        for row, (_, digest), (_, model) in zip(drawable, rendered, items, strict=True):
            label = str(row["label"])
            shown = self._shown.get(label)
            outcome = after_render(
                JobFacts(label, JobState.QUEUED, digest),
                shown_hash=shown.content_hash if shown is not None else None,
            )
            confirmed = outcome.state is JobState.CONFIRMED
            updates.append(
                (
                    digest,
                    model,
                    outcome.state.value,
                    now if confirmed else None,
                    outcome.detail if confirmed else None,
                    label,
                    row["rev"],
                )
            )
            assert outcome.event is not None
            audits.append((now, outcome.event.value, outcome.detail, label, row["rev"]))
        await self._db.submit_atomic(
            [(_STORE_IMAGE, image) for image in _distinct_images(rendered, now)]
            + [(_RENDERED_JOB, u) for u in updates]
            + [(_TO_AWAITING_MODEL, (_AWAITING_NOTE, r["label"], r["rev"])) for r in waiting]
            + [(_AUDIT_JOB, a) for a in audits]
        )
        self._wake["dispatch"].set()
        self._wake["receipts"].set()

    # --- dispatch -----------------------------------------------------------------------

    async def dispatch_once(self) -> int:
        """Hand ready jobs to the drivers that reach their labels, each up to a few seconds
        of its radio time; returns how many were pushed."""
        drivers = self._drivers()
        fallback = next(iter(drivers)) if len(drivers) == 1 else None
        now = self._clock.utc_now()
        pushed = 0
        for device, driver in drivers.items():
            if driver is None:
                continue
            previous = self._dispatched_to.get(device)
            if previous is not None and previous is not driver:
                # The supervisor restarted this driver: what its access point held is gone
                # (or unknown), so what was in flight goes again now — once — instead of
                # waiting out confirm_timeout_s.
                await self._db.submit(
                    "UPDATE label_jobs SET state = 'queued', last_error = 'in flight when "
                    "driver ' || ?1 || ' restarted: sent again' "
                    "WHERE state IN ('submitted', 'pending') AND device = ?1",
                    (device,),
                )
            self._dispatched_to[device] = driver
            capacity = await self._capacity(device, driver, now)
            if capacity <= 0:
                continue
            rows = await self._db.fetchall(_READY, (isoformat_utc(now), fallback, device, capacity))
            if rows:
                pushed += await self._push(device, driver, rows, now)
        return pushed

    async def _capacity(self, device: str, driver: LabelDriver, now: datetime) -> int:
        window = max(1, math.ceil(driver.labels_per_minute / 60 * self.config.queue_ahead_s))
        cutoff = now - timedelta(seconds=self.config.confirm_timeout_s)
        row = await self._db.fetchone(
            "SELECT count(*) AS n FROM label_jobs WHERE state IN ('submitted', 'pending') "
            "AND device = ? AND submitted_at > ?",
            (device, isoformat_utc(cutoff)),
        )
        in_flight = int(row["n"]) if row is not None else 0
        return min(_DISPATCH_CAP, window - in_flight)

    async def _push(
        self, device: str, driver: LabelDriver, rows: Sequence[Any], now: datetime
    ) -> int:
        now_text = isoformat_utc(now)
        ready = await self._drop_stale_renders(rows)
        if not ready:
            return 0
        hashes = sorted({str(r["content_hash"]) for r in ready})
        images = {
            str(r["content_hash"]): bytes(r["png"])
            for r in await self._db.fetchall(
                "SELECT content_hash, png FROM label_images "
                "WHERE content_hash IN (SELECT value FROM json_each(?))",
                (json.dumps(hashes),),
            )
        }
        await self._db.submit_many(
            _CLAIM, [(now_text, device, r["label"], r["rev"]) for r in ready]
        )
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
                rng=self._rng,
                initial_s=self.config.retry_initial_s,
                max_s=self.config.retry_max_s,
            )
            if outcome.state is JobState.PENDING:
                statements.append((_TO_PENDING, (result.label, result.rev)))
            else:
                statements += self._transition(result.label, result.rev, outcome, now_text)
        await self._db.submit_atomic(statements)
        failed = sum(1 for r in results if r.error is not None)
        if failed:
            _LOGGER.info("%d of %d label push(es) to %s failed", failed, len(results), device)
            self._wake["receipts"].set()
        if any(r.panel is not None for r in results):
            self._wake["render"].set()
        return len(results) - failed

    def _panel_named(self, device: str, result: _Pushed, now: str) -> list[Statement]:
        """The ESL system refused content for its size and named the label's panel: that is
        the label's model now, and its content is drawn again for it."""
        assert result.panel is not None
        shown = self._shown.get(result.label)
        if shown is None:
            shown = self._shown[result.label] = _Shown(None, "", now, device, None)
        shown.model = result.panel
        _LOGGER.info(
            "label %s: the ESL system says its panel is %s: drawing its content again",
            result.label,
            result.panel,
        )
        return [
            (_SHOWN_UPSERT, (result.label, *_shown_row(shown))),
            *self._refit_statements(
                [result.label], now, reason=f"{result.error}: drawn again for {result.panel}"
            ),
        ]

    def _refit_statements(
        self, labels: Collection[str] | None, now: str, *, reason: str | None = None
    ) -> list[Statement]:
        """Jobs of the labels (None: all) parked while the label was unheard are queued to be
        drawn; content drawn for another panel than the label's is drawn again (active jobs
        audited as superseded), and so are pre-rendered flips."""
        array = None if labels is None else json.dumps(sorted(labels))
        default = self._default_model
        awaiting, audit, jobs, schedule = _REFIT_ALL if labels is None else _REFIT_SOME
        return [
            (awaiting, (default, array)),
            (audit, (default, array, now, reason)),
            (jobs, (default, array, reason)),
            (schedule, (default, array)),
        ]

    async def _drop_stale_renders(self, rows: Sequence[Any]) -> list[Any]:
        """Rows rendered for another panel than the label's driver reports go back to the
        render worker; the others are returned."""
        ready, stale = [], []
        for row in rows:
            label = str(row["label"])
            model = self._model_for(label)
            if model is not None and model != row["model"]:
                stale.append((label, row["rev"]))
            else:
                ready.append(row)
        if stale:
            await self._db.submit_many(_RERENDER, stale)
            self._wake["render"].set()
        return ready

    def _transition(self, label: str, rev: int, outcome: Outcome, now: str) -> list[Statement]:
        statements: list[Statement] = []
        match outcome.state:
            case JobState.CONFIRMED:
                statements.append((_TO_CONFIRMED, (now, outcome.detail, label, rev)))
            case JobState.FAILED | JobState.FAILED_PERMANENT:
                retry_at = (
                    isoformat_utc(outcome.next_attempt_at)
                    if outcome.next_attempt_at is not None
                    else None
                )
                statements.append(
                    (_TO_FAILED, (outcome.state.value, retry_at, outcome.detail, label, rev))
                )
            case JobState.QUEUED:
                statements.append((_TO_REQUEUED, (outcome.detail, now, label, rev)))
            case _:
                raise ValueError(f"no transition to {outcome.state}")
        if outcome.event is not None:
            statements.append((_AUDIT_JOB, (now, outcome.event.value, outcome.detail, label, rev)))
        return statements

    # --- reports ------------------------------------------------------------------------

    async def process_reports(self) -> int:
        """Apply the queued driver reports (in arrival order); returns how many."""
        batch, self._reports = self._reports[:_REPORT_BATCH], self._reports[_REPORT_BATCH:]
        if not batch:
            return 0
        labels = sorted({report.label_id for _, report in batch})
        rows = await self._db.fetchall(
            "SELECT label, rev, state, content_hash, attempts, model FROM label_jobs "
            "WHERE label IN (SELECT value FROM json_each(?))",
            (json.dumps(labels),),
        )
        jobs = {str(r["label"]): r for r in rows}
        facts = {
            label: JobFacts(label, JobState(r["state"]), r["content_hash"], int(r["attempts"]))
            for label, r in jobs.items()
        }
        now = self._clock.utc_now()
        now_text = isoformat_utc(now)
        statements: list[Statement] = []
        shown_changed: set[str] = set()
        refit: set[str] = set()  # labels whose content is (re)drawn for their panel
        for device, report in batch:
            label = report.label_id
            before = self._model_for(label)
            if self._note_shown(device, report, now_text):
                shown_changed.add(label)
            panel = self._model_for(label)
            if panel != before:
                refit.add(label)  # heard for the first time, or its panel was swapped
            row = jobs.get(label)
            if row is not None and (
                row["state"] == JobState.AWAITING_MODEL
                or (row["model"] is not None and row["model"] != panel)
            ):
                refit.add(label)
                continue  # its content is drawn (again) for its panel below
            job = facts.get(label)
            outcome = on_report(
                job,
                ReportFacts(report.kind, report.content_hash, report.evidence),
                now=now,
                rng=self._rng,
                initial_s=self.config.retry_initial_s,
                max_s=self.config.retry_max_s,
            )
            if outcome is None or job is None:
                continue
            rev = int(jobs[label]["rev"])
            at = isoformat_utc(report.observed_at) if outcome.confirmed else now_text
            statements += self._transition(label, rev, outcome, at)
            facts[label] = JobFacts(label, outcome.state, job.content_hash, job.attempts)
            if outcome.state is JobState.QUEUED:
                self._wake["dispatch"].set()
        statements += [
            (_SHOWN_UPSERT, (label, *_shown_row(self._shown[label])))
            for label in sorted(shown_changed)
        ]
        if refit:
            statements += self._refit_statements(refit, now_text)
        if statements:
            await self._db.submit_atomic(statements)
            self._wake["dispatch"].set()
            self._wake["receipts"].set()
            if refit:
                self._wake["render"].set()  # after the commit: the render reads committed rows
        return len(batch)

    def _note_shown(self, device: str, report: LabelReport, now: str) -> bool:
        """Keep what the label shows and who reaches it; True when that changed."""
        label = report.label_id
        current = self._shown.get(label)
        model = model_text(report.model) if report.model is not None else None
        if current is None:
            current = _Shown(None, "", now, None, None)
            self._shown[label] = current
            changed = True
        else:
            changed = False
        if current.device != device:
            current.device, changed = device, True
        if model is not None and current.model != model:
            current.model, changed = model, True
        # CONFIRMED and SEEN tell what the label shows; FAILED names what it did not get.
        if (
            report.kind is not LabelReportKind.FAILED
            and report.content_hash != current.content_hash
        ):
            current.content_hash = report.content_hash
            current.evidence = report.evidence or report.kind.value
            current.at = isoformat_utc(report.observed_at)
            changed = True
        return changed

    # --- scheduler ----------------------------------------------------------------------

    async def scheduler_pass(self) -> bool:
        """Promote due flips, re-plan after a clock jump or at start, and pre-render the
        flips within the look-ahead. False (nothing done) while the clock is unsynced."""
        now, synced = self.policy_instant()
        if not synced:
            return False
        offset = now.timestamp() - self._clock.monotonic()
        jumped = self._offset is not None and abs(offset - self._offset) > _JUMP_S
        self._offset = offset
        if jumped:
            _LOGGER.warning("clock jumped: re-planning every label for %s", isoformat_utc(now))
        await self._db.submit_atomic(
            [
                *LabelPlanner.promote_due_statements(now),
                (_SET_META, (_POLICY_KEY, isoformat_utc(now))),
            ]
        )
        self._wake["dispatch"].set()
        self._wake["receipts"].set()
        if jumped or not self._planned_at_start:
            self._planned_at_start = True
            await self.plan(reason="re-planned for the current time")
        until = now + timedelta(seconds=self.config.lookahead_s)
        rows = await self._db.fetchall(BOUNDARIES, (isoformat_utc(now), isoformat_utc(until)))
        boundaries: dict[str, set[str]] = {}
        for row in rows:
            boundaries.setdefault(str(row["at"]), set()).add(str(row["sku"]))
        await self._db.submit_atomic(
            LabelPlanner.schedule_statements(
                sorted(boundaries.items()), now=now, until=until, was_price=self.book.was_price
            )
        )
        self._wake["render"].set()
        await self._check_flips(now)
        return True

    async def next_flip_in(self) -> float | None:
        """Seconds of wall time until the next scheduled flip (None: none scheduled)."""
        row = await self._db.fetchone("SELECT min(due_at) AS due FROM label_schedule")
        if row is None or row["due"] is None:
            return None
        due = datetime.fromisoformat(row["due"])
        return (due - self._clock.utc_now()).total_seconds()

    async def _check_flips(self, now: datetime) -> None:
        """Announce flips that cannot finish within the tolerance, from driver throughput."""
        if self._alerts is None:
            return
        drivers = self._drivers()
        fallback = next(iter(drivers)) if len(drivers) == 1 else None
        rows = await self._db.fetchall(
            "SELECT s.due_at, coalesce(sh.device, ?) AS device, count(*) AS n "
            "FROM label_schedule s LEFT JOIN label_shown sh ON sh.label = s.label "
            "WHERE s.due_at > ? GROUP BY s.due_at, 2 ORDER BY s.due_at",
            (fallback, isoformat_utc(now)),
        )
        late = []
        for row in rows:
            driver = drivers.get(row["device"]) if row["device"] is not None else None
            if driver is None or driver.labels_per_minute <= 0:
                continue
            due = datetime.fromisoformat(row["due_at"])
            finish = due + timedelta(seconds=int(row["n"]) / driver.labels_per_minute * 60)
            if (finish - due).total_seconds() > self.config.flip_tolerance_s:
                late.append(
                    {
                        "due_at": row["due_at"],
                        "device": row["device"],
                        "labels": int(row["n"]),
                        "expected_completion": isoformat_utc(finish),
                    }
                )
        if late:
            first = late[0]
            await self._alerts.raise_(
                FLIP_LATE_ALERT,
                Severity.WARNING,
                f"scheduled flip at {first['due_at']} of {first['labels']} label(s) on "
                f"{first['device']} completes only at {first['expected_completion']}",
                details={"flips": late},
            )
            await self._alerts.update_details(FLIP_LATE_ALERT, {"flips": late})
        else:
            await self._alerts.clear(FLIP_LATE_ALERT, "scheduled flips fit their time")

    # --- upkeep: timeouts, SLA, reconciliation, alerts ----------------------------------

    async def upkeep(self, *, reconcile: bool = True) -> None:
        now = self._clock.utc_now()
        await self._time_out_pending(now)
        if reconcile:
            await self.reconcile()
        await self._check_sla(now)
        await self._check_drivers()
        await self.prune_audit()
        await self._db.submit(_COLLECT_IMAGES)

    async def _time_out_pending(self, now: datetime) -> None:
        cutoff = isoformat_utc(now - timedelta(seconds=self.config.confirm_timeout_s))
        rows = await self._db.fetchall(
            "SELECT label, rev, attempts FROM label_jobs WHERE state = 'pending' "
            "AND submitted_at <= ?",
            (cutoff,),
        )
        statements: list[Statement] = []
        now_text = isoformat_utc(now)
        for row in rows:
            outcome = on_confirmation_timeout(
                JobFacts(str(row["label"]), JobState.PENDING, None, int(row["attempts"])),
                waited_s=self.config.confirm_timeout_s,
                now=now,
                rng=self._rng,
                initial_s=self.config.retry_initial_s,
                max_s=self.config.retry_max_s,
            )
            statements += self._transition(str(row["label"]), int(row["rev"]), outcome, now_text)
        if statements:
            await self._db.submit_atomic(statements)
            self._wake["receipts"].set()

    async def reconcile(self) -> None:
        """Should-show vs last confirmed for every bound label: faces re-planned, content
        drawn for another panel than the label's drawn again, drifted labels re-pushed,
        bound SKUs without a price alerted."""
        await self.plan(reason="reconciliation")
        now = isoformat_utc(self._clock.utc_now())
        await self._db.submit_atomic(
            [
                *self._refit_statements(None, now),
                (_AUDIT_DRIFTED, (now,)),
                (_REQUEUE_DRIFTED, (now,)),
            ]
        )
        self._wake["render"].set()
        self._wake["dispatch"].set()
        self._wake["receipts"].set()
        await self._check_no_price()

    async def _check_no_price(self) -> None:
        if self._alerts is None:
            return
        rows = await self._db.fetchall(
            "SELECT b.sku, count(*) AS labels FROM label_bindings b "
            "LEFT JOIN price_book p ON p.sku = b.sku WHERE p.sku IS NULL GROUP BY b.sku"
        )
        missing = {str(r["sku"]): int(r["labels"]) for r in rows}
        for sku in sorted(missing.keys() - self._no_price):
            await self._alerts.raise_(
                NO_PRICE_ALERT + sku,
                Severity.WARNING,
                f"SKU {sku} is bound to {missing[sku]} label(s) but has no price: they show "
                "'price unavailable'",
                details={"sku": sku, "labels": missing[sku]},
            )
        for sku in sorted(self._no_price - missing.keys()):
            await self._alerts.clear(NO_PRICE_ALERT + sku, "priced or unbound")
        self._no_price = set(missing)

    async def _check_sla(self, now: datetime) -> None:
        if self._alerts is None:
            return
        cutoff = isoformat_utc(now - timedelta(seconds=self.config.sla_s))
        rows = await self._db.fetchall(
            "SELECT label, state, coalesce(due_at, queued_at) AS due FROM label_jobs "
            "WHERE state != 'confirmed' AND coalesce(due_at, queued_at) <= ? "
            "ORDER BY coalesce(due_at, queued_at)",
            (cutoff,),
        )
        if not rows:
            await self._alerts.clear(SLA_ALERT, "every label is confirmed within its SLA")
            return
        details = {
            "count": len(rows),
            "oldest_due": rows[0]["due"],
            "labels": [f"{r['label']} ({r['state']})" for r in rows[:20]],
        }
        await self._alerts.raise_(
            SLA_ALERT,
            Severity.WARNING,
            f"{len(rows)} label(s) not confirmed within {self.config.sla_s:g} s of their due "
            "time (storegw labels --state failed / pending / awaiting_model)",
            details=details,
        )
        await self._alerts.update_details(SLA_ALERT, details)

    async def _check_drivers(self) -> None:
        if self._alerts is None:
            return
        drivers = self._drivers()
        fallback = next(iter(drivers)) if len(drivers) == 1 else None
        for device, driver in sorted(drivers.items()):
            key = DRIVER_DOWN_ALERT + device
            if driver is not None:
                if device in self._drivers_down:
                    self._drivers_down.discard(device)
                    await self._alerts.clear(key, "driver running again")
                continue
            row = await self._db.fetchone(
                "SELECT count(*) AS n FROM label_jobs j LEFT JOIN label_shown s "
                "ON s.label = j.label WHERE j.state IN ('queued', 'failed') "
                "AND coalesce(s.device, ?) = ?",
                (fallback, device),
            )
            waiting = int(row["n"]) if row is not None else 0
            if waiting:
                self._drivers_down.add(device)
                await self._alerts.raise_(
                    key,
                    Severity.CRITICAL,
                    f"ESL driver {device} is not running: {waiting} label job(s) wait for it",
                    details={"waiting": waiting},
                )
                await self._alerts.update_details(key, {"waiting": waiting})
            elif device in self._drivers_down:
                self._drivers_down.discard(device)
                await self._alerts.clear(key, "no label job waits for it")
        for device in sorted(self._drivers_down - drivers.keys()):  # removed from the config
            self._drivers_down.discard(device)
            await self._alerts.clear(DRIVER_DOWN_ALERT + device, "driver removed")

    # --- receipts -----------------------------------------------------------------------

    async def pump_receipts(self) -> int:
        """Forward audit rows past the mark to the ``receipts`` stream, the mark advancing in
        the same transaction; returns the rows consumed."""
        rows = await self._db.fetchall(
            "SELECT id, at, label, event, state, sku, price_version, content_hash, detail "
            "FROM label_audit WHERE id > ? ORDER BY id LIMIT ?",
            (self._forwarded, _PUMP_BATCH),
        )
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
            mark = (_SET_META, (_FORWARDED_KEY, str(last_id)))
            if kind is None or not bodies:
                futures.append(self._db.submit_atomic([mark]))
            else:
                futures.append(self._outbox.append_atomic("receipts", bodies, before=[mark]))
        await asyncio.gather(*futures)
        self._forwarded = runs[-1][2]
        return len(rows)

    async def prune_audit(self) -> None:
        cutoff = self._clock.utc_now() - timedelta(days=self.config.audit_retention_days)
        await self._db.submit(
            "DELETE FROM label_audit WHERE id <= ? AND at < ?",
            (self._forwarded, isoformat_utc(cutoff)),
        )

    # --- the loops ----------------------------------------------------------------------

    async def run(self) -> None:
        """Every stage as a named task until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                # Each stage is woken by the one that feeds it; the idle interval is only a
                # safety net (and the retry after a failure), so an idle store reads nothing.
                # Dispatch also ticks for retry times and confirmation timeouts.
                for name, step, idle in (
                    ("labels.planner", self.plan_pending, 15.0),
                    ("labels.render", self._render_step, 15.0),
                    ("labels.dispatch", self._dispatch_step, _TICK_S),
                    ("labels.reports", self._reports_step, 15.0),
                    ("labels.receipts", self._receipts_step, 15.0),
                ):
                    group.create_task(self._loop(name, step, idle), name=name)
                group.create_task(self._scheduler_loop(), name="labels.scheduler")
                group.create_task(self._upkeep_loop(), name="labels.upkeep")
        finally:
            self.close()

    async def _loop(self, name: str, step: Callable[[], Awaitable[int]], idle_s: float) -> None:
        wake = self._wake[_WAKE_OF[name]]
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

    async def _render_step(self) -> int:
        return await self.render_some()

    async def _dispatch_step(self) -> int:
        await self.dispatch_once()
        return 0  # paced by reports and the tick, not by its own output

    async def _reports_step(self) -> int:
        return await self.process_reports()

    async def _receipts_step(self) -> int:
        return await self.pump_receipts()

    async def _scheduler_loop(self) -> None:
        wake = self._wake["schedule"]
        while True:
            wake.clear()
            try:
                await self.scheduler_pass()
                until_flip = await self.next_flip_in()
            except Exception:
                _LOGGER.exception("label scheduler pass failed (retrying)")
                until_flip = None
            # A fresh monotonic timer each wake, from wall time: jumps are seen next wake.
            delay = min(self.config.lookahead_s / 4, 30.0)
            if until_flip is not None:
                delay = min(delay, max(0.01, until_flip))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wake.wait()

    async def _upkeep_loop(self) -> None:
        last_reconcile = self._clock.monotonic()
        while True:
            await asyncio.sleep(min(10.0, self.config.reconcile_interval_s))
            due = self._clock.monotonic() - last_reconcile >= self.config.reconcile_interval_s
            try:
                await self.upkeep(reconcile=due)
            except Exception:
                _LOGGER.exception("label upkeep failed (retrying)")
            if due:
                last_reconcile = self._clock.monotonic()

    # --- a technician's retry ---------------------------------------------------------------

    async def retry_failed(self, label: str, sku: str, why: str) -> str | None:
        """Queue the label's failed job for ``sku`` (retryable or permanent) again at once,
        audited with ``why`` (a ``label.queued`` receipt with that reason). Returns the job's
        state afterwards (None: the label has no job for ``sku``)."""
        now = isoformat_utc(self._clock.utc_now())
        await self._db.submit_atomic(
            [(_AUDIT_RETRIED, (now, why, label, sku)), (_RETRY_FAILED, (label, sku))]
        )
        row = await self._db.fetchone(
            "SELECT state FROM label_jobs WHERE label = ? AND sku = ?", (label, sku)
        )
        self._wake["dispatch"].set()
        self._wake["receipts"].set()
        return None if row is None else str(row["state"])

    # --- views for the CLI --------------------------------------------------------------

    async def listing(self, state: str | None = None, limit: int = 200) -> dict[str, Any]:
        counts = {
            str(r["state"]): int(r["n"])
            for r in await self._db.fetchall(
                "SELECT state, count(*) AS n FROM label_jobs GROUP BY state"
            )
        }
        if state is not None and state not in {s.value for s in JobState} | {"unreachable"}:
            raise ValueError(
                f"unknown state {state!r}: one of {', '.join(s.value for s in JobState)}, "
                "unreachable"
            )
        drivers = self._drivers()
        fallback = next(iter(drivers)) if len(drivers) == 1 else None
        unreachable_sql = (
            "SELECT j.label FROM label_jobs j LEFT JOIN label_shown s ON s.label = j.label "
            "WHERE coalesce(s.device, ?) IS NULL AND j.state != 'confirmed'"
        )
        unreachable = [
            str(r["label"])
            for r in await self._db.fetchall(unreachable_sql + " ORDER BY j.label", (fallback,))
        ]
        if state == "unreachable":
            rows = await self._db.fetchall(
                "SELECT * FROM label_jobs WHERE label IN (SELECT value FROM json_each(?)) "
                "ORDER BY label LIMIT ?",
                (json.dumps(unreachable), limit),
            )
        else:
            rows = await self._db.fetchall(
                "SELECT * FROM label_jobs WHERE ?1 IS NULL OR state = ?1 "
                "ORDER BY scheduled DESC, order_at, label LIMIT ?2",
                (state, limit),
            )
        scheduled = await self._db.fetchall(
            "SELECT due_at, count(*) AS labels, sum(content_hash IS NOT NULL) AS rendered "
            "FROM label_schedule GROUP BY due_at ORDER BY due_at"
        )
        unbound = await self._db.fetchall(
            "SELECT s.label, s.device, s.model, s.at FROM label_shown s "
            "WHERE NOT EXISTS (SELECT 1 FROM label_bindings b WHERE b.label = s.label) "
            "ORDER BY s.label"
        )
        _, synced = self.policy_instant()
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
                else "clock NOT synchronised: scheduled flips are held; labels keep the "
                "content in force"
                + (f" at {isoformat_utc(self._policy_at)}" if self._policy_at else ""),
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
            "last_plan_s": self.last_plan_s,
        }

    async def summary(self) -> dict[str, Any]:
        """Counts per state and the clock's say over flips (``storegw status``)."""
        counts = {
            str(r["state"]): int(r["n"])
            for r in await self._db.fetchall(
                "SELECT state, count(*) AS n FROM label_jobs GROUP BY state"
            )
        }
        _, synced = self.policy_instant()
        return {
            "counts": counts,
            "flips_held": not synced,
            "note": None
            if synced
            else "clock NOT synchronised: scheduled flips are held, labels keep what is in force",
        }

    async def show(self, label: str) -> dict[str, Any]:
        binding = await self._db.fetchone(
            "SELECT label, sku, source, local_override, updated_at FROM label_bindings "
            "WHERE label = ?",
            (label,),
        )
        job = await self._db.fetchone("SELECT * FROM label_jobs WHERE label = ?", (label,))
        if binding is None and job is None and label not in self._shown:
            raise ValueError(f"label {label} is neither bound nor known to a driver")
        shown = self._shown.get(label)
        at, _ = self.policy_instant()
        should = await self._db.fetchall(
            FACES,
            (isoformat_utc(at), None, json.dumps([label]), self.book.was_price),
        )
        schedule = await self._db.fetchall(
            "SELECT due_at, sku, face, price_version, valid_to, content_hash "
            "FROM label_schedule WHERE label = ? ORDER BY due_at",
            (label,),
        )
        audit = await self._db.fetchall(
            "SELECT id, at, event, state, sku, price_version, content_hash, detail "
            "FROM label_audit WHERE label = ? ORDER BY id DESC LIMIT 20",
            (label,),
        )
        return {
            "label": label,
            "binding": dict(binding) if binding is not None else None,
            # What its content is drawn for; None: no driver has heard the label yet.
            "panel": self._model_for(label),
            "should_show": {
                "face": json.loads(should[0]["face"]),
                "price_version": should[0]["version"],
                "ready": bool(should[0]["ready"]),
                "content_hash": job["content_hash"] if job is not None else None,
            }
            if should
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
            "scheduled": [dict(r) | {"face": json.loads(r["face"])} for r in schedule],
            "audit": [dict(r) for r in audit],
        }


_WAKE_OF = {
    "labels.planner": "plan",
    "labels.render": "render",
    "labels.dispatch": "dispatch",
    "labels.reports": "reports",
    "labels.receipts": "receipts",
}


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


def _render_chunk(
    renderer: LabelRenderer, jobs: Sequence[tuple[LabelFace, LabelModel]]
) -> list[tuple[bytes, str]]:
    """Runs in the render thread; labels sharing a face and panel are drawn once."""
    cache: dict[tuple[LabelFace, LabelModel], tuple[bytes, str]] = {}
    out = []
    for face, model in jobs:
        key = (face, model)
        if key not in cache:
            rendered = renderer.render(face, model)
            cache[key] = (rendered.png, rendered.content_hash)
        out.append(cache[key])
    return out


def _distinct_images(
    rendered: Sequence[tuple[bytes, str]], now: str
) -> list[tuple[str, bytes, str]]:
    return [(digest, png, now) for digest, png in {d: p for p, d in rendered}.items()]


def _shown_row(shown: _Shown) -> tuple[Any, ...]:
    """``label_shown``'s columns after the label."""
    return (shown.content_hash, shown.evidence, shown.at, shown.device, shown.model)


def _job_dict(row: Any) -> dict[str, Any]:
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


def _receipt(row: Any) -> EventBody | None:
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
