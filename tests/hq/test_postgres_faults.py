"""The PostgreSQL sink when PostgreSQL itself gets in the way: a real deadlock between a batch
and another consumer (the batch is retried against the ledger as the other one committed it),
and faults that must neither poison a consumer for good nor keep it quiet."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from gateway.clock import FakeClock
from gateway.errors import ConfigError, StorageError, StorageUnavailableError
from gateway.hq import postgres_session
from gateway.hq.intake import MAX_RANGES
from gateway.hq.postgres_schema import partition_name
from gateway.hq.postgres_sink import PostgresSink
from tests.hq.support import envelope, pg_rows, pg_sink
from tests.waiting import until

# Fires inside the sink's batch, the first time it writes the ledger row of stream 'a' (it
# holds that row's lock then): once the rival queues for the row, it waits for a lock the
# rival holds — a cycle, found by this side first (its deadlock_timeout is the shorter).
_DEADLOCK_ONCE = """
CREATE SEQUENCE deadlock_once;
CREATE TABLE rival_lock (n int);
INSERT INTO rival_lock VALUES (1);
CREATE FUNCTION deadlock_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.stream <> 'a' THEN
        RETURN NEW;
    END IF;
    IF nextval('deadlock_once') = 1 THEN
        WHILE NOT EXISTS (
            SELECT 1 FROM pg_locks l
            WHERE NOT l.granted AND pg_backend_pid() = ANY(pg_blocking_pids(l.pid))
        ) LOOP
            PERFORM pg_sleep(0.01);
        END LOOP;
        SET LOCAL deadlock_timeout = '50ms';
        PERFORM 1 FROM rival_lock FOR UPDATE;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER deadlock_once BEFORE UPDATE ON hq_marks
    FOR EACH ROW EXECUTE FUNCTION deadlock_once();
