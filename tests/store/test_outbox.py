"""Outbox: gapless per-stream seqs, group-committed acceptance, custody marks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.clock import FakeClock
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.envelope import pack_envelope, pack_wire_batch

STREAMS = ("stock", "dwell", "receipts", "alerts")


async def test_seqs_are_per_stream_gapless_and_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    clock = FakeClock()
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        await asyncio.gather(
            *(outbox.append("stock", "stock.changed", {"n": n}) for n in range(500)),
            *(outbox.append("alerts", "alert.raised", {"n": n}) for n in range(3)),
        )
        stock = await outbox.read("stock", after_seq=0, max_events=1000, max_bytes=10**9)
        assert [e.seq for e in stock] == list(range(1, 501))
        assert [json.loads(e.body)["n"] for e in stock] == list(range(500))
        assert len({e.id for e in stock}) == 500
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        await outbox.append("stock", "stock.changed", {"n": 500})
        [event] = await outbox.read("stock", after_seq=500, max_events=10, max_bytes=10**9)
        assert event.seq == 501


async def test_read_limits_by_count_and_bytes_but_never_blocks(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        await asyncio.gather(
            *(outbox.append("dwell", "dwell", {"x": "y" * 100}) for _ in range(50))
        )
        assert len(await outbox.read("dwell", after_seq=0, max_events=7, max_bytes=10**9)) == 7
        by_bytes = await outbox.read("dwell", after_seq=0, max_events=50, max_bytes=1000)
        assert 1 <= len(by_bytes) < 10
        assert len(await outbox.read("dwell", after_seq=0, max_events=50, max_bytes=1)) == 1


async def test_watermark_releases_rows_and_rejects_foreign_epochs(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        await asyncio.gather(*(outbox.append("stock", "s", {"n": n}) for n in range(10)))
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
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        await outbox.append("alerts", "alert.raised", {"key": "k"})
        [event] = await outbox.read("alerts", after_seq=0, max_events=1, max_bytes=10**9)
        assert event.wire()["unsynced"] is True


async def test_envelope_is_valid_json_with_each_events_identity(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        await outbox.append("stock", "stock.changed", {"slot": "s-1", "delta": -1})
        await outbox.append("stock", "stock.empty", {})
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


async def test_file_shrinks_back_after_a_drain(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "g.db"
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        await outbox.append_many("stock", "s", ({"pad": "x" * 200, "n": n} for n in range(20_000)))
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
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        bodies: list[dict[str, object]] = [
            {},
            {"slot": "s-1", "delta": -1},
            {"name": 'Käse "alt" \\ 🧀', "nested": {"a": [1, 2.5, None, True]}},
            {"pad": "x" * 3000},
            {"n": 4},
        ]
        for body in bodies:
            await outbox.append("stock", "stock.changed", body)
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
