"""The label job state machine: every transition, and garbage reports that change nothing."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.clock import FakeClock
from gateway.drivers.contracts import LabelReportKind
from gateway.labels.jobs import (
    AuditEvent,
    JobFacts,
    JobState,
    ReportFacts,
    after_push,
    after_render,
    backoff_delay,
    on_confirmation_timeout,
    on_report,
)

NOW = FakeClock().utc_now()
RETRY = {"initial_s": 10.0, "max_s": 600.0}


def job(state: JobState, content_hash: str | None = "h1", attempts: int = 1) -> JobFacts:
    return JobFacts("L1", state, content_hash, attempts)


def report(kind: LabelReportKind, content_hash: str | None, evidence: str = "ev") -> ReportFacts:
    return ReportFacts(kind, content_hash, evidence)


def decide(j: JobFacts | None, r: ReportFacts):  # type: ignore[no-untyped-def]
    return on_report(j, r, now=NOW, rng=random.Random(1), **RETRY)


def test_render_queues_or_finds_the_label_already_showing_it() -> None:
    queued = after_render(job(JobState.QUEUED), shown_hash="other")
    assert (queued.state, queued.event) == (JobState.QUEUED, AuditEvent.QUEUED)
    same = after_render(job(JobState.QUEUED), shown_hash="h1")
    assert (same.state, same.event, same.confirmed) == (
        JobState.CONFIRMED,
        AuditEvent.UNCHANGED,
        True,
    )
    with pytest.raises(ValueError, match="only a queued job"):
        after_render(job(JobState.PENDING), shown_hash=None)


def test_push_outcomes() -> None:
    args = {"now": NOW, "rng": random.Random(1), **RETRY}
    ok = after_push(job(JobState.SUBMITTED), error=None, permanent=False, **args)
    assert (ok.state, ok.event) == (JobState.PENDING, None)
    retry = after_push(job(JobState.SUBMITTED), error="AP busy", permanent=False, **args)
    assert (retry.state, retry.event, retry.detail) == (
        JobState.FAILED,
        AuditEvent.FAILED,
        "AP busy",
    )
    assert retry.next_attempt_at is not None
    assert retry.next_attempt_at > NOW
    permanent = after_push(job(JobState.SUBMITTED), error="panel size", permanent=True, **args)
    assert (permanent.state, permanent.next_attempt_at) == (JobState.FAILED_PERMANENT, None)
    with pytest.raises(ValueError, match="push outcome"):
        after_push(job(JobState.QUEUED), error=None, permanent=False, **args)


def test_confirmation_timeout_retries_a_pending_job_only() -> None:
    outcome = on_confirmation_timeout(
        job(JobState.PENDING), waited_s=600, now=NOW, rng=random.Random(1), **RETRY
    )
    assert outcome.state is JobState.FAILED
    assert "no confirmation within 600 s" in outcome.detail
    with pytest.raises(ValueError, match="only a pending job"):
        on_confirmation_timeout(
            job(JobState.QUEUED), waited_s=600, now=NOW, rng=random.Random(1), **RETRY
        )


@pytest.mark.parametrize("state", [JobState.SUBMITTED, JobState.PENDING, JobState.FAILED])
def test_confirmed_report_with_the_expected_hash_confirms(state: JobState) -> None:
    outcome = decide(job(state), report(LabelReportKind.CONFIRMED, "h1", "xfer complete"))
    assert outcome is not None
    assert (outcome.state, outcome.event, outcome.detail, outcome.confirmed) == (
        JobState.CONFIRMED,
        AuditEvent.CONFIRMED,
        "xfer complete",
        True,
    )


def test_garbage_reports_change_nothing() -> None:
    assert decide(None, report(LabelReportKind.CONFIRMED, "h1")) is None  # unknown label
    assert decide(job(JobState.PENDING), report(LabelReportKind.CONFIRMED, "never")) is None
    assert decide(job(JobState.CONFIRMED), report(LabelReportKind.CONFIRMED, "h1")) is None
    assert decide(job(JobState.QUEUED, None), report(LabelReportKind.SEEN, None)) is None
    assert decide(job(JobState.PENDING), report(LabelReportKind.FAILED, "old")) is None
    assert decide(job(JobState.CONFIRMED), report(LabelReportKind.FAILED, "h1")) is None
    assert decide(job(JobState.PENDING), report(LabelReportKind.SEEN, "old")) is None
    perm = job(JobState.FAILED_PERMANENT)
    assert decide(perm, report(LabelReportKind.CONFIRMED, "h1")) is None


def test_failed_report_retries_with_backoff() -> None:
    outcome = decide(job(JobState.PENDING), report(LabelReportKind.FAILED, "h1", "xfer timeout"))
    assert outcome is not None
    assert (outcome.state, outcome.event, outcome.detail) == (
        JobState.FAILED,
        AuditEvent.FAILED,
        "xfer timeout",
    )


def test_seen_resolves_a_lost_confirmation_and_reveals_drift() -> None:
    lost = decide(job(JobState.PENDING), report(LabelReportKind.SEEN, "h1", "check-in"))
    assert lost is not None
    assert (lost.state, lost.detail) == (
        JobState.CONFIRMED,
        "seen with expected content (check-in)",
    )
    rebooted = decide(job(JobState.CONFIRMED), report(LabelReportKind.SEEN, "old"))
    assert rebooted is not None
    assert (rebooted.state, rebooted.event) == (JobState.QUEUED, AuditEvent.REQUEUED)
    blank = decide(job(JobState.CONFIRMED), report(LabelReportKind.SEEN, None))
    assert blank is not None
    assert blank.state is JobState.QUEUED
    assert decide(job(JobState.CONFIRMED), report(LabelReportKind.SEEN, "h1")) is None


@given(st.integers(min_value=1, max_value=10_000), st.integers(min_value=0, max_value=2**32))
def test_backoff_is_capped_jittered_and_never_zero(attempts: int, seed: int) -> None:
    delay = backoff_delay(attempts, initial_s=10, max_s=600, rng=random.Random(seed))
    assert 1.0 <= delay <= 600
    assert delay <= max(1.0, 10 * 2 ** (attempts - 1))


@given(
    st.lists(
        st.tuples(st.sampled_from(list(LabelReportKind)), st.sampled_from(["h1", "h2", None])),
        max_size=30,
    )
)
def test_any_report_sequence_keeps_the_machine_consistent(
    reports: list[tuple[LabelReportKind, str | None]],
) -> None:
    current = job(JobState.PENDING)
    for kind, digest in reports:
        outcome = decide(current, report(kind, digest))
        if outcome is None:
            continue
        if outcome.state is JobState.CONFIRMED:
            assert digest == "h1"  # only ever confirmed by its own content
        if outcome.next_attempt_at is not None:
            assert outcome.next_attempt_at - NOW <= timedelta(seconds=600)
        current = JobFacts("L1", outcome.state, "h1", current.attempts + 1)