"""


def _acked(acks: list[Any]) -> dict[str, int]:
    return {json.loads(a.payload)["stream"]: json.loads(a.payload)["seq"] for a in acks}


def _sleeping_in_trigger(url: str) -> bool:
    return bool(
        pg_rows(
            url,
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'storegw-hq' "
            "AND wait_event = 'PgSleep'",
        )
    )


async def test_a_deadlocked_batch_is_retried_against_what_the_rival_committed(
    postgres_url: str,
) -> None:
    """The batch (a: 2..5, b: 2) loses a real deadlock to another consumer, which then
    stores a's 2..3 and moves its watermark to 3. The retry must start from that committed
    ledger, not from the one its rolled-back attempt had moved to 5: a's 2..3 are duplicates,
    4..5 stored, every seq once, and the acks claim what is committed."""
    async with pg_sink(postgres_url) as sink:
        await sink.receive_many([envelope([1], stream="a"), envelope([1], stream="b")])
        with psycopg.connect(postgres_url, autocommit=True) as setup:
            setup.execute(_DEADLOCK_ONCE)  # type: ignore[arg-type]
        async with await psycopg.AsyncConnection.connect(postgres_url) as rival:
            await rival.execute("SET deadlock_timeout = '60s'")
            await rival.execute("SELECT 1 FROM rival_lock FOR UPDATE")
            batch = asyncio.create_task(
                sink.receive_many([envelope([2, 3, 4, 5], stream="a"), envelope([2], stream="b")])
            )
            await until(lambda: _sleeping_in_trigger(postgres_url), what="the sink in its batch")
            # Queues behind the sink's lock on a's row, granted when the sink is the victim;
            # like a consumer, it writes only if the row is as it last saw it (should the
            # sink's retry lock the row first, the rival stands back and stores nothing).
            updated = await rival.execute(
                "UPDATE hq_marks SET watermark = 3 WHERE stream = 'a' AND watermark = 1"
            )
            if updated.rowcount:
                await rival.execute(
                    "INSERT INTO hq_event_log SELECT 's1', 'a', 'e1', n, 'id' || n, 't', 't', "
                    "jsonb_build_object('seq', n, 'by', 'rival'), now() "
                    "FROM generate_series(2, 3) n"
                )
            await rival.commit()
            acks = await batch
        rival_won = updated.rowcount == 1  # the usual order: the sink backs off first
        assert _acked(acks) == {"a": 5, "b": 2}
        # A retry reusing the ledger its rolled-back attempt moved to 5 would store nothing
        # of a and still ack 5: the events lost.
        assert (sink.stored, sink.duplicates) == ((5, 2) if rival_won else (7, 0))
    rows = pg_rows(
        postgres_url, "SELECT stream, seq, event ->> 'by' FROM hq_events ORDER BY stream, seq"
    )
    by_rival = "rival" if rival_won else None
    assert rows == [
        ("a", 1, None),
        ("a", 2, by_rival),
        ("a", 3, by_rival),
        ("a", 4, None),
        ("a", 5, None),
        ("b", 1, None),
        ("b", 2, None),
    ]
    assert pg_rows(postgres_url, "SELECT stream, seq FROM hq_watermarks ORDER BY 1") == [
        ("a", 5),
        ("b", 2),
    ]


@asynccontextmanager
async def _sink_at(url: str, clock: FakeClock) -> AsyncIterator[PostgresSink]:
    sink = PostgresSink(url, clock=clock, emit=None)
    await sink.open()
    try:
        yield sink
    finally:
        await sink.close()


def _days(url: str) -> list[str]:
    return [
        name
        for (name,) in pg_rows(
            url,
            "SELECT inhrelid::regclass::text FROM pg_inherits "
            "WHERE inhparent = 'hq_event_log'::regclass ORDER BY 1",
        )
    ]


async def test_batches_around_midnight_go_to_the_day_hq_received_them(postgres_url: str) -> None:
    clock = FakeClock()
    clock.wall = datetime(2026, 11, 23, 23, 59, 59, 999000, tzinfo=UTC)
    async with _sink_at(postgres_url, clock) as sink:
        await sink.receive_many([envelope([1, 2])])
        clock.advance(0.002)
        await sink.receive_many([envelope([3])])
        clock.advance(86400)
        await sink.receive_many([envelope([4])])
    assert _days(postgres_url) == [partition_name(date(2026, 11, d)) for d in (23, 24, 25, 26)]
    indexed = pg_rows(
        postgres_url, "SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'hq_event_log_2%%'"
    )
    assert indexed == [(4,)]  # each day has the log's (store, stream, epoch, seq) index
    rows = pg_rows(postgres_url, "SELECT seq, tableoid::regclass::text FROM hq_event_log")
    assert sorted(rows) == [
        (1, "hq_event_log_20261123"),
        (2, "hq_event_log_20261123"),
        (3, "hq_event_log_20261124"),
        (4, "hq_event_log_20261125"),
    ]


async def test_a_partition_gone_under_a_running_sink_is_made_again(postgres_url: str) -> None:
    """Today's partition dropped while the sink runs (the database restored from a copy made
    before it existed; a retention job run with the wrong date): the sink must make it again,
    not fail every batch from then on because it remembers having made it."""
    clock = FakeClock()
    async with _sink_at(postgres_url, clock) as sink:
        await sink.receive_many([envelope([1])])
        today = partition_name(clock.wall.date())
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"ALTER TABLE hq_event_log DETACH PARTITION {today}")  # type: ignore[arg-type]
            admin.execute(f"DROP TABLE {today}")  # type: ignore[arg-type]
        acks = await sink.receive_many([envelope([2])])
        assert _acked(acks) == {"stock": 2}
    assert pg_rows(postgres_url, "SELECT seq FROM hq_events") == [(2,)]


async def test_a_database_that_refuses_every_batch_counts_as_unavailable(postgres_url: str) -> None:
    """Not only a lost connection stops custody: a role that lost INSERT (or a server turned
    read-only) fails every batch while connected. That must start the clock of
    ``database_outage_exit_s`` (exit 74) like an outage, not loop quietly forever."""
    database = postgres_url.rsplit("/", 1)[1]
    role = f"writer_{database}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")  # type: ignore[arg-type]
        admin.execute(f'ALTER DATABASE "{database}" OWNER TO {role}')  # type: ignore[arg-type]
    writer_url = postgres_url.replace("://storegw@", f"://{role}@")
    clock = FakeClock()
    async with _sink_at(writer_url, clock) as sink:
        await sink.receive_many([envelope([1])])
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"REVOKE INSERT ON hq_event_log FROM {role}")  # type: ignore[arg-type]
        with pytest.raises(StorageError, match="permission denied"):
            await sink.receive_many([envelope([2])])
        assert sink.unavailable_since == clock.monotonic()
        clock.advance(30)
        with pytest.raises(StorageError):
            await sink.receive_many([envelope([2])])
        assert sink.unavailable_since == clock.monotonic() - 30  # since the first failure
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"GRANT INSERT ON hq_event_log TO {role}")  # type: ignore[arg-type]
        assert _acked(await sink.receive_many([envelope([2])])) == {"stock": 2}
        assert sink.unavailable_since is None
    assert pg_rows(postgres_url, "SELECT seq FROM hq_events ORDER BY 1") == [(1,), (2,)]


async def test_text_goes_to_postgresql_as_the_utf_8_it_is(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The COPY text is UTF-8 bytes: the session must say so whatever the client's
    environment (PGCLIENTENCODING) or the database's default would make it; a database that
    cannot hold any text (not UTF8) is refused at start, before a batch fails on a € sign."""
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    odd = json.loads(envelope([1]))
    odd["events"][0]["n"] = "é € 😀"
    async with pg_sink(postgres_url) as sink:
        await sink.receive_many([json.dumps(odd).encode()])
    monkeypatch.delenv("PGCLIENTENCODING")
    assert pg_rows(postgres_url, "SELECT event ->> 'n' FROM hq_events") == [("é € 😀",)]
    latin1 = f"{postgres_url}_latin1"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(
            f'CREATE DATABASE "{latin1.rsplit("/", 1)[1]}" ENCODING LATIN1 '  # type: ignore[arg-type]
            "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        )
    with pytest.raises(ConfigError, match="LATIN1"):
        async with pg_sink(latin1):
            pass


async def test_hostile_text_and_the_largest_seq_are_stored_as_sent(postgres_url: str) -> None:
    """COPY's text format has its own escapes and an end-of-data line (``\\.``); SQL has
    quotes. None of them may cut a batch short, shift a column or reach the database as SQL;
    the largest seq the envelope allows (2^63 - 1) fits PostgreSQL's bigint, one more is
    garbage."""
    hostile = "a\\.\n\\.\nb\r\n\t'); DROP TABLE hq_marks; --\\N\\\\t" + "\u2028\x1f" + "z" * 100_000
    epoch = "e'\\.\n\t\""
    last = 2**63 - 1
    odd = json.loads(envelope([last - 1, last], epoch=epoch))
    for event in odd["events"]:
        event.update(id=hostile[:64], ts=hostile[-64:], type=hostile[:128], n=hostile)
    beyond = envelope([last]).replace(str(last).encode(), str(last + 1).encode())
    async with pg_sink(postgres_url) as sink:
        acks = await sink.receive_many([json.dumps(odd).encode(), beyond, envelope([1])])
        assert sink.rejected == 1
        assert sorted(json.loads(a.payload)["seq"] for a in acks) == [1]  # 1..last-2 missing
    rows = pg_rows(
        postgres_url, "SELECT epoch, seq, id, ts, type, event ->> 'n' FROM hq_events ORDER BY 2"
    )
    assert rows == [
        ("e1", 1, "id1", "2026-11-23T09:00:00.000+00:00", "t", "1"),
        (epoch, last - 1, hostile[:64], hostile[-64:], hostile[:128], hostile),
        (epoch, last, hostile[:64], hostile[-64:], hostile[:128], hostile),
    ]
    assert pg_rows(postgres_url, "SELECT count(*) FROM hq_marks") == [(2,)]


async def test_a_store_sending_holes_keeps_a_bounded_ledger_row(postgres_url: str) -> None:
    """Every other seq, far past MAX_RANGES: the hq_marks row (read and written with every
    batch of the key) stays bounded; what waits is neither stored nor acked, and comes in
    when the store re-sends in order."""
    evens = list(range(2, 2 * MAX_RANGES + 100, 2))
    async with pg_sink(postgres_url) as sink:
        acks = await sink.receive_many([envelope(evens[:600]), envelope(evens[600:])])
        assert acks == []  # seq 1 missing: nothing to ack
        (ranges,) = pg_rows(postgres_url, "SELECT jsonb_array_length(stored) FROM hq_marks")[0]
        assert ranges <= MAX_RANGES
        assert pg_rows(postgres_url, "SELECT count(*) FROM hq_events") == [(ranges,)]
        assert sink.duplicates == 0
        last = evens[-1]
        acks = await sink.receive_many([envelope(list(range(1, last + 1)))])
        assert _acked(acks) == {"stock": last}
        assert sink.duplicates == ranges
    assert pg_rows(postgres_url, "SELECT count(*), count(DISTINCT seq) FROM hq_events") == [
        (last, last)
    ]
    assert pg_rows(postgres_url, "SELECT stored FROM hq_marks") == [([],)]


async def test_a_new_day_is_made_while_a_report_reads_the_log(postgres_url: str) -> None:
    """A report (BI tool, psql) with a transaction open on hq_events when the day turns: the
    next day's partition must be made without waiting for it. CREATE TABLE … PARTITION OF
    wants the log exclusively, so it waited behind the report — and every consumer's batch
    waited behind it, until they gave up and exited 74."""
    clock = FakeClock()
    async with _sink_at(postgres_url, clock) as sink:
        await sink.receive_many([envelope([1])])
        with psycopg.connect(postgres_url) as report:
            report.execute("SELECT count(*) FROM hq_events")  # its transaction stays open
            clock.advance(86400)  # the day after tomorrow's partition is made now
            batch = asyncio.create_task(sink.receive_many([envelope([2])]))
            try:
                await until(batch.done, within=20, what="the batch, with the report still open")
            finally:
                report.rollback()
                await asyncio.wait([batch])
        assert _acked(batch.result()) == {"stock": 2}
    day_after = partition_name(clock.wall.date() + timedelta(days=1))
    assert day_after in _days(postgres_url)
    rows = pg_rows(postgres_url, "SELECT seq, tableoid::regclass::text FROM hq_event_log")
    assert max(rows) == (2, partition_name(clock.wall.date()))


_HANG_ONCE = """
CREATE SEQUENCE hang_once;
CREATE FUNCTION hang_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('hang_once') = 1 THEN
        PERFORM pg_sleep(300);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER hang_once BEFORE UPDATE ON hq_marks FOR EACH ROW EXECUTE FUNCTION hang_once();
"""


async def test_a_connection_cut_mid_batch_stores_and_acks_nothing_of_it(postgres_url: str) -> None:
    """The server ends the sink's session after the batch's COPY, before its commit (a
    restart, a failover, an operator's pg_terminate_backend): nothing of the batch is kept,
    nothing acked; the same batch again is stored whole, once."""
    async with pg_sink(postgres_url) as sink:
        await sink.receive_many([envelope([1])])
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(_HANG_ONCE)  # type: ignore[arg-type]
            batch = asyncio.create_task(sink.receive_many([envelope([2, 3])]))
            await until(lambda: _sleeping_in_trigger(postgres_url), what="the sink mid-batch")
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'storegw-hq'"
            )
            with pytest.raises(StorageUnavailableError):
                await batch
        assert pg_rows(postgres_url, "SELECT seq FROM hq_events ORDER BY 1") == [(1,)]
        assert sink.unavailable_since is not None
        assert _acked(await sink.receive_many([envelope([2, 3])])) == {"stock": 3}
        assert sink.unavailable_since is None
    assert pg_rows(postgres_url, "SELECT seq FROM hq_events ORDER BY 1") == [(1,), (2,), (3,)]


