"""Price batches over a real broker: pushed by the HQ tool, acked only after the commit."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.clock import FakeClock
from gateway.hq.keys import generate_key
from gateway.hq.prices import build_price_messages
from gateway.hq.push import PricePush, push_prices
from gateway.prices.downlink import PriceDownlink
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.config import MqttConfig
from gateway.sync.link import MqttLink
from gateway.sync.signing import Signer, Verifier, decode_public_key
from tests.support.broker import Broker
from tests.sync.support import running, until
from tests.waiting import patience

STREAMS = ("stock", "dwell", "receipts", "alerts")


def hq_setup(tmp_path: Path, broker: Broker) -> tuple[Path, Verifier]:
    public = generate_key(tmp_path / "hq.key", "hq-1")
    config = tmp_path / "hq.toml"
    config.write_text(
        f"[mqtt]\nhost = '{broker.host}'\nport = {broker.port}\ntls = false\n"
        f"allow_plaintext = true\n[hq]\ndatabase = '{tmp_path / 'hq.db'}'\n"
        f"[signing]\nkey_file = '{tmp_path / 'hq.key'}'\nkid = 'hq-1'\n"
        "[groups]\nnorth = ['s1', 's2']\n",
        encoding="utf-8",
    )
    return config, Verifier({"hq-1": decode_public_key(public)})


def price_list(tmp_path: Path, name: str, rows: list[tuple[str, str]]) -> Path:
    path = tmp_path / name
    path.write_text(
        "sku,price,currency\n" + "".join(f"{sku},{price},EUR\n" for sku, price in rows),
        encoding="utf-8",
    )
    return path


@asynccontextmanager
async def store_gateway(
    db_path: Path, broker: Broker, verifier: Verifier
) -> AsyncIterator[tuple[Database, PriceDownlink, MqttLink]]:
    clock = FakeClock(wall=datetime.now(UTC))  # HQ's tool signs with the real time
    async with Database.running(db_path, clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        downlink = PriceDownlink(
            database=db,
            outbox=outbox,
            alerts=None,
            clock=clock,
            verifier=verifier,
            store_id="s1",
        )
        await downlink.load()
        config = MqttConfig(
            host=broker.host, port=broker.port, tls=False, allow_plaintext=True, client_id="gw-s1"
        )
        link = MqttLink(config=config, store_id="s1", boot=db.boot, clock=clock)
        downlink.attach(link)
        async with running(link):
            await asyncio.wait_for(link.connected.wait(), patience(15))
            yield db, downlink, link


async def prices(db: Database) -> dict[str, str]:
    rows = await db.fetchall("SELECT sku, price FROM price_book ORDER BY sku")
    return {r["sku"]: r["price"] for r in rows}


def unacknowledged(caplog: pytest.LogCaptureFixture, topic: str) -> bool:
    """Whether the link said a message on ``topic`` could not be taken and stays unacked
    (the broker redelivers it to the next session; this one tries it again later)."""
    return any(
        record.name == "gateway.sync.link"
        and "left unacknowledged" in record.getMessage()
        and topic in record.getMessage()
        for record in caplog.records
    )


async def test_pushed_batches_are_applied_and_a_failed_commit_means_redelivery(
    tmp_path: Path, mosquitto: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    config, verifier = hq_setup(tmp_path, mosquitto)
    db_path = tmp_path / "g.db"
    full = PricePush.load(config, price_list(tmp_path, "a.csv", [("a", "1.00"), ("b", "2.00")]))
    async with store_gateway(db_path, mosquitto, verifier) as (db, downlink, _link):
        await until(lambda: mosquitto.subscribed("retail/v1/s1/down/prices", "gw-s1"))
        assert await push_prices(full, kind="full", groups=["north"]) == {"s1": 1, "s2": 1}
        await until(lambda: downlink.head == 1)
        assert await prices(db) == {"a": "1.00", "b": "2.00"}
        # Storage goes away before the next batch arrives: it must not be acknowledged.
        await db.close()
        delta = PricePush.load(config, price_list(tmp_path, "b.csv", [("b", "2.50")]))
        assert await push_prices(delta, kind="delta", stores=["s1"]) == {"s1": 2}
        await until(lambda: unacknowledged(caplog, "retail/v1/s1/down/prices"))  # delivered
        assert downlink.head == 1
    # The gateway comes back (same session): the broker redelivers the unacknowledged batch.
    async with store_gateway(db_path, mosquitto, verifier) as (db, downlink, _link):
        await until(lambda: downlink.head == 2, 20)
        assert await prices(db) == {"a": "1.00", "b": "2.50"}


async def test_a_gap_sends_a_resync_request_up(tmp_path: Path, mosquitto: Broker) -> None:
    config, verifier = hq_setup(tmp_path, mosquitto)
    requests: list[dict[str, Any]] = []
    subscribed = threading.Event()
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.on_connect = lambda c, *_: c.subscribe("retail/v1/+/up/sync", qos=1)
    watcher.on_subscribe = lambda *_: subscribed.set()
    watcher.on_message = lambda _c, _u, m: requests.append(json.loads(m.payload))
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.loop_start()
    try:
        assert subscribed.wait(patience(10))
        async with store_gateway(tmp_path / "g.db", mosquitto, verifier) as (db, downlink, _):
            await until(lambda: mosquitto.subscribed("retail/v1/s1/down/prices", "gw-s1"))
            push = PricePush.load(config, price_list(tmp_path, "a.csv", [("a", "1.00")]))
            await push_prices(push, kind="full", stores=["s1"])  # v1
            await until(lambda: downlink.head == 1)
            # v2 went missing on the way; v3 arrives.
            signer = Signer.from_pem("hq-1", (tmp_path / "hq.key").read_bytes())
            [v3] = build_price_messages(
                [{"sku": "a", "price": "3.00", "currency": "EUR"}],
                version=3,
                kind="delta",
                issued_at=datetime.now(UTC),  # as HQ signs: the real time
                stores=["s1"],
                signer=signer,
            )
            watcher.publish("retail/v1/s1/down/prices", v3, qos=1).wait_for_publish(patience(5))
            await until(lambda: bool(requests))
            assert requests[0]["have_version"] == 1
            assert requests[0]["held_versions"] == [3]
            assert downlink.head == 1
            assert await prices(db) == {"a": "1.00"}
    finally:
        watcher.disconnect()
        watcher.loop_stop()
