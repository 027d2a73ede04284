"""The label package stays a set of rooms: every module small enough to read in one sitting,
and the job tables with one owner — the :class:`~gateway.labels.job_store.LabelJobStore` (with
its private statement modules) is the only module whose SQL names them; the stages decide,
the store reads and writes."""

from __future__ import annotations

from tests.sql_scan import GATEWAY, modules_using, tables_in

MAX_LINES = 400
JOB_TABLES = (
    "label_jobs",
    "label_schedule",
    "label_images",
    "label_shown",
    "label_audit",
    "label_plan",
)
STORE = {"labels/job_store.py", "labels/_job_sql.py", "labels/_plan_sql.py"}
MIGRATIONS = {"store/migrations.py"}


def test_no_label_module_exceeds_the_size_one_reads_in_a_sitting() -> None:
    sizes = {
        path.name: len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted((GATEWAY / "labels").glob("*.py"))
    }
    assert "pipeline.py" in sizes  # the scan sees the package
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_only_the_job_store_holds_sql_on_the_job_tables() -> None:
    found = modules_using(JOB_TABLES, writes_only=False)
    intruders = {m: tables for m, tables in found.items() if m not in STORE | MIGRATIONS}
    assert intruders == {}, f"go through LabelJobStore: {intruders}"
    assert set().union(*(found.get(module, set()) for module in STORE)) == set(JOB_TABLES)


def test_the_scan_sees_reads_and_joins_but_not_prose() -> None:
    source = '''
"""Rows of label_audit go up as receipts."""
A = "SELECT count(*) FROM label_jobs j LEFT JOIN label_shown s ON s.label = j.label"
B = f"DELETE FROM label_images WHERE content_hash NOT IN ({rows})"
'''
    assert tables_in(source, JOB_TABLES, writes_only=False) == {
        "label_jobs",
        "label_shown",
        "label_images",
    }
