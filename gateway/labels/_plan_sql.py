"""Planning in SQL, set-based — never one query per label: the statements of one planning
transaction, built here and run only by :class:`gateway.labels.job_store.LabelJobStore`.

A label's *face* is what its SKU shows at an instant, as canonical JSON built by SQLite from
the price book's one rule (embedded through :meth:`PriceBook.faces_of
<gateway.prices.book.PriceBook.faces_of>`: the promotion in force, its window and its "was"
price). Planning compares the faces of the affected labels with their jobs' faces and, in one
transaction, records the old active jobs as superseded and replaces them by queued jobs (no
content hash yet: the render stage draws them). A label whose face did not change is not
touched, so re-planning everything is cheap. A label no longer bound that shows (or was sent)
content gets a job with the blank face (``BLANK_FACE``: "not in use", no SKU, no price) so no
stale price stays on the shelf; the jobs of unbound labels never sent anything are dropped.

Scheduled flips are planned the same way for the boundaries (promotion starts and ends) within
the look-ahead window, into ``label_schedule``; at their instant they are promoted into
``label_jobs`` pre-rendered (:func:`promote_due_statements`). ``label_plan`` is the scratch
table, empty between transactions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.clock import isoformat_utc
from gateway.labels.faces import BLANK_FACE
from gateway.labels.jobs import JobPriority
from gateway.prices.book import FaceParams, PriceBook

__all__ = ["plan_statements", "promote_due_statements", "schedule_statements"]

Statement = tuple[str, Sequence[Any]]

_CLEAR_PLAN = ("DELETE FROM label_plan", ())

# The faces of bound labels at ?1 (the price book's rule), only for the SKUs (?2) or labels
# (?3) given as JSON arrays (NULL: every bound label); ?4 the ``was_price`` setting.
_FACES = PriceBook.faces_of(
    "SELECT label, sku FROM label_bindings "
    "WHERE (?2 IS NULL OR sku IN (SELECT sku FROM wanted_skus)) "
    "AND (?3 IS NULL OR label IN (SELECT label FROM wanted_labels))"
)

# Stage the labels whose face differs from their job's (or that have none). A face not ready
# yet (its prior price is being worked out) leaves the job as it is until it is.
_STAGE = f"""
INSERT INTO label_plan (label, sku, face, price_version)
SELECT f.label, f.sku, f.face, f.version FROM ({_FACES}) AS f
LEFT JOIN label_jobs j ON j.label = f.label
WHERE f.ready AND (j.label IS NULL OR j.face IS NOT f.face OR j.sku IS NOT f.sku)
"""  # noqa: S608 - constant fragments

# Active jobs whose content HQ heard of (rendered: a label.queued receipt went up) and that
# new content replaces. ?1 now, ?2 why.
_AUDIT_SUPERSEDED = """
INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, detail)
SELECT ?1, j.label, 'superseded', j.state, j.sku, j.price_version, j.content_hash,
  ?2 || ' (price version ' || n.price_version || ')'
FROM label_jobs j JOIN label_plan n ON n.label = j.label
WHERE j.state IN ('queued', 'submitted', 'pending', 'failed') AND j.content_hash IS NOT NULL
"""

# ?1 now, ?2 due_at (NULL: now), ?3 the priority (``scheduled``, a JobPriority).
_UPSERT_JOBS = """
INSERT INTO label_jobs (label, sku, face, price_version, due_at, order_at, scheduled, state,
  queued_at)
SELECT label, sku, face, price_version, ?2, coalesce(?2, ?1), ?3, 'queued', ?1
FROM label_plan WHERE true
ON CONFLICT (label) DO UPDATE SET sku = excluded.sku, face = excluded.face,
  price_version = excluded.price_version, rev = label_jobs.rev + 1, model = NULL,
  content_hash = NULL, due_at = excluded.due_at, order_at = excluded.order_at,
  scheduled = excluded.scheduled, state = 'queued', attempts = 0, next_attempt_at = NULL,
  device = NULL, queued_at = excluded.queued_at, submitted_at = NULL, confirmed_at = NULL,
  last_error = NULL, evidence = NULL
"""


# Active jobs of labels no longer bound, audited as superseded (blank jobs excepted).
_AUDIT_UNBOUND = """
INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, detail)
SELECT ?1, label, 'superseded', state, sku, price_version, content_hash, 'label unbound'
FROM label_jobs
WHERE label NOT IN (SELECT label FROM label_bindings) AND sku != ''
  AND state IN ('queued', 'submitted', 'pending', 'failed') AND content_hash IS NOT NULL
