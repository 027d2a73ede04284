"""Price batches at hypermarket size: a 50 000-item full list in parts, across a broker
restart, applied once and atomically; and the work a big batch costs does not grow per item
(statements) nor wait for company that cannot come (the group-commit window)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.clock import FakeClock
from gateway.hq.prices import build_price_messages
from gateway.prices.downlink import PriceDownlink
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.config import MqttConfig
from gateway.sync.link import InboundMessage, MqttLink
from gateway.sync.signing import Verifier
from tests.prices.support import HQ_KEY, SIGNER, STREAMS, batch, item
from tests.support.broker import Broker
from tests.sync.support import running, until, within

HYPERMARKET = 50_000
TOPIC = "retail/v1/s1/down/prices"


def full_list(version: int, count: int = HYPERMARKET) -> list[dict[str, Any]]:
    """Every SKU priced differently in each version."""
    return [
        item(
            f"40{n:011d}",
            f"{version + n % 500}.{n % 100:02d}",
            unit_price=f"{version}.{n % 100:02d}",
            unit="kg",
            name=f"Product {n} 500 g",
        )
        for n in range(count)
    ]


@dataclass
class Gateway:
    db: Database
    outbox: Outbox
    downlink: PriceDownlink
    link: MqttLink | None = None

    async def receive(self, payload: bytes) -> None:
        await self.downlink.on_message(InboundMessage(TOPIC, payload, 1, False, None, None))

    async def receipts(self, kind: str, version: int) -> list[dict[str, Any]]:
        events = await self.outbox.read("receipts", after_seq=0, max_events=10**4, max_bytes=10**9)
        bodies = [json.loads(e.body) for e in events if e.type == kind]
        return [body for body in bodies if body["version"] == version]

    async def prices(self) -> dict[str, str]:
        rows = await self.db.fetchall("SELECT sku, price FROM price_book")
        return {r["sku"]: r["price"] for r in rows}


@asynccontextmanager
async def gateway(
    db_path: Path, clock: FakeClock, *, broker: Broker | None = None, **database: Any
) -> AsyncIterator[Gateway]:
    """The store's downlink on its database, behind a real MqttLink when ``broker``."""
    async with Database.running(db_path, clock=clock, **database) as db:
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        downlink = PriceDownlink(
            database=db,
            outbox=outbox,
            alerts=None,
            clock=clock,
            verifier=Verifier({"hq-1": HQ_KEY.public_key()}),
            store_id="s1",
        )
        await downlink.load()
        if broker is None:
            yield Gateway(db, outbox, downlink)
            return
        config = MqttConfig(
            host=broker.host, port=broker.port, tls=False, allow_plaintext=True, client_id="gw-s1"
        )
        link = MqttLink(config=config, store_id="s1", boot=db.boot, clock=clock)
        downlink.attach(link)
        async with running(link):
            await until(link.connected.is_set, 15)
            # HQ's first part must find the store subscribed (the broker drops it otherwise)
            await until(lambda: broker.subscribed("retail/v1/s1/down/prices", "gw-s1"))
            yield Gateway(db, outbox, downlink, link)


