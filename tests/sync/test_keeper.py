"""The outbox keeper (task ``outbox.keeper``): the ``buffer.pressure`` and ``storage.full``
alerts it raises, keeps current and clears, and the TTL expiry it runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from gateway.alerts import Alerts, Severity
from gateway.clock import FakeClock
from gateway.errors import OutboxFullError, StorageFullError
from gateway.store import Database
from gateway.store.budget import BufferBudget, Shed
from gateway.store.outbox import Outbox
from gateway.sync.keeper import PRESSURE_ALERT, STORAGE_FULL_ALERT, OutboxKeeper
from tests.store.probes import PROBES, probe, probes
from tests.store.support import SMALL_PAGE_BUDGET

STREAMS = ("stock", "dwell", "receipts", "alerts")
KIB = 1024


@pytest.mark.slow
async def test_keeper_raises_updates_and_clears_the_pressure_alert(tmp_path: Path) -> None:
    clock = FakeClock()
    budget = BufferBudget(
        budget_bytes=20 * KIB,
        alert_reserve_bytes=2 * KIB,
        shed_detail_at=0.5,
        shed_aggregate_at=0.8,
    )
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, budget, events=PROBES)
        await outbox.open(STREAMS)
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        keeper = OutboxKeeper(outbox, alerts, clock, ttl_s={"dwell": 3600})
        body = {"text": "z" * 150}
        while not outbox.pressure.shed:  # until the first detail event is dropped
            await outbox.append("dwell", probe("dwell.visit", body), shed=Shed.DETAIL)
        assert not outbox.pressure.accepts(Shed.DETAIL) or outbox.pressure.shed
        await outbox.append_many("dwell", probes("dwell.visit", [body] * 7), shed=Shed.DETAIL)
        await keeper.tick()
        [alert] = alerts.active()
        assert alert.key == PRESSURE_ALERT
        assert alert.severity.value == "warning"
        assert alert.details["shed"] == {"dwell/dwell.visit": 8}
        await outbox.append_many("dwell", probes("dwell.visit", [body] * 3), shed=Shed.DETAIL)
        await keeper.tick()
        assert alerts.active()[0].details["shed"] == {"dwell/dwell.visit": 11}
        while True:  # fill up to the essential limit: escalates to critical
            try:
                await outbox.append("stock", probe("stock.changed", body))
            except OutboxFullError:
                break
        await keeper.tick()
        assert alerts.active()[0].severity.value == "critical"
        # HQ takes everything: the episode ends and the clear carries the final counts.
        for state in await outbox.states():
            if state.depth and state.stream != "alerts":
                released = await outbox.acknowledge(state.stream, outbox.epoch, state.next_seq - 1)
                assert released is not None
                await released
        await keeper.tick()
        assert alerts.active() == ()
        events = await outbox.read("alerts", after_seq=0, max_events=10, max_bytes=10**9)
        assert [e.type for e in events] == ["alert.raised", "alert.raised", "alert.cleared"]
        cleared = json.loads(events[-1].body)
        assert cleared["details"]["shed"] == {"dwell/dwell.visit": 11}
        assert cleared["details"]["refused"] == {"stock/stock.changed": 1}
        # TTL runs from the keeper too (first tick ran it; the next is due after the interval).
        await outbox.append("dwell", probe("dwell.summary", {"n": 1}))
        clock.advance(7200)
        await keeper.tick()
        assert keeper.expired == {"dwell": 1}
        await asyncio.sleep(0)


@pytest.mark.slow
async def test_a_full_disk_raises_storage_full_and_clears_it_after_a_write_succeeds(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with Database.running(
        tmp_path / "g.db", clock=clock, max_page_count=SMALL_PAGE_BUDGET * 4
    ) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        keeper = OutboxKeeper(outbox, alerts, clock, ttl_s={}, database=db)
        await db.write("CREATE TABLE filler (pad BLOB)")
        while db.full_since is None:  # fill the page budget with something that is not events
            with contextlib.suppress(StorageFullError):
                await db.write("INSERT INTO filler VALUES (zeroblob(3000))")
        await keeper.tick()
        [alert] = alerts.active()  # active, persisted or not: `storegw alerts` shows it
        assert alert.key == STORAGE_FULL_ALERT
        assert alert.severity.value == "critical"
        assert "the disk is full" in alert.message
        await keeper.tick()
        assert len(alerts.active()) == 1  # raised once per episode
        await db.write("DELETE FROM filler")
        await keeper.tick()
        assert alerts.active() != ()  # room again, but not for long enough yet
        clock.advance(31)
        await keeper.tick()  # nothing else writes: the keeper's own probe ends the episode
        assert db.full_since is None
        assert alerts.active() == ()
        events = await outbox.read("alerts", after_seq=0, max_events=10, max_bytes=10**9)
        cleared = json.loads(events[-1].body)
        assert events[-1].type == "alert.cleared"
        assert (cleared["key"], cleared["severity"]) == (STORAGE_FULL_ALERT, "critical")


async def test_storage_full_found_active_at_start_is_cleared_only_by_a_write(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    path = tmp_path / "g.db"
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        alerts = Alerts(db, outbox, clock)
        await alerts.raise_(STORAGE_FULL_ALERT, Severity.CRITICAL, "the disk is full")
    async with Database.running(path, clock=clock) as db:  # restarted with room again
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(STREAMS)
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        assert [a.key for a in alerts.active()] == [STORAGE_FULL_ALERT]
        commits = (await db.stats()).commits
        await OutboxKeeper(outbox, alerts, clock, ttl_s={}, database=db).tick()
        assert alerts.active() == ()
        assert (await db.stats()).commits > commits