"""
# Unbound labels that show something (a driver reported content) or may have been sent content
# (their job went past its first render) get the blank face, unless their job already has it.
# ?1 the blank face. A job queued once (or waiting for its label's panel) and never handed to
# a driver (rev 1, no attempt) was never sent: it is dropped below, like the jobs of labels
# nothing reports.
_STAGE_BLANK = """
INSERT INTO label_plan (label, sku, face, price_version)
SELECT u.label, '', ?1, 0 FROM (
  SELECT label FROM label_shown WHERE content_hash IS NOT NULL
  UNION
  SELECT label FROM label_jobs
  WHERE state NOT IN ('queued', 'awaiting_model') OR attempts > 0 OR rev > 1
) AS u
LEFT JOIN label_jobs j ON j.label = u.label
WHERE u.label NOT IN (SELECT label FROM label_bindings)
  AND (j.label IS NULL OR j.face IS NOT ?1 OR j.sku IS NOT '')
"""
# Jobs of unbound labels that are not blank now (never sent): dropped, with their flips.
_DROP_UNBOUND = (
    "DELETE FROM label_jobs WHERE sku != '' AND label NOT IN (SELECT label FROM label_bindings)",
    "DELETE FROM label_schedule WHERE label NOT IN (SELECT label FROM label_bindings)",
)

# The next boundary after ?1 of each staged SKU: when a scheduled face stops being correct.
_VALID_TO = (
    "UPDATE label_plan SET valid_to = "  # noqa: S608 - constant fragments
    + PriceBook.next_boundary_of("label_plan.sku", "?1")
)

# Faces for instant ?1 of the labels of the SKUs in ?2, staged whatever the current job (not
# ready: not staged, so a flip rendered earlier is dropped until it is).
_STAGE_AT = f"""
INSERT INTO label_plan (label, sku, face, price_version)
SELECT label, sku, face, version FROM ({_FACES}) WHERE ready
"""  # noqa: S608 - constant fragments

_SCHEDULE_DROP_CHANGED = """
DELETE FROM label_schedule WHERE due_at = ?1 AND NOT EXISTS (
  SELECT 1 FROM label_plan n WHERE n.label = label_schedule.label
    AND n.face = label_schedule.face AND n.valid_to IS label_schedule.valid_to)
"""
_SCHEDULE_INSERT = """
INSERT INTO label_schedule (label, due_at, sku, face, price_version, valid_to, planned_at)
SELECT label, ?1, sku, face, price_version, valid_to, ?2 FROM label_plan WHERE true
ON CONFLICT (label, due_at) DO NOTHING
"""

# --- promotion of due scheduled contents (?1 now) ------------------------------------------

# Due rows that can no longer be shown: their validity ended, or a later due row of the same
# label replaces them (only the latest content matters after a downtime).
_EXPIRED_WHERE = """
due_at <= ?1 AND (valid_to <= ?1 OR EXISTS (
  SELECT 1 FROM label_schedule later WHERE later.label = label_schedule.label
    AND later.due_at > label_schedule.due_at AND later.due_at <= ?1))
"""
_AUDIT_EXPIRED = f"""
INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, detail)
SELECT ?1, label, 'expired', 'expired', sku, price_version, content_hash,
  'scheduled for ' || due_at || ', valid until ' || coalesce(valid_to, 'open')
  || ': not shown in time'
FROM label_schedule WHERE {_EXPIRED_WHERE}
"""  # noqa: S608 - constant fragments
_DELETE_EXPIRED = f"DELETE FROM label_schedule WHERE {_EXPIRED_WHERE}"  # noqa: S608

_AUDIT_SUPERSEDED_BY_FLIP = """
INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, detail)
SELECT ?1, j.label, 'superseded', j.state, j.sku, j.price_version, j.content_hash,
  'scheduled content due ' || s.due_at
FROM label_jobs j JOIN label_schedule s ON s.label = j.label AND s.due_at <= ?1
WHERE j.state IN ('queued', 'submitted', 'pending', 'failed') AND j.content_hash IS NOT NULL
  AND (j.face IS NOT s.face OR j.sku IS NOT s.sku)
"""
# A pre-rendered flip lands queued (or confirmed when the label already shows it).
_PROMOTE = """
INSERT INTO label_jobs (label, sku, face, price_version, model, content_hash, due_at,
  order_at, scheduled, state, queued_at, confirmed_at, evidence)
