"""HQ's PostgreSQL sink: events/s committed, against bare loops inserting the same rows.

One private PostgreSQL server (the suite's, tests/support/postgres.py: fsync off, so the
figures are CPU and protocol, not the disk). The same envelopes — STORES stores x 2 streams,
ENVELOPE events each, delivered in batches of 64 envelopes as the MQTT link hands them over —
go, round after round, interleaved:

- ``sink``: :class:`gateway.hq.postgres_sink.PostgresSink` (parse, validate, lock the per-key
  ledger, decide, COPY into the day's partition, write the ledger back, commit per batch);
- ``copy``: the baseline, a plain COPY loop of the same, already-made rows into an unpartitioned
  table, one commit per batch;
- ``insert``: the same rows by one multi-row ``INSERT … SELECT FROM unnest(…)`` per batch (the
  alternative to COPY).

Prints events/s (median of the rounds) and the sink's ratio to the COPY baseline.

    python bench/hq_sink.py     # BENCH_EVENTS=100000 BENCH_ROUNDS=3 BENCH_STORES=50
    BENCH_ENVELOPE=9 BENCH_BATCH=4 python bench/hq_sink.py   # small batches, as at light load
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from gateway.clock import SystemClock
from gateway.hq.postgres_sink import PostgresSink
from tests.support.postgres import PostgresServer

EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
STORES = int(os.environ.get("BENCH_STORES", "50"))
ENVELOPE = int(os.environ.get("BENCH_ENVELOPE", "50"))  # events per envelope
EVENTS -= EVENTS % ENVELOPE  # whole envelopes
# Envelopes per batch: 64, the link's largest (the fleet's light load: a few, of ~9 events).
BATCH = int(os.environ.get("BENCH_BATCH", "64"))

_TABLE = """CREATE TABLE {name} (
    store text NOT NULL, stream text NOT NULL, epoch text NOT NULL, seq bigint NOT NULL,
    id text NOT NULL, ts text NOT NULL, type text NOT NULL, event jsonb NOT NULL,
    received_at timestamptz NOT NULL)"""


def make_envelopes() -> list[bytes]:
    """Envelopes as stores send them, round-robin over stores and streams (as they arrive)."""
    seqs: dict[tuple[str, str], int] = {}
    envelopes = []
    keys = [(f"store-{s:04d}", stream) for s in range(STORES) for stream in ("stock", "dwell")]
    for n in range(EVENTS // ENVELOPE):
        store, stream = keys[n % len(keys)]
        first = seqs.get((store, stream), 0) + 1
        seqs[(store, stream)] = first + ENVELOPE - 1
        events = [
            {
                "seq": seq,
                "id": f"{n:08x}{seq:08x}",
                "ts": "2026-11-23T09:00:00.120+00:00",
                "type": "stock.changed",
                "slot": f"A-{seq % 40:02d}",
                "sku": f"40{seq % 9000:011d}",
                "count": seq % 12,
                "delta": -1,
                "confidence": 0.98,
            }
            for seq in range(first, first + ENVELOPE)
        ]
        envelopes.append(
            json.dumps(
                {
                    "v": 1,
                    "type": "events",
                    "store": store,
                    "stream": stream,
                    "epoch": "9f2c4e1a7b3d5c60",
                    "boot": 1,
                    "seq_from": first,
                    "seq_to": first + ENVELOPE - 1,
                    "sent_at": "2026-11-23T09:00:01.250+00:00",
                    "events": events,
                },
                separators=(",", ":"),
            ).encode()
        )
    return envelopes


def batches(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def rows_of(envelope: bytes, now: datetime) -> list[tuple[Any, ...]]:
    body = json.loads(envelope)
    return [
        (body["store"], body["stream"], body["epoch"], e["seq"], e["id"], e["ts"], e["type"],
         json.dumps(e, separators=(",", ":")), now)
        for e in body["events"]
    ]  # fmt: skip


async def run_sink(url: str, envelopes: list[bytes]) -> float:
    sink = PostgresSink(url, clock=SystemClock(), emit=None)
    await sink.open()
    try:
        start = time.perf_counter()
        for batch in batches(envelopes):
            await sink.receive_many(batch)
        elapsed = time.perf_counter() - start
    finally:
        await sink.close()
    assert sink.stored == EVENTS, sink.stored
    return EVENTS / elapsed


async def run_copy(
    url: str, row_batches: list[list[tuple[Any, ...]]], *, sink_schema: bool = False
) -> float:
    """A plain COPY loop into a bare table, or (``sink_schema``) into the sink's own
    partitioned and indexed ``hq_event_log``: the schema's cost without the sink's logic."""
    if sink_schema:  # the sink makes its schema and today's partition
        sink = PostgresSink(url, clock=SystemClock(), emit=None)
        await sink.open()
        await sink.close()
    table = "hq_event_log" if sink_schema else "bare_copy"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        if not sink_schema:
            await connection.execute(_TABLE.format(name="bare_copy"))  # type: ignore[arg-type]
        start = time.perf_counter()
        for batch in row_batches:
            async with (
                connection.transaction(),
                connection.cursor() as cursor,
                cursor.copy(
                    f"COPY {table} (store, stream, epoch, seq, id, ts, type, event, received_at)"  # type: ignore[arg-type]
                    " FROM STDIN"
                ) as copy,
            ):
                for row in batch:
                    await copy.write_row(row)
        return EVENTS / (time.perf_counter() - start)


async def run_insert(url: str, row_batches: list[list[tuple[Any, ...]]]) -> float:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        await connection.execute(_TABLE.format(name="bare_insert"))  # type: ignore[arg-type]
        start = time.perf_counter()
        for batch in row_batches:
            columns = list(zip(*batch, strict=True))
            async with connection.transaction():
                await connection.execute(
                    "INSERT INTO bare_insert SELECT * FROM unnest(%s::text[], %s::text[], "
                    "%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::jsonb[], "
                    "%s::timestamptz[])",
                    [list(column) for column in columns],
                )
        return EVENTS / (time.perf_counter() - start)


async def main() -> None:
    server = PostgresServer()
    server.init()
    server.start()
    try:
        envelopes = make_envelopes()
        now = datetime.now(UTC)
        row_batches = [
            [row for envelope in batch for row in rows_of(envelope, now)]
            for batch in batches(envelopes)
        ]
        figures: dict[str, list[float]] = {"copy": [], "sink": [], "insert": [], "schema": []}
        for _ in range(ROUNDS):  # interleaved, each on a new database
            figures["copy"].append(await run_copy(server.create_database(), row_batches))
            figures["sink"].append(await run_sink(server.create_database(), envelopes))
            figures["insert"].append(await run_insert(server.create_database(), row_batches))
            figures["schema"].append(
                await run_copy(server.create_database(), row_batches, sink_schema=True)
            )
        median = {name: statistics.median(values) for name, values in figures.items()}
        print(
            f"hq_sink: {EVENTS} events, {STORES} stores x 2 streams, {ENVELOPE} events/envelope, "
            f"{BATCH} envelopes/commit, {ROUNDS} rounds (median)"
        )
        print(f"  PostgresSink (parse, ledger, COPY)  {median['sink']:>9,.0f} events/s")
        print(f"  bare COPY loop (baseline)           {median['copy']:>9,.0f} events/s")
        print(f"  bare COPY into the sink's table     {median['schema']:>9,.0f} events/s")
        print(f"  bare multi-row INSERT (unnest)      {median['insert']:>9,.0f} events/s")
        print(f"  sink / bare COPY = {median['sink'] / median['copy']:.2f}")
        print(f"  sink / bare COPY into its table = {median['sink'] / median['schema']:.2f}")
        print(f"  multi-row INSERT / bare COPY = {median['insert'] / median['copy']:.2f}")
    finally:
        server.remove()


if __name__ == "__main__":
    asyncio.run(main())
