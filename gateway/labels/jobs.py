"""The label job state machine (sans-IO): what happens to one label's content, decided from
facts and an instant, never from a clock or a socket.

Each label has at most one job — its latest content. Its life::

    awaiting_model ◀── the label's panel is not known yet (no driver has heard the label)
       │ it reports its model
       ▼
    queued ──render──▶ queued (image, hash) ──claim──▶ submitted ──push ok──▶ pending
       ▲                    │ label already shows it                │          │
       │                    ▼                                       │          ▼
       │               confirmed ("unchanged")        push error ───┤   CONFIRMED report
       │                                                            │   (or SEEN showing
       ├── retry due ◀── failed (retryable, backoff + jitter) ◀─────┤    the expected hash)
       │                                                            │          │
       │                  failed_permanent ◀── DriverConfigError ───┘          ▼
       └── drift: a SEEN label shows other content ◀────────────────────── confirmed

A label's panel (its model) is what its ESL system reports; content is drawn for it. Content
drawn for another panel than the label's — the label reports a new one, or the ESL system
refuses the content naming the panel — is drawn again from ``queued``, whatever its state
(an active job is recorded as *superseded*): a wrong panel is never a permanent failure.
A technician's ``label bind`` of the label's SKU retries a failed job at once.

New content for a label replaces its job whatever its state; an active old job (one whose
content was announced to HQ) is recorded as *superseded*. A scheduled content whose validity
ended before it was due to be shown is recorded as *expired*. Reports that do not fit (an
unknown label, a hash never sent, a duplicate confirmation) change nothing but what the label
is known to show.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum

from gateway.drivers.contracts import LabelReportKind

__all__ = [
    "ACTIVE_STATES",
    "AuditEvent",
    "JobFacts",
    "JobPriority",
    "JobState",
    "Outcome",
    "ReportFacts",
    "after_push",
    "after_render",
    "backoff_delay",
    "on_confirmation_timeout",
    "on_report",
]


class JobPriority(IntEnum):
    """Which jobs the render and dispatch stages take first (``label_jobs.scheduled``, highest
    first, then by due or queued time): the radio is the bottleneck, so a scheduled flip goes
    before a price change, and both before a cosmetic redraw (the same price in a new style:
    template, fonts, locale — the label shows its right price meanwhile)."""

    FLIP = 1  # a scheduled flip at its instant
    CONTENT = 0  # new content: a price change, a binding, a drift re-push, a new panel
    COSMETIC = -1  # drawn again in a new style only


class JobState(StrEnum):
    AWAITING_MODEL = "awaiting_model"  # the label has not reported its panel: not drawn yet
    QUEUED = "queued"  # waiting for rendering or for its driver
    SUBMITTED = "submitted"  # being handed to the driver
    PENDING = "pending"  # accepted by the ESL system, not yet shown
    CONFIRMED = "confirmed"  # the label itself reported it shows the content
    FAILED = "failed"  # delivery failed; retried at next_attempt_at
    FAILED_PERMANENT = "failed_permanent"  # cannot succeed as configured (panel size, label)


#: Jobs whose content is still on its way: new content supersedes them.
ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.SUBMITTED, JobState.PENDING, JobState.FAILED})


class AuditEvent(StrEnum):
    """What ``label_audit`` records (receipts carry the ones HQ needs)."""

    QUEUED = "queued"  # rendered content waits for its driver (hash known)
    UNCHANGED = "unchanged"  # the label already shows this content: nothing sent
    CONFIRMED = "confirmed"  # the label shows it (driver evidence)
    FAILED = "failed"  # a delivery attempt failed (retryable or permanent)
    SUPERSEDED = "superseded"  # newer content replaced it before it was confirmed
    EXPIRED = "expired"  # scheduled content whose validity ended before it was due
    REQUEUED = "requeued"  # a confirmed label drifted, or a failed job is retried: re-push
    AWAITING_MODEL = "awaiting_model"  # not drawn until the label reports its panel (local)


@dataclass(frozen=True, slots=True)
class JobFacts:
    """A job as the decisions need it."""

    label: str
    state: JobState
    content_hash: str | None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class ReportFacts:
    kind: LabelReportKind
    content_hash: str | None
    evidence: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decided transition: the new state and what the audit records (None: nothing)."""

    state: JobState
    event: AuditEvent | None
    detail: str = ""
    next_attempt_at: datetime | None = None
    confirmed: bool = False  # the label now shows the job's content (update label_shown)