SELECT s.label, s.sku, s.face, s.price_version, s.model, s.content_hash, s.due_at,
  s.due_at, 1,
  CASE WHEN s.content_hash IS NOT NULL AND sh.content_hash = s.content_hash
       THEN 'confirmed' ELSE 'queued' END, ?1,
  CASE WHEN s.content_hash IS NOT NULL AND sh.content_hash = s.content_hash THEN ?1 END,
  CASE WHEN s.content_hash IS NOT NULL AND sh.content_hash = s.content_hash
       THEN 'the label already shows this content' END
FROM label_schedule s LEFT JOIN label_shown sh ON sh.label = s.label
LEFT JOIN label_jobs j ON j.label = s.label
WHERE s.due_at <= ?1 AND (j.label IS NULL OR j.face IS NOT s.face OR j.sku IS NOT s.sku)
ON CONFLICT (label) DO UPDATE SET sku = excluded.sku, face = excluded.face,
  price_version = excluded.price_version, rev = label_jobs.rev + 1, model = excluded.model,
  content_hash = excluded.content_hash, due_at = excluded.due_at,
  order_at = excluded.order_at, scheduled = 1, state = excluded.state, attempts = 0,
  next_attempt_at = NULL, device = NULL, queued_at = excluded.queued_at, submitted_at = NULL,
  confirmed_at = excluded.confirmed_at, last_error = NULL, evidence = excluded.evidence
"""
_AUDIT_PROMOTED = """
INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, detail)
SELECT ?1, j.label, CASE j.state WHEN 'confirmed' THEN 'unchanged' ELSE 'queued' END,
  j.state, j.sku, j.price_version, j.content_hash, 'scheduled flip due ' || j.due_at
FROM label_jobs j JOIN label_schedule s ON s.label = j.label AND s.due_at = j.due_at
WHERE s.due_at <= ?1 AND j.queued_at = ?1 AND j.scheduled = 1 AND j.content_hash IS NOT NULL
"""
_DELETE_PROMOTED = "DELETE FROM label_schedule WHERE due_at <= ?1"


def plan_statements(
    faces: FaceParams, *, now: datetime, reason: str, unbound: bool
) -> list[Statement]:
    """Jobs for the labels ``faces`` selects whose face differs from their job's. With
    ``unbound``, unbound labels that show or were sent content get a blank ("not in use") job;
    the others' jobs are dropped."""
    now_text = isoformat_utc(now)
    statements: list[Statement] = [
        _CLEAR_PLAN,
        (_STAGE, faces),
        (_AUDIT_SUPERSEDED, (now_text, reason)),
        (_UPSERT_JOBS, (now_text, None, int(JobPriority.CONTENT))),
        _CLEAR_PLAN,
    ]
    if unbound:
        statements += [
            (_AUDIT_UNBOUND, (now_text,)),
            (_STAGE_BLANK, (BLANK_FACE,)),
            (_UPSERT_JOBS, (now_text, None, int(JobPriority.CONTENT))),
            _CLEAR_PLAN,
        ]
        statements += [(sql, ()) for sql in _DROP_UNBOUND]
    return statements


def schedule_statements(
    boundaries: Sequence[tuple[str, FaceParams]], *, now: datetime, until: datetime
) -> list[Statement]:
    """Scheduled faces for each boundary instant in (now, until] (with the face query of its
    SKUs at that instant); rows for instants that are no longer boundaries (a cancelled
    promotion) are dropped."""
    now_text = isoformat_utc(now)
    instants = [instant for instant, _ in boundaries]
    statements: list[Statement] = [
        (
            (
                "DELETE FROM label_schedule WHERE due_at > ?1 AND due_at <= ?2 "
                "AND due_at NOT IN (SELECT value FROM json_each(?3))"
            ),
            (now_text, isoformat_utc(until), json.dumps(instants)),
        ),
    ]
    for instant, faces in boundaries:
        statements += [
            _CLEAR_PLAN,
            (_STAGE_AT, faces),
            (_VALID_TO, (instant,)),
            (_SCHEDULE_DROP_CHANGED, (instant,)),
            (_SCHEDULE_INSERT, (instant, now_text)),
        ]
    statements.append(_CLEAR_PLAN)
    return statements


def promote_due_statements(now: datetime) -> list[Statement]:
    """Due scheduled contents become jobs (latest per label; stale ones expire)."""
    now_text = isoformat_utc(now)
    return [
        (_AUDIT_EXPIRED, (now_text,)),
        (_DELETE_EXPIRED, (now_text,)),
        (_AUDIT_SUPERSEDED_BY_FLIP, (now_text,)),
        (_PROMOTE, (now_text,)),
        (_AUDIT_PROMOTED, (now_text,)),
        (_DELETE_PROMOTED, (now_text,)),
    ]
