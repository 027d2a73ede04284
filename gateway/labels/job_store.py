"""The label job store: the one owner of the label pipeline's tables — ``label_jobs`` (one row
per label: its latest content and delivery state), ``label_schedule`` (pre-rendered flips),
``label_images`` (PNGs by content hash), ``label_shown`` (what drivers report), ``label_audit``
(every state change) and ``label_plan`` (planning's scratch table). No other module holds SQL
on them; the stages decide (:mod:`gateway.labels.jobs` is the state machine) and the store
reads, writes and audits.

Every state change writes its ``label_audit`` row in the same transaction. Statements a stage
must commit together come from the store's builders (one statement each, or a list) and go
in through :meth:`LabelJobStore.commit`, in the stage's order (audit rows are written after the
rows they describe, and their ids are the receipts' order).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from gateway.clock import isoformat_utc
from gateway.labels import _job_sql as sql
from gateway.labels import _plan_sql as plan_sql
from gateway.labels.jobs import AuditEvent, JobState, Outcome
from gateway.labels.shown import Shown
from gateway.prices.book import PriceBook
from gateway.store.database import Database

__all__ = ["LabelJobStore", "Row", "Statement"]

Statement = tuple[str, Sequence[Any]]
Row = Any  # sqlite3.Row: columns by name


class LabelJobStore:
    """``default_model`` is the panel of labels whose driver reports none."""

    def __init__(self, database: Database, book: PriceBook, *, default_model: str) -> None:
        self._db = database
        self._book = book
        self._default_model = default_model

    def commit(self, statements: Iterable[Statement]) -> asyncio.Future[None]:
        """One transaction, in this order; queued at once (commits keep the order of their
        calls), done when committed."""
        return self._db.submit_atomic(statements)

    # --- start-up and meta ----------------------------------------------------------------

    async def load_shown(self) -> dict[str, Shown]:
        rows = await self._db.fetchall(
            "SELECT label, content_hash, evidence, at, device, model FROM label_shown"
        )
        return {
            str(r["label"]): Shown(
                r["content_hash"], r["evidence"], r["at"], r["device"], r["model"]
            )
            for r in rows
        }

    async def meta(self, key: str) -> str | None:
        row = await self._db.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row["value"])

    @staticmethod
    def set_meta(key: str, value: str) -> Statement:
        return (sql.SET_META, (key, value))

    async def requeue_in_flight(self, why: str, device: str | None = None) -> None:
        """Jobs handed to a driver (``device``; None: any) are queued again: at a restart, or
        when the supervisor restarted their driver (what its access point held is gone)."""
        await self._db.submit(
            "UPDATE label_jobs SET state = 'queued', last_error = ?1 "
            "WHERE state IN ('submitted', 'pending') AND (?2 IS NULL OR device = ?2)",
            (why, device),
        )

    async def restyle(self, reason: str, *, style_key: str, style: str, now: str) -> None:
        """Every label's content and every pre-rendered flip is drawn again (in a new style),
        after every other job (scheduled -1); active jobs are audited as superseded."""
        await self.commit(
            [
                (sql.RESTYLE_AUDIT, (now, reason)),
                (sql.RESTYLE_JOBS, (reason,)),
                (sql.RESTYLE_FLIPS, ()),
                self.set_meta(style_key, style),
            ]
        )

    # --- planning -------------------------------------------------------------------------

    async def plan(
        self,
        *,
        at: datetime,
        now: datetime,
        skus: Collection[str] | None,
        labels: Collection[str] | None,
        reason: str,
    ) -> None:
        """Jobs for the labels (of ``skus``/``labels``; neither: all bound labels) whose
        face at ``at`` changed, one transaction; unless ``skus`` is given, unbound labels that
        show content go blank."""
        faces = self._book.face_params(at, skus=skus, labels=labels)
        await self.commit(
            plan_sql.plan_statements(faces, now=now, reason=reason, unbound=skus is None)
        )

    async def schedule(
        self, boundaries: Sequence[tuple[str, Collection[str]]], *, now: datetime, until: datetime
    ) -> None:
        """The flips at each boundary (instant, SKUs) in (now, until]; gone ones dropped."""
        faces = [(at, self._book.face_params(at, skus=skus)) for at, skus in boundaries]
        await self.commit(plan_sql.schedule_statements(faces, now=now, until=until))

    @staticmethod
    def promote_due(now: datetime) -> list[Statement]:
        """Due flips become jobs (latest per label; stale ones expire)."""
        return plan_sql.promote_due_statements(now)

    async def next_flip_due(self) -> datetime | None:
        row = await self._db.fetchone("SELECT min(due_at) AS due FROM label_schedule")
        return None if row is None or row["due"] is None else datetime.fromisoformat(row["due"])

    async def flips_by_device(self, after: datetime, fallback: str | None) -> list[Row]:
        """Flips due after ``after``: (due_at, device, n) per instant and device."""
        return await self._db.fetchall(
            sql.FLIPS_BY_DEVICE,
            (fallback, isoformat_utc(after)),
        )

    # --- rendering ------------------------------------------------------------------------

    async def flips_to_render(self, limit: int) -> list[Row]:
        """Undrawn flips of labels a driver has heard (label, due_at, face), by due time and
        SKU: labels sharing a face share a chunk."""
        return await self._db.fetchall(
            "SELECT label, due_at, face FROM label_schedule WHERE content_hash IS NULL "
            "AND label IN (SELECT label FROM label_shown) ORDER BY due_at, sku LIMIT ?",
            (limit,),
        )

    async def jobs_to_render(self, limit: int) -> list[Row]:
        """Undrawn queued jobs (label, rev, face), scheduled ones first."""
        return await self._db.fetchall(
            "SELECT label, rev, face FROM label_jobs WHERE content_hash IS NULL "
            "AND state = 'queued' ORDER BY scheduled DESC, order_at, sku LIMIT ?",
            (limit,),
        )

    @staticmethod
    def image(content_hash: str, png: bytes, now: str) -> Statement:
        return (sql.STORE_IMAGE, (content_hash, png, now))

    @staticmethod
    def rendered_flip(row: Row, content_hash: str, model: str) -> Statement:
        return (
            sql.RENDERED_SCHEDULE,
            (content_hash, model, row["label"], row["due_at"], row["face"]),
        )

    @staticmethod
    def rendered_job(
        label: str, rev: int, *, content_hash: str, model: str, outcome: Outcome, now: str
    ) -> Statement:
        """A queued job drawn: still queued, or confirmed when the label shows it already."""
        confirmed = outcome.state is JobState.CONFIRMED
        at, evidence = (now, outcome.detail) if confirmed else (None, None)
        state = outcome.state.value
        return (sql.RENDERED_JOB, (content_hash, model, state, at, evidence, label, rev))

    @staticmethod
    def awaiting_model(label: str, rev: int, note: str) -> Statement:
        return (sql.TO_AWAITING_MODEL, (note, label, rev))

    async def rerender(self, stale: Sequence[tuple[str, int]]) -> None:
        """Jobs (label, rev) drawn for another panel than the label's go back to be drawn."""
        await self._db.submit_many(sql.RERENDER, stale)

    async def collect_images(self) -> None:
        """Images no job or flip refers to any more."""
        await self._db.submit(sql.COLLECT_IMAGES)

    # --- dispatch and reports -------------------------------------------------------------

    async def in_flight(self, device: str, since: datetime) -> list[str]:
        """The labels of jobs handed to ``device`` after ``since`` and not ended yet."""
        rows = await self._db.fetchall(
            "SELECT label FROM label_jobs WHERE state IN ('submitted', 'pending') "
            "AND device = ? AND submitted_at > ?",
            (device, isoformat_utc(since)),
        )
        return [str(r["label"]) for r in rows]

    async def ready(self, device: str, fallback: str | None, now: str, limit: int) -> list[Row]:
        """Drawn jobs due for ``device`` (label, rev, content_hash, model, attempts,
        scheduled): scheduled ones first, then by due or queued time."""
        return await self._db.fetchall(sql.READY, (now, fallback, device, limit))

    async def images(self, hashes: Collection[str]) -> dict[str, bytes]:
        rows = await self._db.fetchall(
            "SELECT content_hash, png FROM label_images "
            "WHERE content_hash IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(hashes)),),
        )
        return {str(r["content_hash"]): bytes(r["png"]) for r in rows}

    async def claim(self, jobs: Sequence[Row], device: str, now: str) -> None:
        """The jobs are being handed to ``device`` (committed before its ``push``)."""
        await self._db.submit_many(sql.CLAIM, [(now, device, r["label"], r["rev"]) for r in jobs])

    @staticmethod
    def to_pending(label: str, rev: int) -> Statement:
        return (sql.TO_PENDING, (label, rev))

    async def jobs_of(self, labels: Collection[str]) -> dict[str, Row]:
        """The jobs of ``labels`` (label, rev, state, content_hash, attempts, model)."""
        rows = await self._db.fetchall(
            "SELECT label, rev, state, content_hash, attempts, model FROM label_jobs "
            "WHERE label IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(labels)),),
        )
        return {str(r["label"]): r for r in rows}

    @staticmethod
    def shown(label: str, shown: Shown) -> Statement:
        return (sql.SHOWN_UPSERT, (label, *shown.row()))

    def refit(
        self, labels: Collection[str] | None, now: str, *, reason: str | None = None
    ) -> list[Statement]:
        """Jobs of the labels (None: all) parked while the label was unheard are queued to be
        drawn; content drawn for another panel than the label's is drawn again (active jobs
        audited as superseded, ``reason`` or the panels named), and so are pre-rendered
        flips."""
        array = None if labels is None else json.dumps(sorted(labels))
        default = self._default_model
        awaiting, audit, jobs, schedule = sql.REFIT_ALL if labels is None else sql.REFIT_SOME
        return [
            (awaiting, (default, array)),
            (audit, (default, array, now, reason)),
            (jobs, (default, array, reason)),
            (schedule, (default, array)),
        ]

    # --- transitions and audit ------------------------------------------------------------

    @staticmethod
    def audit(label: str, rev: int, event: AuditEvent, detail: str, now: str) -> Statement:
        """The audit row of the job (``label``, ``rev``) as it is when this runs."""
        return (sql.AUDIT_JOB, (now, event.value, detail, label, rev))

    def transition(self, label: str, rev: int, outcome: Outcome, now: str) -> list[Statement]:
        """A decided transition (:mod:`gateway.labels.jobs`) with its audit row."""
        statements: list[Statement] = []
        match outcome.state:
            case JobState.CONFIRMED:
                statements.append((sql.TO_CONFIRMED, (now, outcome.detail, label, rev)))
            case JobState.FAILED | JobState.FAILED_PERMANENT:
                retry_at = (
                    isoformat_utc(outcome.next_attempt_at)
                    if outcome.next_attempt_at is not None
                    else None
                )
                statements.append(
                    (sql.TO_FAILED, (outcome.state.value, retry_at, outcome.detail, label, rev))
                )
            case JobState.QUEUED:
                statements.append((sql.TO_REQUEUED, (outcome.detail, now, label, rev)))
            case _:
                raise ValueError(f"no transition to {outcome.state}")
        if outcome.event is not None:
            statements.append(self.audit(label, rev, outcome.event, outcome.detail, now))
        return statements

    async def retry_failed(self, label: str, sku: str, why: str, now: str) -> str | None:
        """The label's failed job for ``sku`` queued again, audited; its state afterwards."""
        await self.commit(
            [(sql.AUDIT_RETRIED, (now, why, label, sku)), (sql.RETRY_FAILED, (label, sku))]
        )
        row = await self._db.fetchone(
            "SELECT state FROM label_jobs WHERE label = ? AND sku = ?", (label, sku)
        )
        return None if row is None else str(row["state"])

    # --- upkeep ---------------------------------------------------------------------------

    async def pending_since(self, cutoff: datetime) -> list[Row]:
        """Pending jobs submitted at or before ``cutoff`` (label, rev, attempts)."""
        return await self._db.fetchall(
            "SELECT label, rev, attempts FROM label_jobs WHERE state = 'pending' "
            "AND submitted_at <= ?",
            (isoformat_utc(cutoff),),
        )

    @staticmethod
    def requeue_drifted(now: str) -> list[Statement]:
        """Confirmed jobs whose label shows other content are pushed again, audited."""
        return [(sql.AUDIT_DRIFTED, (now,)), (sql.REQUEUE_DRIFTED, (now,))]

    async def bound_skus(self) -> dict[str, int]:
        """Every bound SKU with its number of labels."""
        rows = await self._db.fetchall(
            "SELECT sku, count(*) AS labels FROM label_bindings GROUP BY sku"
        )
        return {str(r["sku"]): int(r["labels"]) for r in rows}

    async def late(self, cutoff: datetime) -> list[Row]:
        """Unconfirmed jobs due at or before ``cutoff`` (label, state, due), oldest first."""
        return await self._db.fetchall(
            sql.LATE,
            (isoformat_utc(cutoff),),
        )

    async def waiting_for(self, device: str, fallback: str | None) -> int:
        """Jobs waiting to be handed to ``device``."""
        row = await self._db.fetchone(
            sql.WAITING_FOR,
            (fallback, device),
        )
        return int(row["n"]) if row is not None else 0

    # --- the audit trail ------------------------------------------------------------------

    async def audit_after(self, mark: int, limit: int) -> list[Row]:
        return await self._db.fetchall(
            "SELECT id, at, label, event, state, sku, price_version, content_hash, detail "
            "FROM label_audit WHERE id > ? ORDER BY id LIMIT ?",
            (mark, limit),
        )

    async def prune_audit(self, *, forwarded: int, before: datetime) -> None:
        """Audit rows forwarded (id up to ``forwarded``) and older than ``before`` go."""
        await self._db.submit(
            "DELETE FROM label_audit WHERE id <= ? AND at < ?", (forwarded, isoformat_utc(before))
        )

    # --- views ----------------------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        rows = await self._db.fetchall("SELECT state, count(*) AS n FROM label_jobs GROUP BY state")
        return {str(r["state"]): int(r["n"]) for r in rows}

    async def unreachable(self, fallback: str | None) -> list[str]:
        """Unconfirmed jobs' labels no driver reaches."""
        rows = await self._db.fetchall(
            sql.UNREACHABLE,
            (fallback,),
        )
        return [str(r["label"]) for r in rows]

    async def jobs(
        self, *, state: str | None = None, labels: Sequence[str] | None = None, limit: int
    ) -> list[Row]:
        """Jobs of ``labels`` (by label), or in ``state`` (None: any; in dispatch order)."""
        if labels is not None:
            return await self._db.fetchall(
                "SELECT * FROM label_jobs WHERE label IN (SELECT value FROM json_each(?)) "
                "ORDER BY label LIMIT ?",
                (json.dumps(list(labels)), limit),
            )
        return await self._db.fetchall(
            "SELECT * FROM label_jobs WHERE ?1 IS NULL OR state = ?1 "
            "ORDER BY scheduled DESC, order_at, label LIMIT ?2",
            (state, limit),
        )

    async def flips(self) -> list[Row]:
        """Scheduled flips per instant (due_at, labels, rendered)."""
        return await self._db.fetchall(
            "SELECT due_at, count(*) AS labels, sum(content_hash IS NOT NULL) AS rendered "
            "FROM label_schedule GROUP BY due_at ORDER BY due_at"
        )

    async def unbound_heard(self) -> list[Row]:
        """Labels a driver reports that no binding names (label, device, model, at)."""
        return await self._db.fetchall(sql.UNBOUND_HEARD)

    async def record(self, label: str) -> tuple[Row | None, Row | None, list[Row], list[Row]]:
        """What is stored about one label: its binding, its job, its flips (by due time) and
        its last 20 audit rows (newest first)."""
        binding = await self._db.fetchone(
            "SELECT label, sku, source, local_override, updated_at FROM label_bindings "
            "WHERE label = ?",
            (label,),
        )
        job = await self._db.fetchone("SELECT * FROM label_jobs WHERE label = ?", (label,))
        flips = await self._db.fetchall(
            "SELECT due_at, sku, face, price_version, valid_to, content_hash "
            "FROM label_schedule WHERE label = ? ORDER BY due_at",
            (label,),
        )
        audit = await self._db.fetchall(
            "SELECT id, at, event, state, sku, price_version, content_hash, detail "
            "FROM label_audit WHERE label = ? ORDER BY id DESC LIMIT 20",
            (label,),
        )
        return binding, job, flips, audit
