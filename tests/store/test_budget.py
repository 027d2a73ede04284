"""The outbox byte budget, its shedding order, exact byte accounting and TTL expiry."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.errors import OutboxFullError
from gateway.store import MIGRATIONS, Database
from gateway.store.budget import Admission, BufferBudget, BufferPressure, Shed
from gateway.store.config import OutboxConfig
from gateway.store.outbox import Outbox
from gateway.wire import EXPIRED_TYPE
from tests.store.probes import PROBES, probe, probes

STREAMS = ("stock", "dwell", "receipts", "alerts")
KIB = 1024


async def exact_bytes(db: Database, stream: str) -> int:
    row = await db.fetchone(
        "SELECT coalesce(sum(size), 0) AS b FROM outbox_batches WHERE stream = ?", (stream,)
    )
    assert row is not None
    return int(row["b"])


def test_shedding_order_is_detail_then_aggregate_then_essential_then_alerts() -> None:
    budget = BufferBudget(
        budget_bytes=1000, alert_reserve_bytes=50, shed_detail_at=0.5, shed_aggregate_at=0.8
    )
    pressure = BufferPressure(budget)
    assert pressure.admit(Shed.DETAIL, "dwell", "dwell.visit", 1, 500) is Admission.ACCEPT
    assert pressure.admit(Shed.DETAIL, "dwell", "dwell.visit", 3, 10) is Admission.SHED
    assert pressure.admit(Shed.AGGREGATE, "dwell", "dwell.summary", 1, 300) is Admission.ACCEPT
    assert pressure.admit(Shed.AGGREGATE, "dwell", "dwell.summary", 2, 10) is Admission.SHED
    assert pressure.admit(Shed.ESSENTIAL, "stock", "stock.changed", 1, 150) is Admission.ACCEPT
    assert pressure.worst is Shed.AGGREGATE
    assert pressure.admit(Shed.ESSENTIAL, "stock", "stock.changed", 1, 10) is Admission.REFUSE
    assert pressure.worst is Shed.ESSENTIAL
    assert pressure.admit(Shed.ALERT, "alerts", "alert.raised", 1, 40) is Admission.ACCEPT
    assert pressure.used_bytes == 990
    report = pressure.report()
    assert report["shed"] == {"dwell/dwell.visit": 3, "dwell/dwell.summary": 2}
    assert report["refused"] == {"stock/stock.changed": 1}
    assert report["paused"] == ["detail", "aggregate"]
    assert not pressure.relieved()
    pressure.used_bytes = 300  # drained below relief (first threshold less 10 %)
    assert pressure.relieved()
    final = pressure.reset()
    assert final["shed"]["dwell/dwell.visit"] == 3
    assert pressure.worst is None
    assert pressure.shed == {}


@pytest.mark.parametrize(
    "fields",
    [
        {"budget_bytes": 100, "alert_reserve_bytes": 100},
        {"shed_detail_at": 0.9, "shed_aggregate_at": 0.5},
        {"shed_detail_at": 0},
        {"budget_bytes": 1000, "alert_reserve_bytes": 200, "shed_aggregate_at": 0.9},
    ],
)
def test_inconsistent_budget_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BufferBudget(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"budget_bytes": "lots"},
        {"budget_bytes": 10},
        {"alert_reserve_bytes": 300 * 1024 * 1024},
        {"ttl_s": {"Dwell!": 10}},
        {"ttl_s": {"dwell": -1}},
        {"ttl_s": {"dwell": "a week"}},
        {"shed_detail_at": 1.5},
    ],
)
def test_garbage_outbox_config_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        OutboxConfig.model_validate(fields)


@pytest.mark.slow
async def test_budget_sheds_lossy_first_refuses_stock_last_and_alerts_use_the_reserve(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    budget = BufferBudget(
        budget_bytes=40 * KIB,
        alert_reserve_bytes=4 * KIB,
        shed_detail_at=0.5,
        shed_aggregate_at=0.75,
    )
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, budget, events=PROBES)
        await outbox.open(STREAMS)
        body = {"text": "x" * 120}  # ~200 bytes a row
        stock_accepted = 0
        detail_sent = aggregate_sent = 0
        refused = None
        while refused is None:
            await outbox.append_many("dwell", probes("dwell.visit", [body] * 5), shed=Shed.DETAIL)
            detail_sent += 5
            await outbox.append_many("dwell", probes("dwell.summary", [body] * 2))
            aggregate_sent += 2
            try:
                await outbox.append("stock", probe("stock.changed", body))
                stock_accepted += 1
            except OutboxFullError as exc:
                refused = exc
        assert "not accepted" in str(refused)
        # Room for alerts is still there after stock was refused.
        await outbox.append("alerts", probe("alert.raised", {"key": "buffer.pressure"}))
        dwell = await outbox.read("dwell", after_seq=0, max_events=10**6, max_bytes=10**9)
        kept_detail = sum(e.type == "dwell.visit" for e in dwell)
        kept_aggregate = sum(e.type == "dwell.summary" for e in dwell)
        report = outbox.pressure.report()
        assert report["shed"]["dwell/dwell.visit"] == detail_sent - kept_detail > 0
        assert report["shed"]["dwell/dwell.summary"] == aggregate_sent - kept_aggregate > 0
        assert report["refused"] == {"stock/stock.changed": 1}
        # Detail stopped first: aggregates kept flowing after the last detail was taken.
        last_detail = max(e.seq for e in dwell if e.type == "dwell.visit")
        assert any(e.seq > last_detail for e in dwell if e.type == "dwell.summary")
        stock = await outbox.read("stock", after_seq=0, max_events=10**6, max_bytes=10**9)
        assert len(stock) == stock_accepted  # every accepted stock event is there
        # The running figure is the database's figure.
        total = sum([await exact_bytes(db, s) for s in STREAMS])
        assert outbox.pressure.used_bytes == total
        assert await outbox.refresh_usage() == total
        assert budget.limit(Shed.ESSENTIAL) - 300 < total <= budget.budget_bytes


async def test_byte_accounting_follows_acks_releases_and_restarts(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "g.db"
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        await outbox.append_many(
            "stock", probes("s", ({"n": n, "pad": "y" * n} for n in range(200)))
        )
        await outbox.append_many("receipts", probes("r", ({"n": n} for n in range(50))))
        await (await outbox.acknowledge("stock", outbox.epoch, 120))  # type: ignore[misc]
        await (await outbox.release_sent("receipts", 10))
        expected = await exact_bytes(db, "stock") + await exact_bytes(db, "receipts")
        assert outbox.pressure.used_bytes == expected
        states = {s.stream: s for s in await outbox.states()}
        assert states["stock"].bytes == await exact_bytes(db, "stock")
        assert (states["stock"].depth, states["receipts"].depth) == (80, 40)
        await (await outbox.acknowledge("stock", outbox.epoch, 200))  # type: ignore[misc]
        assert {s.stream: s for s in await outbox.states()}["stock"].bytes == 0
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        assert outbox.pressure.used_bytes == await exact_bytes(db, "receipts")


async def test_ttl_replaces_the_expired_prefix_by_one_marker(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        first_ts = clock.utc_now()
        await outbox.append_many("dwell", probes("dwell.summary", ({"n": n} for n in range(5))))
        clock.advance(3600)
        await outbox.append_many("dwell", probes("dwell.summary", ({"n": n} for n in range(5, 8))))
        clock.advance(1800)
        assert await outbox.expire("dwell", ttl_s=7200) == 0  # nothing that old yet
        assert await outbox.expire("dwell", ttl_s=3000) == 5
        events = await outbox.read("dwell", after_seq=0, max_events=100, max_bytes=10**9)
        assert [(e.seq, e.type) for e in events] == [
            (5, EXPIRED_TYPE),
            (6, "dwell.summary"),
            (7, "dwell.summary"),
            (8, "dwell.summary"),
        ]
        marker = json.loads(events[0].body)
        assert marker["from_seq"] == 1
        assert marker["count"] == 5
        assert marker["reason"] == "ttl"
        assert marker["oldest_ts"] == marker["newest_ts"] == events[0].ts
        assert marker["oldest_ts"].startswith(first_ts.strftime("%Y-%m-%dT%H:%M"))
        assert await outbox.expire("dwell", ttl_s=3000) == 0  # a lone marker stays
        clock.advance(timedelta(hours=2).total_seconds())
        assert await outbox.expire("dwell", ttl_s=3000) == 4  # folds the old marker in
        [merged] = await outbox.read("dwell", after_seq=0, max_events=100, max_bytes=10**9)
        body = json.loads(merged.body)
        assert (merged.seq, body["from_seq"], body["count"]) == (8, 1, 8)
        state = {s.stream: s for s in await outbox.states()}["dwell"]
        assert (state.depth, state.bytes) == (1, await exact_bytes(db, "dwell"))
        assert outbox.pressure.used_bytes == await exact_bytes(db, "dwell")
        await outbox.append("dwell", probe("dwell.summary", {"n": 8}))  # seqs go on after a marker
        after = await outbox.read("dwell", after_seq=8, max_events=10, max_bytes=10**9)
        assert [e.seq for e in after] == [9]


async def test_migration_4_backfills_offsets_of_an_existing_outbox(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "g.db"
    async with Database.running(path, clock=clock, migrations=MIGRATIONS[:3]) as db:
        for stream in ("stock", "dwell"):
            await db.write("INSERT INTO outbox_streams (stream) VALUES (?)", (stream,))
        await db.write_many(
            "INSERT INTO outbox (stream, seq, id, ts, type, body, size) "
            "VALUES (?, ?, 'i', 't', 'x', '{}', ?)",
            [("stock", n, 100 + n) for n in range(1, 11)] + [("dwell", 1, 7)],
        )
        await db.write("DELETE FROM outbox WHERE stream = 'stock' AND seq <= 3")
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        states = {s.stream: s for s in await outbox.states()}
        assert states["stock"].bytes == sum(100 + n for n in range(4, 11))
        assert states["dwell"].bytes == 7
        await outbox.append("stock", probe("x", {}))
        assert {s.stream: s for s in await outbox.states()}["stock"].bytes == await exact_bytes(
            db, "stock"
        )


async def test_ttl_of_a_row_released_in_part_counts_only_what_hq_lacks(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        await outbox.append_many("dwell", probes("dwell.summary", ({"n": n} for n in range(100))))
        await (await outbox.acknowledge("dwell", outbox.epoch, 40))  # type: ignore[misc]
        clock.advance(3600)
        assert await outbox.expire("dwell", ttl_s=60) == 60  # HQ holds 1..40: not expired
        [marker] = await outbox.read("dwell", after_seq=0, max_events=100, max_bytes=10**9)
        body = json.loads(marker.body)
        assert (marker.seq, body["from_seq"], body["count"]) == (100, 41, 60)
        assert outbox.pressure.used_bytes == await exact_bytes(db, "dwell")


async def test_a_producer_giving_up_its_wait_leaves_the_byte_count_exact(tmp_path: Path) -> None:
    # A cancelled wait (wait_for timeout, task cancelled at shutdown) does not undo the
    # commit: the events are stored and their bytes stay counted.
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        waits = [
            outbox.append("stock", probe("s", {"n": 0})),
            outbox.append_many("dwell", probes("d", ({"n": n} for n in range(300)))),
            outbox.append_atomic("receipts", probes("r", [{"n": 1}]), before=[]),
        ]
        for wait in waits:
            wait.cancel()
        await outbox.append("alerts", probe("a", {}))  # committed after the others
        assert outbox.pressure.used_bytes == await outbox.refresh_usage()
        for stream in ("stock", "dwell", "receipts"):
            assert await outbox.read(stream, after_seq=0, max_events=1000, max_bytes=10**9)
