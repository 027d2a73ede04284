"""The bare baseline for the fleet bench: the same events inserted by one plain loop, no
broker, no consumer logic — SQLite ``executemany`` or PostgreSQL ``COPY``, a transaction per
batch of rows."""

from __future__ import annotations

import secrets
import sqlite3
import time
from pathlib import Path

from gateway.clock import SystemClock, isoformat_utc
from gateway.wire.encoding import encode_events, event_objects
from gateway.wire.stock import StockChanged

__all__ = ["baseline_rows", "postgres_copy_loop", "sqlite_insert_loop"]

Row = tuple[str, str, str, int, str, str, str, str]

_TABLE = (
    "CREATE TABLE IF NOT EXISTS baseline_events (store TEXT NOT NULL, stream TEXT NOT NULL, "
    "epoch TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL, ts TEXT NOT NULL, "
    "type TEXT NOT NULL, event TEXT NOT NULL, PRIMARY KEY (store, stream, epoch, seq))"
)


def baseline_rows(events: int, stores: int) -> list[Row]:
    """``events`` stock events spread over ``stores`` stores, encoded as the stores encode
    them (the event objects HQ stores)."""
    stamp = isoformat_utc(SystemClock().utc_now())
    models = [
        StockChanged.validated(
            {
                "slot": f"slot-{n % 400}",
                "sku": f"40063813{n % 99999:05d}",
                "kind": "pick",
                "before": 7,
                "after": 6,
                "delta": -1,
                "confidence": 0.98,
                "grams": -251.3,
            }
        )
        for n in range(events)
    ]
    ids = secrets.token_hex(8 * events)
    texts = event_objects(
        [ids[at : at + 16] for at in range(0, len(ids), 16)],
        stamp,
        '"stock.changed"',
        encode_events(models),
    )
    epochs = [secrets.token_hex(8) for _ in range(stores)]
    return [
        (
            f"store-{n % stores:05d}",
            "stock",
            epochs[n % stores],
            n // stores + 1,
            ids[16 * n : 16 * n + 16],
            stamp,
            "stock.changed",
            text,
        )
        for n, text in enumerate(texts)
    ]


def sqlite_insert_loop(path: Path, rows: list[Row], *, batch: int = 1000) -> float:
    """Events/s of one plain loop: ``executemany`` and a commit per ``batch`` rows (WAL,
    synchronous=FULL, as the HQ consumer's database)."""
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(_TABLE)
        started = time.perf_counter()
        for first in range(0, len(rows), batch):
            connection.executemany(
                "INSERT INTO baseline_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows[first : first + batch],
            )
            connection.commit()
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed


def postgres_copy_loop(url: str, rows: list[Row], *, batch: int = 1000) -> float:
    """Events/s of one plain loop: ``COPY … FROM STDIN`` and a commit per ``batch`` rows."""
    import psycopg  # only with the PostgreSQL sink

    with psycopg.connect(url) as connection:
        connection.execute("DROP TABLE IF EXISTS baseline_events")
        connection.execute(_TABLE)
        connection.commit()
        started = time.perf_counter()
        for first in range(0, len(rows), batch):
            with (
                connection.cursor() as cursor,
                cursor.copy("COPY baseline_events FROM STDIN") as copy,
            ):
                for row in rows[first : first + batch]:
                    copy.write_row(row)
            connection.commit()
        elapsed = time.perf_counter() - started
        connection.execute("DROP TABLE baseline_events")
        connection.commit()
    return len(rows) / elapsed
