"""Outbox: gapless per-stream seqs, group-committed acceptance, custody marks."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.clock import FakeClock, isoformat_utc
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.wire import pack_envelope, pack_wire_batch
from tests.store.probes import PROBES, probe, probes

STREAMS = ("stock", "dwell", "receipts", "alerts")


async def test_seqs_are_per_stream_gapless_and_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    clock = FakeClock()
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        await asyncio.gather(
            *(outbox.append("stock", probe("stock.changed", {"n": n})) for n in range(500)),
            *(outbox.append("alerts", probe("alert.raised", {"n": n})) for n in range(3)),
        )
        stock = await outbox.read("stock", after_seq=0, max_events=1000, max_bytes=10**9)
        assert [e.seq for e in stock] == list(range(1, 501))
        assert [json.loads(e.body)["n"] for e in stock] == list(range(500))
        assert len({e.id for e in stock}) == 500
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        await outbox.append("stock", probe("stock.changed", {"n": 500}))
        [event] = await outbox.read("stock", after_seq=500, max_events=10, max_bytes=10**9)
        assert event.seq == 501


async def test_read_limits_by_count_and_bytes_but_never_blocks(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        await asyncio.gather(
            *(outbox.append("dwell", probe("dwell", {"x": "y" * 100})) for _ in range(50))
        )
        assert len(await outbox.read("dwell", after_seq=0, max_events=7, max_bytes=10**9)) == 7
        by_bytes = await outbox.read("dwell", after_seq=0, max_events=50, max_bytes=1000)
        assert 1 <= len(by_bytes) < 10
        assert len(await outbox.read("dwell", after_seq=0, max_events=50, max_bytes=1)) == 1


async def test_watermark_releases_rows_and_rejects_foreign_epochs(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        await asyncio.gather(*(outbox.append("stock", probe("s", {"n": n})) for n in range(10)))
        await outbox.mark_sent("stock", 6)
        assert await outbox.acknowledge("stock", "0000000000000000", 5) is None  # other database
        assert await outbox.acknowledge("stock", outbox.epoch, 99) is None  # never appended
        assert await outbox.acknowledge("nope", outbox.epoch, 1) is None
        released = await outbox.acknowledge("stock", outbox.epoch, 4)
        assert released is not None
        await released
        left = await outbox.read("stock", after_seq=0, max_events=100, max_bytes=10**9)
        assert [e.seq for e in left] == [5, 6, 7, 8, 9, 10]
        state = {s.stream: s for s in await outbox.states()}["stock"]
        assert (state.sent_seq, state.acked_seq, state.depth, state.next_seq) == (6, 4, 6, 11)
        stale = await outbox.acknowledge("stock", outbox.epoch, 2)  # stale ack: no step back
        assert stale is not None
        await stale
        state = {s.stream: s for s in await outbox.states()}["stock"]
        assert state.acked_seq == 4
        await (await outbox.release_sent("stock", 10))  # a future: resolves on commit
        assert await outbox.read("stock", after_seq=0, max_events=100, max_bytes=10**9) == []


async def test_unsynced_clock_flags_events(tmp_path: Path) -> None:
    clock = FakeClock(synchronized=False)
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        await outbox.append("alerts", probe("alert.raised", {"key": "k"}))
        [event] = await outbox.read("alerts", after_seq=0, max_events=1, max_bytes=10**9)
        assert event.wire()["unsynced"] is True


async def test_envelope_is_valid_json_with_each_events_identity(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        await outbox.append("stock", probe("stock.changed", {"slot": "s-1", "delta": -1}))
        await outbox.append("stock", probe("stock.empty", {}))
        events = await outbox.read("stock", after_seq=0, max_events=10, max_bytes=10**9)
        envelope = json.loads(
            pack_envelope(
                store="s1",
                stream="stock",
                epoch=outbox.epoch,
                boot=db.boot,
                events=events,
                sent_at=clock.utc_now(),
            )
        )
    assert envelope["seq_from"] == 1
    assert envelope["seq_to"] == 2
    assert envelope["epoch"] == outbox.epoch
    assert envelope["sent_at"].endswith("+00:00")
    assert envelope["events"][0] == {
        "seq": 1,
        "id": events[0].id,
        "ts": events[0].ts,
        "type": "stock.changed",
        "delta": -1,
        "slot": "s-1",
    }
    assert envelope["events"][1] == {
        "seq": 2,
        "id": events[1].id,
        "ts": events[1].ts,
        "type": "stock.empty",
    }


@pytest.mark.slow
async def test_file_shrinks_back_after_a_drain(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "g.db"
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        await outbox.append_many(
            "stock", probes("s", ({"pad": "x" * 200, "n": n} for n in range(20_000)))
        )
        await db.maintenance()
        full = path.stat().st_size
        released = await outbox.acknowledge("stock", outbox.epoch, 20_000)
        assert released is not None
        await released
        await db.maintenance()
        drained = path.stat().st_size
    assert full > 4_000_000
    assert drained < full / 4


async def test_wire_batches_built_by_sqlite_match_the_python_envelope(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        bodies: list[dict[str, object]] = [
            {},
            {"slot": "s-1", "delta": -1},
            {"name": 'Käse "alt" \\ 🧀', "nested": {"a": [1, 2.5, None, True]}},
            {"pad": "x" * 3000},
            {"n": 4},
        ]
        for body in bodies:
            await outbox.append("stock", probe("stock.changed", body))
        for after, max_events, max_bytes in [
            (0, 10, 10**9),
            (0, 2, 10**9),
            (1, 10, 500),
            (3, 10, 1),
        ]:
            events = await outbox.read(
                "stock", after_seq=after, max_events=max_events, max_bytes=max_bytes
            )
            batch = await outbox.read_wire(
                "stock", after_seq=after, max_events=max_events, max_bytes=max_bytes
            )
            assert batch is not None
            assert (batch.seq_from, batch.seq_to, batch.count) == (
                events[0].seq,
                events[-1].seq,
                len(events),
            )
            fields = {"store": "s1", "epoch": outbox.epoch, "boot": 1, "sent_at": clock.utc_now()}
            from_sqlite = pack_wire_batch(batch=batch, **fields)  # type: ignore[arg-type]
            from_python = pack_envelope(stream="stock", events=events, **fields)  # type: ignore[arg-type]
            assert json.loads(from_sqlite) == json.loads(from_python)
            assert [e["seq"] for e in json.loads(from_sqlite)["events"]] == [e.seq for e in events]
        assert await outbox.read_wire("stock", after_seq=5, max_events=10, max_bytes=10) is None


async def test_appends_of_one_loop_step_share_a_row_and_keep_their_order(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        singles = [outbox.append("stock", probe("stock.changed", {"n": n})) for n in range(300)]
        many = outbox.append_many(
            "stock", probes("stock.changed", ({"n": 300 + n} for n in range(5)))
        )
        # A state change with its receipt goes after what was appended before it.
        receipt = outbox.append_atomic(
            "stock",
            probes("stock.changed", [{"n": 305}]),
            before=[("INSERT INTO meta (key, value) VALUES ('test', 'x')", ())],
        )
        later = outbox.append("stock", probe("stock.changed", {"n": 306}))
        await asyncio.gather(*singles, many, receipt, later)
        rows = await db.fetchall(
            "SELECT seq_from, seq_to, count FROM outbox_batches WHERE stream = 'stock' "
            "ORDER BY seq_to"
        )
        assert [tuple(row) for row in rows] == [(1, 305, 305), (306, 306, 1), (307, 307, 1)]
        events = await outbox.read("stock", after_seq=0, max_events=1000, max_bytes=10**9)
        assert [json.loads(e.body)["n"] for e in events] == list(range(307))
        assert [e.seq for e in events] == list(range(1, 308))
        # A big batch is split into rows a reader can take whole.
        await outbox.append_many("dwell", probes("dwell.visit", ({"n": n} for n in range(1500))))
        sizes = await db.fetchall("SELECT count FROM outbox_batches WHERE stream = 'dwell'")
        assert sorted(row["count"] for row in sizes) == [476, 512, 512]


async def test_a_row_released_in_part_is_read_from_the_watermark(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        await outbox.append_many("stock", probes("s", ({"n": n} for n in range(100))))
        await (await outbox.acknowledge("stock", outbox.epoch, 40))  # type: ignore[misc]
        # The row stays (60 of its events are not HQ's yet), its released part is gone.
        left = await outbox.read("stock", after_seq=0, max_events=1000, max_bytes=10**9)
        assert [e.seq for e in left] == list(range(41, 101))
        batch = await outbox.read_wire("stock", after_seq=10, max_events=7, max_bytes=10**9)
        assert batch is not None
        assert (batch.seq_from, batch.seq_to, batch.count) == (41, 47, 7)
        state = {s.stream: s for s in await outbox.states()}["stock"]
        assert (state.depth, state.acked_seq) == (60, 40)
        await (await outbox.acknowledge("stock", outbox.epoch, 100))  # type: ignore[misc]
        assert await db.fetchall("SELECT * FROM outbox_batches") == []


async def test_migration_8_moves_buffered_events_and_markers_into_rows(tmp_path: Path) -> None:
    from gateway.store.migrations import MIGRATIONS

    clock = FakeClock()
    path = tmp_path / "g.db"
    async with Database.running(path, clock=clock, migrations=MIGRATIONS[:7]) as db:
        await db.write("INSERT INTO outbox_streams (stream) VALUES ('dwell')")
        marker = json.dumps(
            {"from_seq": 1, "count": 3, "reason": "ttl", "oldest_ts": "t0", "newest_ts": "t3"}
        )
        await db.write_many(
            "INSERT INTO outbox (stream, seq, id, ts, type, body, size, end_offset) "
            "VALUES ('dwell', ?, ?, ?, ?, ?, 100, ?)",
            [
                (3, "m3", "t3", "outbox.expired", marker, 300),
                (4, "i4", "t4", "dwell.visit", '{"zone":"Käse"}', 400),
                (5, "i5", "t5", "dwell.visit", "{}", 500),
            ],
        )
        await db.write(
            "UPDATE outbox_streams SET next_seq = 6, appended_bytes = 500 WHERE stream = 'dwell'"
        )
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        events = await outbox.read("dwell", after_seq=0, max_events=10, max_bytes=10**9)
        assert [(e.seq, e.id, e.type) for e in events] == [
            (3, "m3", "outbox.expired"),
            (4, "i4", "dwell.visit"),
            (5, "i5", "dwell.visit"),
        ]
        assert json.loads(events[0].body)["from_seq"] == 1
        assert json.loads(events[1].body) == {"zone": "Käse"}
        state = {s.stream: s for s in await outbox.states()}["dwell"]
        assert (state.depth, state.bytes) == (3, 300)
        await outbox.append("dwell", probe("dwell.visit", {}))
        [after] = await outbox.read("dwell", after_seq=5, max_events=10, max_bytes=10**9)
        assert after.seq == 6


async def test_a_row_cut_by_one_envelope_does_not_shrink_the_next(tmp_path: Path) -> None:
    # Rows of 512 events, envelopes of 500: the rest of a cut row and the next row share the
    # next envelope (the uplink's catch-up is paced per message, not per event).
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        await outbox.append_many("stock", probes("s", ({"n": n} for n in range(2048))))
        counts, after = [], 0
        while (
            batch := await outbox.read_wire(
                "stock", after_seq=after, max_events=500, max_bytes=128 * 1024
            )
        ) is not None:
            assert batch.seq_from == after + 1
            counts.append(batch.count)
            after = batch.seq_to
        assert counts == [500, 500, 500, 500, 48]
        # The same from HQ's watermark inside a row.
        await (await outbox.acknowledge("stock", outbox.epoch, 1000))  # type: ignore[misc]
        batch = await outbox.read_wire("stock", after_seq=0, max_events=500, max_bytes=10**9)
        assert batch is not None
        assert (batch.seq_from, batch.count) == (1001, 500)


async def test_rows_of_big_events_stay_small_enough_to_read_per_envelope(tmp_path: Path) -> None:
    # A row is read whole for each envelope cut from it: a batch of big events must not make
    # one multi-megabyte row (each 128 KiB envelope would re-read and split all of it).
    from gateway.store.outbox import _BATCH_MAX_CHARS

    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        await outbox.append_many("dwell", probes("d", ({"x": "y" * 20_000} for _ in range(300))))
        await outbox.append_many("stock", probes("s", ({"x": "y" * 5_000} for _ in range(100))))
        await outbox.append_atomic("receipts", probes("r", [{"x": "y" * 5_000}] * 100), before=[])
        await outbox.append("alerts", probe("a", {"x": "y" * 500_000}))  # alone: one row anyway
        rows = await db.fetchall(
            "SELECT stream, seq_from, seq_to, size, length(events) AS chars FROM outbox_batches "
            "ORDER BY stream, seq_to"
        )
        for row in rows:
            if row["seq_to"] > row["seq_from"]:
                assert row["size"] <= _BATCH_MAX_CHARS, tuple(row)
        stored = sum(row["size"] for row in rows)
        assert outbox.pressure.used_bytes == stored == await outbox.refresh_usage()
        events = await outbox.read("dwell", after_seq=0, max_events=1000, max_bytes=10**9)
        assert [e.seq for e in events] == list(range(1, 301))


async def test_an_append_made_just_before_close_is_still_committed(tmp_path: Path) -> None:
    # Appends of a loop step are submitted at its end: close() in the same step must not
    # refuse them (they were queued before it, as they always were).
    clock = FakeClock()
    path = tmp_path / "g.db"
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        accepted = outbox.append("stock", probe("s", {"n": 1}))
        await db.close()
        await accepted
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        [event] = await outbox.read("stock", after_seq=0, max_events=10, max_bytes=10**9)
        assert event.seq == 1


async def test_each_event_carries_its_own_instant_to_the_millisecond(tmp_path: Path) -> None:
    # The text of an instant is reused within its millisecond: never across one, whichever
    # way the clock goes.
    clock = FakeClock()
    start = clock.wall
    steps_us = [0, 999, 1, 998_999, 1, 0, -1, -1_000, 1_000_000, -3_600_000_000, 500, 499]
    instants = []
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        for n, step in enumerate(steps_us):
            clock.wall += timedelta(microseconds=step)
            clock.synchronized = n % 3 != 0
            instants.append((isoformat_utc(clock.wall), clock.synchronized))
            await outbox.append("stock", probe("stock.changed", {"n": n}))
        events = await outbox.read("stock", after_seq=0, max_events=100, max_bytes=10**9)
    assert clock.wall != start
    assert [(e.ts, "unsynced" not in json.loads(e.body)) for e in events] == instants
