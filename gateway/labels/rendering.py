"""The render stage: planned faces → PNG and content hash, off the event loop on a one-thread
executor (``label-render``: fonts are not shared across threads), in chunks — scheduled flips
first (they have a deadline), then jobs (scheduled ones first).

Each label is drawn for its own panel (:meth:`ShownLabels.panel
<gateway.labels.shown.ShownLabels.panel>`); a job of a label no driver has heard waits in
``awaiting_model``. Content the label already shows is confirmed as ``unchanged`` and never
sent. Labels sharing a face and panel within a chunk are drawn once. The renderer's *style*
(template, fonts, locale, time zone) is recorded; content drawn in another style is drawn
again, after every other job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from gateway.clock import isoformat_utc
from gateway.drivers.contracts import LabelModel
from gateway.labels.context import StageContext
from gateway.labels.faces import LabelFace, face_to_label
from gateway.labels.job_store import Row, Statement
from gateway.labels.jobs import AuditEvent, JobFacts, JobState, after_render
from gateway.labels.preview import parse_model
from gateway.labels.render import LabelRenderer, RenderedLabel

__all__ = ["Rendering"]

_LOGGER = logging.getLogger(__name__)

_RENDER_CHUNK = 64
_STYLE_KEY = "labels_style"  # meta: the renderer's style the labels' content was drawn in
_AWAITING_NOTE = "waiting for the label to report its panel (no ESL driver has heard it yet)"


class Rendering:
    def __init__(self, context: StageContext, renderer: LabelRenderer) -> None:
        self._context = context
        self._renderer = renderer
        self._executor: ThreadPoolExecutor | None = None

    async def restyle(self, now: str) -> None:
        """Content drawn in another style than the renderer's (the store's locale, time zone,
        fonts or the template changed; or drawn before styles were recorded) is drawn again."""
        drawn_in = await self._context.store.meta(_STYLE_KEY)
        style = self._renderer.style
        if drawn_in == style:
            return
        reason = f"label style changed ({drawn_in or 'unrecorded'} → {style}): drawn again"
        await self._context.store.restyle(reason, style_key=_STYLE_KEY, style=style, now=now)
        _LOGGER.log(logging.INFO if drawn_in is None else logging.WARNING, "labels: %s", reason)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def render_some(self, limit: int = _RENDER_CHUNK) -> int:
        """Render up to ``limit`` faces — flips first, then jobs; returns how many (the
        stage's step). Flips of labels no driver has heard wait for their panel (promoted
        undrawn, they wait as jobs)."""
        rows = await self._context.store.flips_to_render(limit)
        if rows:
            await self._render_flips(rows)
            return len(rows)
        rows = await self._context.store.jobs_to_render(limit)
        if rows:
            await self._render_jobs(rows)
        return len(rows)

    async def render_all(self) -> int:
        total = 0
        while count := await self.render_some():
            total += count
        return total

    async def render_face(self, face: str, model: LabelModel) -> RenderedLabel:
        """The image a label on ``model`` gets for ``face`` — ``label preview`` draws with
        this, so its bytes are the shelf's."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._render_executor(), self._renderer.render, face_to_label(face), model
        )

    async def _render(self, items: list[tuple[str, str]]) -> list[tuple[bytes, str]]:
        jobs = [(face_to_label(face), parse_model(model)) for face, model in items]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._render_executor(), _render_chunk, self._renderer, jobs
        )

    def _render_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="label-render")
        return self._executor

    async def _render_flips(self, rows: Sequence[Row]) -> None:
        store, shown = self._context.store, self._context.shown
        # The query picked labels with a panel; a panel never goes away.
        items = [(str(r["face"]), shown.panel(str(r["label"])) or "") for r in rows]
        rendered = await self._render(items)
        now = isoformat_utc(self._context.clock.utc_now())
        await store.commit(
            [store.image(digest, png, now) for digest, png in _distinct(rendered)]
            + [
                store.rendered_flip(r, digest, model)
                for r, (_, digest), (_, model) in zip(rows, rendered, items, strict=True)
            ]
        )

    async def _render_jobs(self, rows: Sequence[Row]) -> None:
        store, shown = self._context.store, self._context.shown
        drawable = []
        items: list[tuple[str, str]] = []
        for row in rows:
            model = shown.panel(str(row["label"]))
            if model is not None:
                drawable.append(row)
                items.append((str(row["face"]), model))
        rendered = await self._render(items) if items else []
        now = isoformat_utc(self._context.clock.utc_now())
        updates: list[Statement] = []
        # Decided after the render, with no wait before the commit is queued: a label heard
        # meanwhile is drawn next pass; one heard later finds its job parked and queues it.
        # (A label's panel, once known, stays known: the drawn rows are not among these.)
        waiting = [row for row in rows if shown.panel(str(row["label"])) is None]
        audits = [
            store.audit(r["label"], r["rev"], AuditEvent.AWAITING_MODEL, _AWAITING_NOTE, now)
            for r in waiting
        ]
        if waiting:
            _LOGGER.info(
                "%d label job(s) wait for their label to report its panel (first %s)",
                len(waiting),
                waiting[0]["label"],
            )
        for row, (_, digest), (_, model) in zip(drawable, rendered, items, strict=True):
            label = str(row["label"])
            seen = shown.get(label)
            outcome = after_render(
                JobFacts(label, JobState.QUEUED, digest),
                shown_hash=seen.content_hash if seen is not None else None,
            )
            rev = int(row["rev"])
            updates.append(
                store.rendered_job(
                    label, rev, content_hash=digest, model=model, outcome=outcome, now=now
                )
            )
            assert outcome.event is not None
            audits.append(store.audit(label, rev, outcome.event, outcome.detail, now))
        await store.commit(
            [store.image(digest, png, now) for digest, png in _distinct(rendered)]
            + updates
            + [store.awaiting_model(r["label"], r["rev"], _AWAITING_NOTE) for r in waiting]
            + audits
        )
        self._context.wake.dispatch.set()
        self._context.wake.receipts.set()


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


def _distinct(rendered: Sequence[tuple[bytes, str]]) -> list[tuple[str, bytes]]:
    """The images of a chunk, once each: (content hash, PNG)."""
    return list({digest: png for png, digest in rendered}.items())
