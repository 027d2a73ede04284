"""Versioned schema migrations, tracked in ``PRAGMA user_version``.

Append new migrations; never edit one that has shipped. Each runs in its own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration"]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "meta: database identity (epoch), creation time, boot counter",
        ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version
