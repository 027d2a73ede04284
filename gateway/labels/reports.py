"""The reports stage: what ESL drivers report about labels → confirmed, retried or re-pushed
jobs, and what each label shows (``label_shown``).

CONFIRMED with the job's hash → confirmed (evidence, the driver's time); FAILED → retried
with backoff; SEEN showing the job's hash → confirmed (a lost confirmation); SEEN on a
confirmed label showing other content (a reboot, a lost image) → queued again. Anything else
(an unknown label, a hash never sent, a duplicate) only updates what the label shows. A label
heard for the first time, or reporting another panel, has its content drawn (again) for it.
Reports queue in arrival order (:meth:`Reports.on_reading`, a ReadingHub listener) and are
applied in batches by the stage's task.
"""

from __future__ import annotations

from gateway.clock import isoformat_utc
from gateway.drivers.contracts import LabelReport, Reading
from gateway.labels.context import StageContext
from gateway.labels.job_store import Statement
from gateway.labels.jobs import JobFacts, JobState, ReportFacts, on_report

__all__ = ["Reports"]

_REPORT_BATCH = 2_000


class Reports:
    def __init__(self, context: StageContext) -> None:
        self._context = context
        self._queue: list[tuple[str, LabelReport]] = []

    def on_reading(self, device: str, reading: Reading) -> None:
        """ReadingHub listener: label reports are handled in the reports task."""
        if isinstance(reading, LabelReport):
            self._queue.append((device, reading))
            self._context.wake.reports.set()

    async def process_reports(self) -> int:
        """Apply the queued driver reports (in arrival order); returns how many (the stage's
        step)."""
        ctx = self._context
        batch, self._queue = self._queue[:_REPORT_BATCH], self._queue[_REPORT_BATCH:]
        if not batch:
            return 0
        jobs = await ctx.store.jobs_of({report.label_id for _, report in batch})
        facts = {
            label: JobFacts(label, JobState(r["state"]), r["content_hash"], int(r["attempts"]))
            for label, r in jobs.items()
        }
        now = ctx.clock.utc_now()
        now_text = isoformat_utc(now)
        statements: list[Statement] = []
        shown_changed: set[str] = set()
        refit: set[str] = set()  # labels whose content is (re)drawn for their panel
        for device, report in batch:
            label = report.label_id
            before = ctx.shown.panel(label)
            if ctx.shown.note(device, report, now_text):
                shown_changed.add(label)
            panel = ctx.shown.panel(label)
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
                rng=ctx.rng,
                initial_s=ctx.config.retry_initial_s,
                max_s=ctx.config.retry_max_s,
            )
            if outcome is None or job is None:
                continue
            rev = int(jobs[label]["rev"])
            at = isoformat_utc(report.observed_at) if outcome.confirmed else now_text
            statements += ctx.store.transition(label, rev, outcome, at)
            facts[label] = JobFacts(label, outcome.state, job.content_hash, job.attempts)
            if outcome.state is JobState.QUEUED:
                ctx.wake.dispatch.set()
        statements += [
            ctx.store.shown(label, shown)
            for label in sorted(shown_changed)
            if (shown := ctx.shown.get(label)) is not None
        ]
        if refit:
            statements += ctx.store.refit(refit, now_text)
        if statements:
            await ctx.store.commit(statements)
            ctx.wake.dispatch.set()
            ctx.wake.receipts.set()
            if refit:
                ctx.wake.render.set()  # after the commit: the render reads committed rows
        return len(batch)
