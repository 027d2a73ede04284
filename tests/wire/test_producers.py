"""The real producers emit only what docs/protocol.md describes.

Each test runs a producer through its events on real SQLite — alerts and the outbox's expiry
marker, the shelves and presence services, the price downlink, label bindings and the label
pipeline's receipts — then reads the outbox as the uplink sends it and checks every envelope and
every event against the documented JSON Schemas (tests/wire/documented.py). Together they cover
every event type of the contract; a new type fails
:func:`test_every_event_type_has_a_producer_here` until a producer of it is run here. The health
snapshot is checked on a real daemon's message (tests/test_lifecycle.py).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gateway.alerts import Alerts, Severity
from gateway.clock import FakeClock
from gateway.drivers.contracts import LabelReportKind
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.wire import EVENT_TYPES, StockChanged
from tests.labels.support import CountingDriver, label_store, later, promo
from tests.labels.support import item as label_item
from tests.presence.support import PHONE, cart, floor
from tests.prices.support import batch, store
from tests.prices.support import item as price_item
from tests.shelves.support import UNIT, shelf
from tests.wire.documented import sent_events

#: The event types each test below makes its producer emit.
COVERED = {
    "alerts": {"alert.raised", "alert.cleared", "outbox.expired"},
    "shelves": {"stock.changed", "stock.ambiguous", "stock.activity"},
    "prices": {"price.stored", "price.applied", "price.rejected"},
    "labels": {
        "label.bound",
        "label.unbound",
        "label.queued",
        "label.confirmed",
        "label.failed",
        "label.superseded",
        "label.expired",
    },
    "presence": {"zone.enter", "zone.exit", "zone.aggregate"},
}


def test_every_event_type_has_a_producer_here() -> None:
    assert set().union(*COVERED.values()) == set(EVENT_TYPES)


def _types(events: list[dict[str, object]]) -> Counter[object]:
    return Counter(event["type"] for event in events)


@pytest.mark.parametrize("synchronized", [True, False])
async def test_alerts_and_expiry_markers(tmp_path: Path, synchronized: bool) -> None:
    clock = FakeClock(synchronized=synchronized)
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("stock", "alerts"))
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        await alerts.raise_("stock.low:slot-12", Severity.WARNING, "3 left", {"left": 3})
        await alerts.raise_(
            "stock.low:slot-12", Severity.CRITICAL, "épuisé", {"at": clock.utc_now()}
        )
        await alerts.raise_("uplink.refused:receipts", Severity.CRITICAL, "0x87")
        await alerts.clear("stock.low:slot-12", "restocked")
        await alerts.clear("uplink.refused:receipts")  # no clear message: absent
        change = StockChanged(
            slot="s-1",
            sku="A",
            kind="pick",
            before=3,
            after=2,
            delta=-1,
            confidence=1.0,
            grams=-200.1,
        )
        for _ in range(3):
            await outbox.append("stock", change)
            clock.advance(1)
        clock.advance(3600)
        await outbox.append("stock", change)
        assert await outbox.expire("stock", ttl_s=600) == 3
        events = await sent_events(outbox)
    assert _types(events) == {
        "alert.raised": 3,
        "alert.cleared": 2,
        "outbox.expired": 1,
        "stock.changed": 1,
    }
    stamped = [event for event in events if event["type"] != "outbox.expired"]  # the marker's
    assert all(("unsynced" in event) is not synchronized for event in stamped)  # ts is theirs
    assert set(_types(events)) - {"stock.changed"} == COVERED["alerts"]


async def test_shelves_service(tmp_path: Path) -> None:
    async with shelf(tmp_path) as s:
        await s.hold(10, 50 + 3 * UNIT)
        await s.hold(1, 50 + 3 * UNIT + 150, stable=False)
        await s.hold(8, 50 + 2 * UNIT)  # a pick, low stock
        await s.hold(1, 50 + UNIT, stable=False)
        await s.hold(8, 50 + 0.5 * UNIT)  # half an item: ambiguous
        await s.hold(1, 50, stable=False)
        await s.hold(8, 50)  # out of stock
        await s.hold(61, 50)  # one activity interval
        events = await sent_events(s.outbox)
    types = _types(events)
    assert COVERED["shelves"] <= set(types)
    assert {"alert.raised", "alert.cleared"} <= set(types)


async def test_presence_service(tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        await f.stay(60, ("rx-a", -55, {"beacon": cart(1)}), ("rx-b", -57, {"address": PHONE}))
        await f.stay(100)
        events = await sent_events(f.outbox)
    assert COVERED["presence"] <= set(_types(events))


async def test_price_downlink(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        [full] = batch(s.clock, 1, [price_item("a", "1.00"), price_item("b", "2.00")], kind="full")
        await s.receive(full)
        bad = [price_item("c", "one euro"), {"sku": None, "price": "1.00"}, {"sku": [1]}]
        [invalid] = batch(s.clock, 2, bad)
        await s.receive(invalid)
        items = [price_item(f"sku-{n:04}", "1.00", name="y" * 100) for n in range(300)]
        parts = batch(s.clock, 3, items, kind="full", max_message_bytes=16 * 1024)
        await s.receive(parts[0])
        s.clock.advance(601)
        await s.downlink.advance()  # the parts never came: rejected as incomplete
        events = await sent_events(s.outbox)
    rejected = [e for e in events if e["type"] == "price.rejected"]
    assert [e["version"] for e in rejected] == [2, 3]
    assert [p["item"] for p in rejected[0]["problems"]] == ["c", "null", "[1]"]
    assert set(_types(events)) == COVERED["prices"]


async def test_label_bindings_and_pipeline_receipts(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock, refuse={"L9"})
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await s.bindings.seed([("L0", "S0"), ("L1", "S1")])
        await s.bindings.bind("L2", "S2", "local")
        await s.bindings.bind("L9", "S0", "hq")
        start, end = later(clock, minutes=5), later(clock, minutes=10)
        await s.prices(
            [label_item("S0", "2.00"), label_item("S1", "3.00"), label_item("S2", "4.00")],
            kind="full",
            promotions=[promo("a", "S0", "1.00", start, end)],  # comes and goes while down
        )
        await s.settle()
        await s.pipeline.scheduler_pass()
        await s.pipeline.render_all()
        await s.pipeline.dispatch_once()  # L9 is unknown to the ESL system: failed for good
        await s.confirm_all(driver)
        await s.prices([label_item("S1", "3.50")])  # L1 changes again, before confirming
        await s.settle()
        await s.prices([label_item("S1", "3.60")])
        await s.settle()
        digest = (await s.job("L2"))["content_hash"]
        s.pipeline.on_reading("esl", driver.report("L2", LabelReportKind.FAILED, digest, "busy"))
        await s.pipeline.process_reports()
        await s.bindings.unbind("L2", "local")
    clock.advance(30 * 60)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await s.pipeline.scheduler_pass()  # the promotion's faces were never shown: expired
        await s.settle()
        await s.pipeline.pump_receipts()
        events = await sent_events(s.outbox)
    assert COVERED["labels"] <= set(_types(events))
