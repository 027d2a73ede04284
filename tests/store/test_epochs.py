"""A stream whose database went back in time starts a new epoch, its buffered events intact."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.store import Database
from gateway.store.highwater import HighWater, HighWaterFile, went_back
from gateway.store.outbox import Outbox
from gateway.wire import EXPIRED_TYPE
from tests.store.probes import PROBES, probe, probes

STREAMS = ("stock", "dwell", "receipts", "alerts")
ALL = {"max_events": 10_000, "max_bytes": 10**9}


@asynccontextmanager
async def opened(path: Path, clock: FakeClock | None = None) -> AsyncIterator[Outbox]:
    clock = clock or FakeClock()
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        yield outbox


async def sent(outbox: Outbox, stream: str) -> None:
    """What the uplink does before it publishes: the high-water file covers the head."""
    [state] = [s for s in await outbox.states() if s.stream == stream]
    await outbox.mark_leaving(stream, state.next_seq - 1)


def test_went_back_compares_the_head_and_the_epoch_with_the_mark() -> None:
    assert not went_back("e1", 11, None)  # no mark: nothing known
    assert not went_back("e1", 11, HighWater("e1", 10))  # the usual restart
    assert went_back("e1", 10, HighWater("e1", 10))  # seq 10 would be given out again
    assert went_back("e1", 1, HighWater("e1", 10))
    assert went_back("e1", 500, HighWater("e2", 3))  # a copy from before epoch e2 began


async def test_new_epoch_resequences_the_buffered_events_from_one(tmp_path: Path) -> None:
    async with opened(tmp_path / "g.db") as outbox:
        await outbox.append_many(
            "stock", probes("s", ({"n": n} for n in range(10)))
        )  # one row: 1..10
        await outbox.append_many("stock", probes("s", ({"n": n} for n in range(10, 15))))  # 11..15
        before = await outbox.read("stock", after_seq=0, **ALL)
        await (await outbox.acknowledge("stock", outbox.epoch, 4))  # HQ holds 1..4
        old = outbox.epoch_of("stock")

        change = await outbox.start_new_epoch("stock", "a test")

        assert change.old_epoch == old
        assert change.new_epoch == outbox.epoch_of("stock") != old
        assert change.resequenced == 11
        after = await outbox.read("stock", after_seq=0, **ALL)
        assert [e.seq for e in after] == list(range(1, 12))
        assert [(e.id, e.ts, e.body) for e in after] == [(e.id, e.ts, e.body) for e in before[4:]]
        state = {s.stream: s for s in await outbox.states()}["stock"]
        assert (state.epoch, state.next_seq, state.sent_seq, state.acked_seq) == (
            change.new_epoch,
            12,
            0,
            0,
        )
        assert state.depth == 11
        assert outbox.epoch_of("dwell") == outbox.epoch  # the other streams keep theirs
        await outbox.append("stock", probe("s", {"n": 15}))
        [last] = await outbox.read("stock", after_seq=11, **ALL)
        assert (last.seq, json.loads(last.body)) == (12, {"n": 15})
        assert [c.stream for c in outbox.take_epoch_changes()] == ["stock"]
        assert outbox.take_epoch_changes() == []

        # Acks of the old epoch change nothing any more; the new epoch's release as usual.
        assert await outbox.acknowledge("stock", old, 12) is None
        await (await outbox.acknowledge("stock", change.new_epoch, 11))
        [left] = await outbox.read("stock", after_seq=0, **ALL)
        assert left.seq == 12


async def test_an_expiry_marker_keeps_the_seqs_it_stands_for(tmp_path: Path) -> None:
    clock = FakeClock()
    async with opened(tmp_path / "g.db", clock) as outbox:
        await outbox.append_many("dwell", probes("d", ({"n": n} for n in range(5))))  # 1..5
        await (await outbox.acknowledge("dwell", outbox.epoch, 2))
        await outbox.append_many("dwell", probes("d", ({"n": n} for n in range(5, 8))))  # 6..8
        clock.advance(3600)
        await outbox.append_many("dwell", probes("d", ({"n": n} for n in range(8, 10))))  # 9..10
        assert await outbox.expire("dwell", ttl_s=60) == 6  # 3..8 expire
        await outbox.start_new_epoch("dwell", "a test")
        marker, *rest = await outbox.read("dwell", after_seq=0, **ALL)
        body = json.loads(marker.body)
        assert (marker.type, marker.seq, body["from_seq"], body["count"]) == (
            EXPIRED_TYPE,
            6,
            1,
            6,
        )
        assert [(e.seq, json.loads(e.body)["n"]) for e in rest] == [(7, 8), (8, 9)]


async def test_an_ack_in_flight_during_the_change_releases_nothing_new(tmp_path: Path) -> None:
    """HQ's ack for the old epoch, read before the change and applied after it, would delete
    the new epoch's events: it is refused."""
    async with opened(tmp_path / "g.db") as outbox:
        await outbox.append_many("stock", probes("s", ({"n": n} for n in range(10))))
        old = outbox.epoch_of("stock")
        released, _change = await asyncio.gather(
            outbox.acknowledge("stock", old, 5), outbox.start_new_epoch("stock", "a test")
        )
        assert released is None
        assert [e.seq for e in await outbox.read("stock", after_seq=0, **ALL)] == list(range(1, 11))


