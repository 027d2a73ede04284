"""SQLite storage: the database, its migrations and (later) repositories built on it."""

from gateway.store.database import Database, StorageStats
from gateway.store.migrations import MIGRATIONS, SCHEMA_VERSION, Migration

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Database", "Migration", "StorageStats"]
