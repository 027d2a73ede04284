"""The reference HQ consumer: durable, de-duplicated, contiguous watermarks, gaps, garbage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import FakeClock
from gateway.hq.consumer import HQ_MIGRATIONS, HqConsumer
from gateway.store import Database
from tests.hq.support import envelope, expired_marker, open_consumer, with_events


async def test_acks_follow_the_contiguous_watermark_and_survive_restart(tmp_path: Path) -> None:
    out: list[dict[str, Any]] = []
    cm, consumer = await open_consumer(tmp_path / "hq.db", out)
    try:
        ack = await consumer.receive(envelope([1, 2, 3]))
        assert ack is not None
        assert ack.topic == "retail/v1/s1/down/ack"
        assert json.loads(ack.payload) == {"stream": "stock", "epoch": "e1", "seq": 3}
        ack = await consumer.receive(envelope([6, 7]))  # 4..5 missing
        assert ack is not None
        assert json.loads(ack.payload)["seq"] == 3
        assert consumer.gaps() == {("s1", "stock", "e1"): (4, 5)}
        await consumer.receive(envelope([2, 3]))  # re-sent: duplicates
        assert consumer.duplicates == 2
    finally:
        await cm.__aexit__(None, None, None)
    out2: list[dict[str, Any]] = []
    cm, consumer = await open_consumer(tmp_path / "hq.db", out2)
    try:
        assert consumer.watermark("s1", "stock", "e1") == 3
        ack = await consumer.receive(envelope([4, 5, 6, 7]))
        assert ack is not None
        assert json.loads(ack.payload)["seq"] == 7
        assert [event["seq"] for event in out2] == [4, 5]  # 6, 7 were stored before restart
        assert consumer.gaps() == {}
    finally:
        await cm.__aexit__(None, None, None)
    assert [event["seq"] for event in out] == [1, 2, 3, 6, 7]
    assert out[0] == {
        "store": "s1",
        "stream": "stock",
        "epoch": "e1",
        "seq": 1,
        "id": "id1",
        "ts": "2026-11-23T09:00:00.000+00:00",
        "type": "t",
        "n": 1,
    }


async def test_epochs_and_streams_are_separate(tmp_path: Path) -> None:
    out: list[dict[str, Any]] = []
    cm, consumer = await open_consumer(tmp_path / "hq.db", out)
    try:
        await consumer.receive(envelope([1, 2]))
        ack = await consumer.receive(envelope([1], epoch="e2"))  # a rebuilt gateway database
        assert ack is not None
        assert json.loads(ack.payload) == {"stream": "stock", "epoch": "e2", "seq": 1}
        await consumer.receive(envelope([1], stream="alerts"))
        assert len(out) == 4
    finally:
        await cm.__aexit__(None, None, None)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"garbage",
        b"[]",
        b'{"v": 1}',
        envelope([1]).replace(b'"v": 1', b'"v": 9'),
        envelope([1]).replace(b'"seq": 1,', b'"seq": -1,'),
        envelope([1]).replace(b'"store": "s1"', b'"store": "s1/#"'),
    ],
)
async def test_garbage_is_rejected_not_stored(tmp_path: Path, payload: bytes) -> None:
    out: list[dict[str, Any]] = []
    cm, consumer = await open_consumer(tmp_path / "hq.db", out)
    try:
        assert await consumer.receive(payload) is None
        assert consumer.rejected == 1
        assert out == []
    finally:
        await cm.__aexit__(None, None, None)


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=8), min_size=1, max_size=12))
async def test_any_delivery_order_stores_each_event_once(batches: list[list[int]]) -> None:
    import tempfile

    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as directory:
        cm, consumer = await open_consumer(Path(directory) / "hq.db", out)
        try:
            for batch in batches:
                await consumer.receive(envelope(sorted(set(batch))))
            delivered = {n for batch in batches for n in batch}
            assert sorted(event["seq"] for event in out) == sorted(delivered)
            watermark = consumer.watermark("s1", "stock", "e1")
            assert all(n in delivered for n in range(1, watermark + 1))
            assert watermark + 1 not in delivered
        finally:
            await cm.__aexit__(None, None, None)


async def test_expired_marker_lets_the_watermark_pass_and_survives_restart(
    tmp_path: Path,
) -> None:
    out: list[dict[str, Any]] = []
    cm, consumer = await open_consumer(tmp_path / "hq.db", out)
    try:
        await consumer.receive(envelope([1, 2]))
        # Seqs 3..9 expired at the store; 10 arrives first, then the marker (seq 9).
        ack = await consumer.receive(envelope([10]))
        assert ack is not None
        assert json.loads(ack.payload)["seq"] == 2
        ack = await consumer.receive(with_events(envelope([9]), [expired_marker(9, 3, 7)]))
        assert ack is not None
        assert json.loads(ack.payload)["seq"] == 10
        assert consumer.expired == 7
        assert consumer.gaps() == {}
        # A marker overlapping seqs HQ already holds (they were sent before they expired).
        await consumer.receive(envelope([11, 12]))
        ack = await consumer.receive(with_events(envelope([13]), [expired_marker(13, 11, 3)]))
        assert ack is not None
        assert json.loads(ack.payload)["seq"] == 13
        # A marker ahead of a hole: held until the hole fills, also across a restart.
        ack = await consumer.receive(with_events(envelope([20]), [expired_marker(20, 16, 5)]))
        assert ack is not None
        assert json.loads(ack.payload)["seq"] == 13
        assert consumer.gaps() == {("s1", "stock", "e1"): (14, 15)}
    finally:
        await cm.__aexit__(None, None, None)
    cm, consumer = await open_consumer(tmp_path / "hq.db", [])
    try:
        ack = await consumer.receive(envelope([14, 15]))
        assert ack is not None
        assert json.loads(ack.payload)["seq"] == 20
    finally:
        await cm.__aexit__(None, None, None)


@pytest.mark.parametrize(
    "marker",
    [
        {"from_seq": 0, "count": 1},
        {"from_seq": 12, "count": 1},  # beyond its own seq
        {"from_seq": "3", "count": 1},
        {"count": 4},
    ],
)
async def test_malformed_expired_marker_covers_nothing(
    tmp_path: Path, marker: dict[str, Any]
) -> None:
    cm, consumer = await open_consumer(tmp_path / "hq.db", [])
    try:
        event = {**expired_marker(9, 3, 1), **marker}
        if "from_seq" not in marker:
            del event["from_seq"]
        ack = await consumer.receive(with_events(envelope([9]), [event]))
        assert ack is None  # seq 9 stored, but 1..8 still missing: no watermark yet
        assert consumer.expired == 0
        assert consumer.gaps() == {("s1", "stock", "e1"): (1, 8)}
    finally:
        await cm.__aexit__(None, None, None)


async def test_stored_rows_hold_each_event_as_it_came(tmp_path: Path) -> None:
    cm, consumer = await open_consumer(tmp_path / "hq.db", [])
    try:
        payload = json.loads(envelope([1, 2, 3]))
        payload["events"][1]["note"] = 'ünïcode "quoted"'
        await consumer.receive(json.dumps(payload).encode())
        await consumer.receive(envelope([2, 3, 4]))  # 2, 3 again: the first copy stays
        db = consumer._db
        rows = await db.fetchall(
            "SELECT seq, id, ts, type, event, received_at FROM hq_events ORDER BY seq"
        )
        assert [row["seq"] for row in rows] == [1, 2, 3, 4]
        assert json.loads(rows[1]["event"]) == payload["events"][1]
        assert (rows[1]["id"], rows[1]["type"], rows[1]["received_at"]) == ("id2", "t", "now")
        assert consumer.stored == 4
        assert consumer.duplicates == 2
    finally:
        await cm.__aexit__(None, None, None)


async def test_migration_4_keeps_events_stored_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "hq.db"
    async with Database.running(path, clock=FakeClock(), migrations=HQ_MIGRATIONS[:3]) as db:
        await db.write_many(
            "INSERT INTO hq_events VALUES ('s1', 'stock', 'e1', ?, ?, 'ts', 't', ?, 'then')",
            [(n, f"id{n}", json.dumps({"seq": n, "id": f"id{n}", "n": n})) for n in (1, 2, 4)],
        )
        await db.write("INSERT INTO hq_watermarks VALUES ('s1', 'stock', 'e1', 2)")
    out: list[dict[str, Any]] = []
    cm, consumer = await open_consumer(path, out)
    try:
        rows = await consumer._db.fetchall("SELECT seq, id, event FROM hq_events ORDER BY seq")
        assert [(row["seq"], row["id"]) for row in rows] == [(1, "id1"), (2, "id2"), (4, "id4")]
        assert json.loads(rows[2]["event"])["n"] == 4
        assert consumer.gaps() == {("s1", "stock", "e1"): (3, 3)}  # 4 is held above the gap
        await consumer.receive(envelope([3, 4, 5]))
        assert consumer.watermark("s1", "stock", "e1") == 5
        assert [event["seq"] for event in out] == [3, 5]
    finally:
        await cm.__aexit__(None, None, None)


async def test_a_failed_commit_stores_neither_events_nor_watermark(tmp_path: Path) -> None:
    # receive_many is one commit: if the events cannot be stored, no watermark covering them
    # may be, even when the writer commits in small groups (a watermark that passes missing
    # events is acked after a restart, and the store deletes what HQ never had).
    from gateway.errors import StorageError

    path = tmp_path / "hq.db"
    cm, consumer = await open_consumer(path, [])
    try:
        await consumer.receive(envelope([1, 2, 3]))
        [row] = await consumer._db.fetchall("PRAGMA page_count")
        pages = int(row[0])
    finally:
        await cm.__aexit__(None, None, None)
    big = json.loads(envelope([4, 5]))
    big["events"][0]["pad"] = "x" * 200_000
    async with Database.running(
        path, clock=FakeClock(), migrations=HQ_MIGRATIONS, commit_max_rows=1, max_page_count=pages
    ) as db:
        consumer = HqConsumer(db, now=lambda: "now")
        await consumer.load()
        with pytest.raises(StorageError):
            await consumer.receive_many([json.dumps(big).encode()])
        assert consumer.watermark("s1", "stock", "e1") == 3
    cm, consumer = await open_consumer(path, [])
    try:
        assert consumer.watermark("s1", "stock", "e1") == 3
        rows = await consumer._db.fetchall("SELECT seq FROM hq_events ORDER BY seq")
        assert [row["seq"] for row in rows] == [1, 2, 3]
    finally:
        await cm.__aexit__(None, None, None)


@pytest.mark.parametrize("emitting", [True, False])
async def test_one_odd_envelope_does_not_take_its_batch_down(
    tmp_path: Path, emitting: bool
) -> None:
    # Validation lets a numeric string through as a seq; everything after it — ordering,
    # de-duplication, the stored copy, what is printed — uses the validated header, so the
    # envelopes committed with it are stored and acked as usual.
    out: list[dict[str, Any]] = []
    cm, consumer = await open_consumer(tmp_path / "hq.db", out)
    if not emitting:
        consumer._emit = None  # as `storegw hq tail --quiet`
    try:
        odd = envelope([3, 2], store="a").replace(b'"seq": 2', b'"seq": "2"')
        acks = await consumer.receive_many([envelope([1, 2], store="b"), odd])
        assert {ack.topic: json.loads(ack.payload)["seq"] for ack in acks} == {
            "retail/v1/b/down/ack": 2
        }
        assert consumer.gaps() == {("a", "stock", "e1"): (1, 1)}
        rows = await consumer._db.fetchall(
            "SELECT store, seq, typeof(seq) AS kind FROM hq_events ORDER BY store, seq"
        )
        assert [(r["store"], r["seq"], r["kind"]) for r in rows] == [
            ("a", 2, "integer"),
            ("a", 3, "integer"),
            ("b", 1, "integer"),
            ("b", 2, "integer"),
        ]
        if emitting:
            assert [(e["store"], e["seq"]) for e in out] == [("b", 1), ("b", 2), ("a", 2), ("a", 3)]
    finally:
        await cm.__aexit__(None, None, None)


async def test_a_failure_before_the_commit_forgets_the_custody_it_took(tmp_path: Path) -> None:
    calls = 0

    def now() -> str:  # the second envelope's row cannot be made
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("clock gone")
        return "now"

    async with Database.running(
        tmp_path / "hq.db", clock=FakeClock(), migrations=HQ_MIGRATIONS
    ) as db:
        consumer = HqConsumer(db, now=now)
        await consumer.load()
        with pytest.raises(RuntimeError):
            await consumer.receive_many([envelope([1, 2], store="a"), envelope([1], store="b")])
        # Nothing was stored, so nothing may be acked: store a's watermark is where it was.
        ack = await consumer.receive(envelope([3], store="a"))
        assert ack is None or json.loads(ack.payload)["seq"] == 0
        assert consumer.watermark("a", "stock", "e1") == 0
        assert consumer.gaps() == {("a", "stock", "e1"): (1, 2)}
        ack = await consumer.receive(envelope([1, 2], store="a"))  # redelivered
        assert ack is not None
        assert json.loads(ack.payload)["seq"] == 3


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
async def test_envelopes_with_nan_or_infinity_are_refused(tmp_path: Path, number: bytes) -> None:
    out: list[dict[str, Any]] = []
    cm, consumer = await open_consumer(tmp_path / "hq.db", out)
    try:
        bad = envelope([1]).replace(b'"n": 1', b'"n": ' + number)
        assert await consumer.receive(bad) is None
        assert consumer.rejected == 1
        named = envelope([1]).replace(b'"n": 1', b'"n": "NaN and Infinity, as text"')
        ack = await consumer.receive(named)  # in a string they are just text
        assert ack is not None
        rows = await consumer._db.fetchall("SELECT seq, event ->> '$.n' AS n FROM hq_events")
        assert [(r["seq"], r["n"]) for r in rows] == [(1, "NaN and Infinity, as text")]
    finally:
        await cm.__aexit__(None, None, None)


async def test_an_envelope_is_held_to_the_store_and_stream_of_its_topic(tmp_path: Path) -> None:
    out: list[dict[str, Any]] = []
    cm, consumer = await open_consumer(tmp_path / "hq.db", out)
    try:
        forged = [envelope([1], store="s2"), envelope([1], stream="alerts"), envelope([1])]
        acks = await consumer.receive_many(forged, origins=[("s1", "stock")] * 3)
        assert [ack.topic for ack in acks] == ["retail/v1/s1/down/ack"]
        assert consumer.rejected == 2
        assert [(e["store"], e["stream"]) for e in out] == [("s1", "stock")]
    finally:
        await cm.__aexit__(None, None, None)
