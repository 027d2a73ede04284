"""The statements on the label job tables, run only by
:class:`gateway.labels.job_store.LabelJobStore` (their one owner): job transitions, their
audit rows, rendered images and flips, what labels show, panels and styles. Parameters are
positional (``?``) or numbered (``?1``) as each statement says.
"""

from __future__ import annotations

# The renderer's style changed (locale, time zone, fonts or template): every label's content,
# confirmed or not, and every pre-rendered flip is drawn again (audit: ?1 now, ?2 the reason;
# jobs: ?1 the reason). Each label shows its right price meanwhile, so these redraws go last
# (scheduled -1, JobPriority.COSMETIC): a content change made later (a price, a flip, a
# drift) is rendered and sent before them, not after hours of redraws.
RESTYLE_AUDIT = (
    "INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, "
    "detail) SELECT ?1, label, 'superseded', state, sku, price_version, content_hash, ?2 "
    "FROM label_jobs WHERE content_hash IS NOT NULL "
    "AND state IN ('queued', 'submitted', 'pending', 'failed')"
)
RESTYLE_JOBS = (
    "UPDATE label_jobs SET state = 'queued', rev = rev + 1, content_hash = NULL, model = NULL, "
    "attempts = 0, next_attempt_at = NULL, device = NULL, submitted_at = NULL, "
    "confirmed_at = NULL, evidence = NULL, last_error = ?1, scheduled = -1 "
    "WHERE content_hash IS NOT NULL AND state <> 'failed_permanent'"
)
RESTYLE_FLIPS = (
    "UPDATE label_schedule SET content_hash = NULL, model = NULL WHERE content_hash IS NOT NULL"
)
AUDIT_JOB = (
    "INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, "
    "detail) SELECT ?1, label, ?2, state, sku, price_version, content_hash, ?3 "
    "FROM label_jobs WHERE label = ?4 AND rev = ?5"
)
RENDERED_JOB = (
    "UPDATE label_jobs SET content_hash = ?1, model = ?2, state = ?3, "
    "confirmed_at = ?4, evidence = ?5 WHERE label = ?6 AND rev = ?7 AND state = 'queued' "
    "AND content_hash IS NULL"
)
RENDERED_SCHEDULE = (
    "UPDATE label_schedule SET content_hash = ?1, model = ?2 "
    "WHERE label = ?3 AND due_at = ?4 AND face = ?5"
)
STORE_IMAGE = (
    "INSERT INTO label_images (content_hash, png, created_at) VALUES (?, ?, ?) "
    "ON CONFLICT (content_hash) DO NOTHING"
)
COLLECT_IMAGES = (
    "DELETE FROM label_images WHERE content_hash NOT IN "
    "(SELECT content_hash FROM label_jobs WHERE content_hash IS NOT NULL) "
    "AND content_hash NOT IN "
    "(SELECT content_hash FROM label_schedule WHERE content_hash IS NOT NULL)"
)
RERENDER = (
    "UPDATE label_jobs SET content_hash = NULL, model = NULL "
    "WHERE label = ? AND rev = ? AND state IN ('queued', 'failed')"
)
CLAIM = (
    "UPDATE label_jobs SET state = 'submitted', attempts = attempts + 1, submitted_at = ?1, "
    "device = ?2 WHERE label = ?3 AND rev = ?4 AND state IN ('queued', 'failed')"
)
TO_PENDING = (
    "UPDATE label_jobs SET state = 'pending' WHERE label = ? AND rev = ? AND state = 'submitted'"
)
TO_CONFIRMED = (
    "UPDATE label_jobs SET state = 'confirmed', confirmed_at = ?1, evidence = ?2, "
    "last_error = NULL, next_attempt_at = NULL WHERE label = ?3 AND rev = ?4"
)
TO_FAILED = (
    "UPDATE label_jobs SET state = ?1, next_attempt_at = ?2, last_error = ?3 "
    "WHERE label = ?4 AND rev = ?5"
)
TO_REQUEUED = (
    "UPDATE label_jobs SET state = 'queued', attempts = 0, next_attempt_at = NULL, "
    "confirmed_at = NULL, evidence = NULL, last_error = ?1, queued_at = ?2, order_at = ?2, "
    "scheduled = 0 WHERE label = ?3 AND rev = ?4"
)
REQUEUE_DRIFTED = (
    "UPDATE label_jobs SET state = 'queued', attempts = 0, confirmed_at = NULL, "
    "last_error = 'drift found by reconciliation', queued_at = ?1, order_at = ?1, "
    "scheduled = 0 WHERE state = 'confirmed' AND content_hash IS NOT NULL AND content_hash "
    "IS NOT (SELECT content_hash FROM label_shown s WHERE s.label = label_jobs.label)"
)
AUDIT_DRIFTED = (
    "INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, "
    "detail) SELECT ?1, label, 'requeued', 'queued', sku, price_version, content_hash, "
    "'reconciliation: the label does not show its confirmed content' FROM label_jobs "
    "WHERE state = 'confirmed' AND content_hash IS NOT NULL AND content_hash "
    "IS NOT (SELECT content_hash FROM label_shown s WHERE s.label = label_jobs.label)"
)
SHOWN_UPSERT = (
    "INSERT INTO label_shown (label, content_hash, evidence, at, device, model) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (label) DO UPDATE SET "
    "content_hash = excluded.content_hash, evidence = excluded.evidence, at = excluded.at, "
    "device = excluded.device, model = excluded.model"
)
READY = (
    "SELECT j.label, j.rev, j.content_hash, j.model, j.attempts, j.scheduled "
    "FROM label_jobs j LEFT JOIN label_shown s ON s.label = j.label "
    "WHERE j.content_hash IS NOT NULL AND j.state IN ('queued', 'failed') "
    "AND (j.state = 'queued' OR j.next_attempt_at <= ?1) AND coalesce(s.device, ?2) = ?3 "
    "ORDER BY j.scheduled DESC, j.order_at LIMIT ?4"
)
SET_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
    "DO UPDATE SET value = excluded.value"
)
TO_AWAITING_MODEL = (
    "UPDATE label_jobs SET state = 'awaiting_model', last_error = ?1 "
    "WHERE label = ?2 AND rev = ?3 AND state = 'queued' AND content_hash IS NULL"
)

