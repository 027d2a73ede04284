"""Shared by the HQ consumer tests: envelopes as the gateway sends them, a consumer on a file,
a sink on a PostgreSQL database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg

from gateway.clock import FakeClock, SystemClock
from gateway.hq.consumer import HQ_MIGRATIONS, HqConsumer
from gateway.hq.postgres_sink import PostgresSink
from gateway.store import Database


def envelope(
    seqs: list[int], *, store: str = "s1", stream: str = "stock", epoch: str = "e1"
) -> bytes:
    events = [
        {"seq": n, "id": f"id{n}", "ts": "2026-11-23T09:00:00.000+00:00", "type": "t", "n": n}
        for n in seqs
    ]
    return json.dumps(
        {
            "v": 1,
            "type": "events",
            "store": store,
            "stream": stream,
            "epoch": epoch,
            "boot": 1,
            "seq_from": seqs[0],
            "seq_to": seqs[-1],
            "sent_at": "2026-11-23T09:00:01.000+00:00",
            "events": events,
        }
    ).encode()


async def open_consumer(path: Path, out: list[dict[str, Any]]) -> tuple[Any, HqConsumer]:
    clock = FakeClock()
    cm = Database.running(path, clock=clock, migrations=HQ_MIGRATIONS)
    db = await cm.__aenter__()
    consumer = HqConsumer(
        db,
        emit=lambda store, stream, epoch, events: out.extend(
            {"store": store, "stream": stream, "epoch": epoch, **event} for event in events
        ),
        now=lambda: "now",
    )
    await consumer.load()
    return cm, consumer


def expired_marker(seq: int, from_seq: int, count: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "id": f"x{seq}",
        "ts": "2026-11-20T09:00:00.000+00:00",
        "type": "outbox.expired",
        "from_seq": from_seq,
        "count": count,
        "reason": "ttl",
        "oldest_ts": "2026-11-16T09:00:00.000+00:00",
        "newest_ts": "2026-11-20T09:00:00.000+00:00",
    }


def with_events(payload: bytes, events: list[dict[str, Any]]) -> bytes:
    envelope_dict = json.loads(payload)
    envelope_dict["events"] = events
    envelope_dict["seq_from"], envelope_dict["seq_to"] = events[0]["seq"], events[-1]["seq"]
    return json.dumps(envelope_dict).encode()


@asynccontextmanager
async def pg_sink(url: str, out: list[dict[str, Any]] | None = None) -> AsyncIterator[PostgresSink]:
    """A PostgreSQL sink on ``url``; new events go to ``out``."""
    emit = None
    if out is not None:
        target = out

        def emit(store: str, stream: str, epoch: str, events: list[dict[str, Any]]) -> None:
            target.extend({"store": store, "stream": stream, "epoch": epoch, **e} for e in events)

    sink = PostgresSink(url, clock=SystemClock(), emit=emit)
    await sink.open()
    try:
        yield sink
    finally:
        await sink.close()


def pg_rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as connection:
        return connection.execute(query, params).fetchall()  # type: ignore[arg-type]