async def test_tomorrows_partition_waits_for_ddl_on_the_log_without_holding_up_today(
    postgres_url: str,
) -> None:
    """A retention job (DETACH … CONCURRENTLY) or an ANALYZE holds the log's lock that
    attaching a partition needs: today's batches go on, tomorrow's partition is made with a
    later batch."""
    clock = FakeClock()
    async with _sink_at(postgres_url, clock) as sink:
        await sink.receive_many([envelope([1])])
        clock.advance(86400)
        tomorrow = partition_name(clock.wall.date() + timedelta(days=1))
        with psycopg.connect(postgres_url) as job:
            job.execute("LOCK TABLE hq_event_log IN SHARE UPDATE EXCLUSIVE MODE")
            assert _acked(await sink.receive_many([envelope([2])])) == {"stock": 2}
            job.rollback()
        assert tomorrow not in _days(postgres_url)
        assert _acked(await sink.receive_many([envelope([3])])) == {"stock": 3}
    assert tomorrow in _days(postgres_url)


async def test_a_consumer_frozen_mid_batch_does_not_hold_its_keys_for_ever(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer whose host froze (or was cut off without a reset) mid-transaction keeps its
    ledger rows locked for as long as PostgreSQL keeps its session: without a limit, hours
    (the server's TCP keepalive), and every consumer whose batch touches one of those keys
    waits, times out and finally exits 74. The sink's sessions must not outlive a stall."""
    monkeypatch.setattr(postgres_session, "_STALLED_TRANSACTION", "1s")  # 60 s in production
    async with pg_sink(postgres_url) as frozen, pg_sink(postgres_url) as other:
        await frozen.receive_many([envelope([1])])
        # As the frozen consumer left it: its batch's transaction open, the key's row locked.
        session = await frozen._session.connect()  # as the frozen process left it
        await session.execute("BEGIN")
        await session.execute("SELECT 1 FROM hq_marks FOR UPDATE")
        acks = await other.receive_many([envelope([2])])
        assert _acked(acks) == {"stock": 2}