class Hq:
    """HQ's publisher: QoS 1, reconnecting by itself after the broker comes back."""

    def __init__(self, broker: Broker) -> None:
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hq", protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda *_: self.connected.set()
        self.client.on_disconnect = lambda *_: self.connected.clear()
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    async def publish(self, messages: list[bytes]) -> None:
        """Publish in order and wait for the broker's PUBACKs."""
        await until(self.connected.is_set, 30)
        infos = [self.client.publish(TOPIC, message, qos=1) for message in messages]
        await until(lambda: all(info.is_published() for info in infos), 60)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class BookWatcher:
    """Reads the book over and over while it runs: what a shelf label or `storegw prices`
    could see at any instant, as (SKUs, lowest version, highest version)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seen: set[tuple[int, int | None, int | None]] = set()
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        while not self.stopping.is_set():
            row = await self.db.fetchone(
                "SELECT count(*) AS n, min(version) AS lo, max(version) AS hi FROM price_book"
            )
            assert row is not None
            self.seen.add((int(row["n"]), row["lo"], row["hi"]))


@pytest.mark.slow
async def test_a_hypermarket_batch_split_by_a_broker_restart_applies_once_and_atomically(
    tmp_path: Path,
) -> None:
    # A broker that keeps sessions and queued messages across its restart, as in production.
    broker = Broker(tmp_path, extra=f"persistence true\npersistence_location {tmp_path}/\n")
    broker.start()
    hq: Hq | None = None
    try:
        issued = datetime.now(UTC)  # HQ signs with the real time
        clock = FakeClock(wall=issued)
        first = build_price_messages(
            full_list(1), version=1, kind="full", issued_at=issued, stores=["s1"], signer=SIGNER
        )
        second = build_price_messages(
            full_list(2), version=2, kind="full", issued_at=issued, stores=["s1"], signer=SIGNER
        )
        assert len(second) > 40  # a real split: the restart falls between parts
        after = batch(clock, 3, [item("40" + "0" * 11, "0.99")])
        hq = Hq(broker)
        async with gateway(tmp_path / "g.db", clock, broker=broker) as gw:
            assert gw.link is not None
            await hq.publish(first)
            await until(lambda: gw.downlink.head == 1, 60)
            watcher = BookWatcher(gw.db)
            async with asyncio.TaskGroup() as group:
                group.create_task(watcher.run(), name="test.book-watcher")
                try:
                    await hq.publish(second[: len(second) // 2])

                    async def parts_held() -> int:
                        row = await gw.db.fetchone(
                            "SELECT count(*) AS n FROM price_parts WHERE version = 2"
                        )
                        return int(row["n"]) if row is not None else 0

                    async with within(60):
                        while await parts_held() < len(second) // 4:
                            await asyncio.sleep(0.01)
                    # Mid-way through the version: the broker restarts (its queue kept).
                    with ThreadPoolExecutor(1) as executor:
                        loop = asyncio.get_running_loop()
                        await loop.run_in_executor(executor, broker.stop)
                        await loop.run_in_executor(executor, broker.start)
                    # HQ re-sends the whole version (it cannot know what arrived), then a delta:
                    # once that is applied, everything before it was handled.
                    await hq.publish(second)
                    await hq.publish(after)
                    await until(lambda: gw.downlink.head == 3, 60)
                finally:
                    watcher.stopping.set()
            assert gw.link.stats.reconnects >= 1  # the store did lose the broker mid-way
            # Never a mix: the book was all of v1 or all of v2 (then v3's one SKU on top).
            assert (HYPERMARKET, 1, 1) in watcher.seen
            assert (HYPERMARKET, 2, 2) in watcher.seen
            assert watcher.seen <= {(HYPERMARKET, 1, 1), (HYPERMARKET, 2, 2), (HYPERMARKET, 2, 3)}
            # Applied once, with one receipt; stored once; every SKU right.
            [applied] = await gw.receipts("price.applied", 2)
            assert applied["items"] == HYPERMARKET
            assert applied["parts"] == len(second)
            assert len(await gw.receipts("price.stored", 2)) == 1
            assert await gw.receipts("price.rejected", 2) == []
            expected = {i["sku"]: i["price"] for i in full_list(2)} | {"40" + "0" * 11: "0.99"}
            assert await gw.prices() == expected
            history = await gw.db.fetchone(
                "SELECT count(*) AS n FROM price_history WHERE version = 2"
            )
            assert history is not None
            assert history["n"] == HYPERMARKET
    finally:
        if hq is not None:
            hq.close()
        broker.stop()


async def test_a_big_batch_never_waits_for_the_group_commit_window(tmp_path: Path) -> None:
    """The link hands over the next part only once this one is committed: a part (and the
    apply) that waited for others to share its commit would wait for writes that cannot come.
    With a window of an hour, a batch of parts still goes through."""
    clock = FakeClock()
    async with gateway(tmp_path / "g.db", clock):
        pass  # the streams exist: opening them again writes nothing
    items = [item(f"sku-{n:05}", f"{n % 90 + 1}.99", name="n" * 40) for n in range(3000)]
    parts = batch(clock, 1, items, kind="full", max_message_bytes=48 * 1024)
    assert len(parts) >= 3
    async with gateway(tmp_path / "g.db", clock, commit_interval_s=3600) as gw:
        async with within(30):
            for part in parts:
                await gw.receive(part)
        assert gw.downlink.head == 1
        assert len(await gw.prices()) == 3000
        assert len(await gw.receipts("price.applied", 1)) == 1


async def test_applying_a_batch_runs_as_many_statements_for_3000_items_as_for_30(
    tmp_path: Path,
) -> None:
    """The book and its history take a batch's items set-based: the statements SQLite runs
    for an apply do not grow with the items (two per item made 50 000 items cost seconds)."""
    clock = FakeClock()
    async with gateway(tmp_path / "g.db", clock) as gw:
        traced: list[str] = []
        await gw.db._writer.set_trace_callback(traced.append)
        counts = []
        for version, count in ((1, 30), (2, 3000)):
            [message] = batch(
                clock, version, full_list(version, count), kind="full", max_message_bytes=2**20
            )
            traced.clear()
            await gw.receive(message)  # stored, then applied with its receipt
            assert gw.downlink.head == version
            counts.append(len(traced))
        await gw.db._writer.set_trace_callback(None)
        assert counts[0] == counts[1], counts
        assert await gw.prices() == {i["sku"]: i["price"] for i in full_list(2, 3000)}


async def test_a_rejected_part_of_a_big_batch_is_reported_after_the_parts_before_it_were_kept(
    tmp_path: Path,
) -> None:
    """Parts validated on receipt are not validated again; one bad part still rejects the
    whole version, every bad item listed, nothing applied."""
    clock = FakeClock()
    items = [item(f"sku-{n:05}", "1.00", name="n" * 40) for n in range(2000)]
    items[1500]["price"] = "1,00"
    items[1900]["currency"] = "euro"
    parts = batch(clock, 1, items, kind="full", max_message_bytes=32 * 1024)
    assert len(parts) >= 3
    async with gateway(tmp_path / "g.db", clock) as gw:
        for part in parts:
            await gw.receive(part)
        assert gw.downlink.head == 1  # consumed
        assert await gw.prices() == {}
        [rejected] = await gw.receipts("price.rejected", 1)
        assert {p["item"] for p in rejected["problems"]} == {"sku-01500", "sku-01900"}
        assert await gw.receipts("price.applied", 1) == []


async def test_parts_received_before_a_restart_are_validated_again_and_applied(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    items = [item(f"sku-{n:05}", f"{n % 9 + 1}.50", name="n" * 40) for n in range(2000)]
    parts = batch(clock, 1, items, kind="full", max_message_bytes=32 * 1024)
    async with gateway(tmp_path / "g.db", clock) as gw:
        for part in parts[:-1]:
            await gw.receive(part)
    async with gateway(tmp_path / "g.db", clock) as gw:  # a restart: nothing kept in memory
        await gw.receive(parts[-1])
        assert gw.downlink.head == 1
        assert await gw.prices() == {i["sku"]: i["price"] for i in items}


async def test_names_and_units_are_stored_exactly_as_validated_even_with_a_nul(
    tmp_path: Path,
) -> None:
    """The items go into the book through SQLite's JSON functions, which would cut a text at
    a NUL character: such an item is stored exactly all the same (and any other text too)."""
    clock = FakeClock()
    items = [
        item("a", "1.00", name="Milch\x00 3,5 %", unit_price="1.00", unit="l\x00"),
        item("b", "2.00", name='Saft "Orange" \\u0000 ½ l \u2028 🍊'),
        item("c", "3.00"),
    ]
    async with gateway(tmp_path / "g.db", clock) as gw:
        for part in batch(clock, 1, items, kind="full"):
            await gw.receive(part)
        rows = await gw.db.fetchall("SELECT sku, price, unit, name FROM price_book ORDER BY sku")
        assert [tuple(r) for r in rows] == [
            ("a", "1.00", "l\x00", "Milch\x00 3,5 %"),
            ("b", "2.00", None, 'Saft "Orange" \\u0000 ½ l \u2028 🍊'),
            ("c", "3.00", None, None),
        ]
        history = await gw.db.fetchall("SELECT sku FROM price_history ORDER BY sku")
        assert [r["sku"] for r in history] == ["a", "b", "c"]