async def test_a_restored_copy_is_noticed_at_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "g.db"
    async with opened(path) as outbox:
        await outbox.append_many("stock", probes("s", ({"n": n} for n in range(10))))
        await sent(outbox, "stock")
        epoch = outbox.epoch
    shutil.copyfile(path, tmp_path / "copy.db")
    async with opened(path) as outbox:  # a normal restart: nothing to notice
        assert outbox.epoch_of("stock") == epoch
        assert outbox.take_epoch_changes() == []
        await outbox.append_many("stock", probes("s", ({"n": n} for n in range(10, 20))))
        await sent(outbox, "stock")  # 11..20 left the store
    shutil.copyfile(tmp_path / "copy.db", path)

    with caplog.at_level(logging.WARNING, logger="gateway.store.outbox"):
        async with opened(path) as outbox:
            [change] = outbox.take_epoch_changes()
            assert (change.stream, change.old_epoch, change.resequenced) == ("stock", epoch, 10)
            assert outbox.epoch_of("stock") == change.new_epoch != epoch
            assert outbox.epoch_of("dwell") == epoch  # nothing of it had left
            await outbox.append("stock", probe("s", {"n": 100}))
            events = await outbox.read("stock", after_seq=0, **ALL)
            assert [(e.seq, json.loads(e.body)["n"]) for e in events] == [
                *((n + 1, n) for n in range(10)),
                (11, 100),
            ]
            new_epoch = change.new_epoch
    [warning] = [r.getMessage() for r in caplog.records]
    assert "outbox stream stock went back in time" in warning
    assert "seqs up to 20" in warning

    async with opened(path) as outbox:  # and the next start is a normal one again
        assert outbox.epoch_of("stock") == new_epoch
        assert outbox.take_epoch_changes() == []


async def test_a_copy_from_before_an_epoch_change_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    async with opened(path) as outbox:
        await outbox.append_many("stock", probes("s", ({"n": n} for n in range(3))))
    shutil.copyfile(path, tmp_path / "copy.db")
    async with opened(path) as outbox:
        await outbox.append_many("stock", probes("s", ({"n": n} for n in range(3, 50))))
        newer = (await outbox.start_new_epoch("stock", "a test")).new_epoch
    shutil.copyfile(tmp_path / "copy.db", path)
    async with opened(path) as outbox:
        [change] = outbox.take_epoch_changes()
        assert change.old_epoch == outbox.epoch
        assert f"epoch {newer} was in use" in change.reason
        assert outbox.epoch_of("stock") not in (outbox.epoch, newer)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "garbage",
        "[]",
        '{"v": 1}',
        '{"v": 2, "database": "x", "streams": {}}',
        '{"v": 1, "database": "DB", "streams": {"stock": {"epoch": "DB", "seq": -1}}}',
        '{"v": 1, "database": "DB", "streams": {"stock": {"epoch": 5, "seq": 1}}}',
        '{"v": 1, "database": "DB", "streams": {"stock": {"epoch": "DB", "seq": 1e400}}}',
        '{"v": 1, "database": "DB", "streams": ["stock"]}',
    ],
)
async def test_a_damaged_high_water_file_is_ignored_and_rewritten(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "g.db"
    async with opened(path) as outbox:
        await outbox.append_many("stock", probes("s", ({"n": n} for n in range(3))))
        epoch = outbox.epoch
    marks = HighWaterFile.beside(path, epoch)
    marks.path.write_text(content.replace("DB", epoch), encoding="utf-8")
    async with opened(path) as outbox:
        assert outbox.take_epoch_changes() == []
        assert outbox.epoch_of("stock") == epoch
    assert marks.load()["stock"] == HighWater(epoch, 3)


async def test_another_database_s_high_water_file_says_nothing(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    async with opened(path) as outbox:
        await outbox.append_many("stock", probes("s", ({"n": n} for n in range(30))))
        await sent(outbox, "stock")
    for leftover in tmp_path.glob("g.db*"):
        if leftover.name != "g.db.highwater":
            leftover.unlink()  # the database is rebuilt: a new epoch anyway
    async with opened(path) as outbox:
        assert outbox.take_epoch_changes() == []
        assert HighWaterFile.beside(path, outbox.epoch).load()["stock"] == HighWater(
            outbox.epoch, 0
        )


async def test_an_unwritable_high_water_file_does_not_stop_the_outbox(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "g.db"
    (tmp_path / "g.db.highwater.tmp").mkdir()  # the write cannot happen
    with caplog.at_level(logging.ERROR, logger="gateway.store.highwater"):
        async with opened(path) as outbox:
            await outbox.append_many("stock", probes("s", ({"n": n} for n in range(3))))
            await sent(outbox, "stock")
            await outbox.append_many("stock", probes("s", ({"n": n} for n in range(3, 6))))
            await sent(outbox, "stock")
    assert len(caplog.records) == 1  # once, not per write
    assert "cannot write" in caplog.records[0].getMessage()