# --- panels: content is drawn for the panel its label reports -------------------------------


def refit_sql(*, some: bool) -> tuple[str, str, str, str]:
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


REFIT_ALL = refit_sql(some=False)
REFIT_SOME = refit_sql(some=True)

# A technician's `label bind` of the SKU a failed job is for: queued again now.
AUDIT_RETRIED = (
    "INSERT INTO label_audit (at, label, event, state, sku, price_version, content_hash, "
    "detail) SELECT ?1, label, 'requeued', 'queued', sku, price_version, content_hash, ?2 "
    "FROM label_jobs WHERE label = ?3 AND sku = ?4 AND state IN ('failed', 'failed_permanent')"
)
RETRY_FAILED = (
    "UPDATE label_jobs SET state = 'queued', attempts = 0, next_attempt_at = NULL, "
    "scheduled = max(scheduled, 0) "
    "WHERE label = ?1 AND sku = ?2 AND state IN ('failed', 'failed_permanent')"
)

# --- reads ------------------------------------------------------------------------------

# Flips due after ?2 per instant and device (?1: the device of labels none reported).
FLIPS_BY_DEVICE = (
    "SELECT s.due_at, coalesce(sh.device, ?) AS device, count(*) AS n, "
    "group_concat(DISTINCT s.sku) AS skus "
    "FROM label_schedule s LEFT JOIN label_shown sh ON sh.label = s.label "
    "WHERE s.due_at > ? GROUP BY s.due_at, 2 ORDER BY s.due_at"
)

# Jobs waiting for device ?2 (?1: the device of labels none reported).
WAITING_FOR = (
    "SELECT count(*) AS n FROM label_jobs j LEFT JOIN label_shown s "
    "ON s.label = j.label WHERE j.state IN ('queued', 'failed') "
    "AND coalesce(s.device, ?) = ?"
)

# Unconfirmed jobs due at or before ?, oldest first.
LATE = (
    "SELECT label, state, coalesce(due_at, queued_at) AS due FROM label_jobs "
    "WHERE state != 'confirmed' AND coalesce(due_at, queued_at) <= ? "
    "ORDER BY coalesce(due_at, queued_at)"
)

# Unconfirmed jobs of labels no driver reaches (?: the device of labels none reported).
UNREACHABLE = (
    "SELECT j.label FROM label_jobs j LEFT JOIN label_shown s ON s.label = j.label "
    "WHERE coalesce(s.device, ?) IS NULL AND j.state != 'confirmed' ORDER BY j.label"
)

# Labels a driver reports that no binding names.
UNBOUND_HEARD = (
    "SELECT s.label, s.device, s.model, s.at FROM label_shown s "
    "WHERE NOT EXISTS (SELECT 1 FROM label_bindings b WHERE b.label = s.label) "
    "ORDER BY s.label"
)