def backoff_delay(attempts: int, *, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Capped exponential backoff with full jitter for the ``attempts``-th failure (1-based),
    never below a tenth of ``initial_s``."""
    exponent = min(max(attempts - 1, 0), 60)  # 2**60 x initial is beyond any cap
    ceiling = min(max_s, initial_s * 2.0**exponent)
    return max(initial_s / 10, rng.uniform(0, ceiling))


def after_render(job: JobFacts, *, shown_hash: str | None) -> Outcome:
    """Rendering gave the job its hash: identical to what the label shows → nothing to send."""
    if job.state is not JobState.QUEUED or job.content_hash is None:
        raise ValueError(f"label {job.label}: only a queued job with a hash is rendered")
    if shown_hash is not None and shown_hash == job.content_hash:
        return Outcome(
            JobState.CONFIRMED,
            AuditEvent.UNCHANGED,
            "the label already shows this content",
            confirmed=True,
        )
    return Outcome(JobState.QUEUED, AuditEvent.QUEUED)


def after_push(
    job: JobFacts,
    *,
    error: str | None,
    permanent: bool,
    now: datetime,
    rng: random.Random,
    initial_s: float,
    max_s: float,
) -> Outcome:
    """The driver's ``push`` returned (error None: accepted, not shown) or raised."""
    if job.state is not JobState.SUBMITTED:
        raise ValueError(f"label {job.label}: push outcome for a job in state {job.state}")
    if error is None:
        return Outcome(JobState.PENDING, None)
    if permanent:
        return Outcome(JobState.FAILED_PERMANENT, AuditEvent.FAILED, error)
    return _retry(job, error, now=now, rng=rng, initial_s=initial_s, max_s=max_s)


def on_confirmation_timeout(
    job: JobFacts,
    *,
    waited_s: float,
    now: datetime,
    rng: random.Random,
    initial_s: float,
    max_s: float,
) -> Outcome:
    """A pending job saw no confirmation for too long (lost confirmation, or the ESL system
    dropped it): retried like a failure; a SEEN report may still confirm it meanwhile."""
    if job.state is not JobState.PENDING:
        raise ValueError(f"label {job.label}: only a pending job times out")
    return _retry(
        job,
        f"no confirmation within {waited_s:g} s",
        now=now,
        rng=rng,
        initial_s=initial_s,
        max_s=max_s,
    )


def _retry(
    job: JobFacts, error: str, *, now: datetime, rng: random.Random, initial_s: float, max_s: float
) -> Outcome:
    delay = backoff_delay(job.attempts, initial_s=initial_s, max_s=max_s, rng=rng)
    return Outcome(
        JobState.FAILED,
        AuditEvent.FAILED,
        error,
        next_attempt_at=now + timedelta(seconds=delay),
    )


def on_report(  # noqa: PLR0911 - one return per rule reads like the rules
    job: JobFacts | None,
    report: ReportFacts,
    *,
    now: datetime,
    rng: random.Random,
    initial_s: float,
    max_s: float,
) -> Outcome | None:
    """A driver's news about a label. None: the job does not change (the caller still records
    what the label shows)."""
    if job is None or job.content_hash is None:
        return None  # unknown label, or its content is not rendered yet
    expected = job.content_hash
    match report.kind:
        case LabelReportKind.CONFIRMED:
            if report.content_hash != expected or job.state is JobState.CONFIRMED:
                return None  # older content confirmed late, a hash never sent, or a duplicate
            if job.state is JobState.FAILED_PERMANENT:
                return None
            return Outcome(
                JobState.CONFIRMED, AuditEvent.CONFIRMED, report.evidence, confirmed=True
            )
        case LabelReportKind.FAILED:
            if report.content_hash != expected or job.state not in {
                JobState.SUBMITTED,
                JobState.PENDING,
            }:
                return None
            reason = report.evidence or "the ESL system reported a failed delivery"
            return _retry(job, reason, now=now, rng=rng, initial_s=initial_s, max_s=max_s)
        case LabelReportKind.SEEN:
            if report.content_hash == expected:
                if job.state in ACTIVE_STATES:
                    # A lost confirmation (or content it already had): the label shows it.
                    evidence = "seen with expected content"
                    if report.evidence:
                        evidence += f" ({report.evidence})"
                    return Outcome(
                        JobState.CONFIRMED, AuditEvent.CONFIRMED, evidence, confirmed=True
                    )
                return None
            if job.state is JobState.CONFIRMED:
                shown = report.content_hash[:12] if report.content_hash else "nothing"
                return Outcome(
                    JobState.QUEUED,
                    AuditEvent.REQUEUED,
                    f"label shows {shown} instead of the confirmed content: re-push",
                )
            return None  # still on its way
    return None
