"""Shared by the storage tests (and the keeper's): page budgets that fill up quickly."""

from __future__ import annotations

import sqlite3

from gateway.store.migrations import MIGRATIONS

__all__ = ["SMALL_PAGE_BUDGET", "schema_pages"]


def schema_pages() -> int:
    """Pages the gateway's empty schema takes, so page budgets do not depend on it."""
    connection = sqlite3.connect(":memory:")
    connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
    for migration in MIGRATIONS:
        for statement in migration.statements:
            connection.execute(statement)
    pages = int(connection.execute("PRAGMA page_count").fetchone()[0])
    connection.close()
    return pages


#: A budget that fills up quickly: the schema plus a dozen pages of test data.
SMALL_PAGE_BUDGET = schema_pages() + 12
