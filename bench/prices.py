"""A hypermarket's full price list through the store's downlink: 50 000 items, signed, in parts.

HQ (a bare paho client) publishes the parts of a full batch to a local mosquitto; the store —
the real MqttLink and PriceDownlink on a real database, wired as the daemon wires them —
receives every part, verifies its signature, validates it, commits it, acknowledges it, and
applies the version (book, history and ``price.applied`` receipt in one transaction). Timed
from HQ's first publish to the last part's acknowledgement with the version applied, twice:
into an empty book, then a full list in which every price changes. Building and signing the
parts is HQ's work, done before the clock starts.

Baselines measured in the same run on the same payloads: the bare ``json.loads`` of them (the
least any reader does), and bare MQTT delivery (a paho subscriber, QoS 1, same broker).
Goal (issue 12): <= 2 s for 50 000 items.

    python bench/prices.py            # BENCH_ITEMS=50000 by default
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.uplink import free_port, start_broker
from gateway.alerts import Alerts
from gateway.clock import SystemClock
from gateway.hq.prices import build_price_messages
from gateway.prices.downlink import PriceDownlink
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.config import MqttConfig
from gateway.sync.link import InboundMessage, MqttLink
from gateway.sync.signing import Signer, Verifier

ITEMS = int(os.environ.get("BENCH_ITEMS", "50000"))
GOAL_S = 2.0
STORE = "s1"
TOPIC = f"retail/v1/{STORE}/down/prices"
KEY = Ed25519PrivateKey.generate()


def price_list(version: int) -> list[dict[str, str]]:
    """Every item priced differently from one version to the next."""
    return [
        {
            "sku": f"40{n:011d}",
            "price": f"{version + n % 500}.{n % 100:02d}",
            "currency": "EUR",
            "unit_price": f"{(version + n % 500) * 2}.{n % 100:02d}",
            "unit": "kg",
            "name": f"Product {n} 500 g",
        }
        for n in range(ITEMS)
    ]


def hq_messages(version: int) -> list[bytes]:
    return build_price_messages(
        price_list(version),
        version=version,
        kind="full",
        issued_at=datetime.now(UTC),
        stores=[STORE],
        signer=Signer("hq-1", KEY),
    )


class Publisher:
    """HQ: a bare paho client publishing at QoS 1 (window 20, as the broker allows)."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(20)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, messages: list[bytes]) -> None:
        for info in [self.client.publish(topic, message, qos=1) for message in messages]:
            info.wait_for_publish(60)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bare_delivery(port: int, messages: list[bytes]) -> float:
    """Seconds from the first publish until a bare paho subscriber has every message."""
    received = threading.Event()
    count = 0

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal count
        count += 1
        if count == len(messages):
            received.set()

    subscribed = threading.Event()
    subscriber = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscriber.on_message = on_message
    subscriber.on_subscribe = lambda *_: subscribed.set()
    subscriber.connect("127.0.0.1", port)
    subscriber.subscribe("bench/bare", qos=1)
    subscriber.loop_start()
    publisher = Publisher(port)
    try:
        subscribed.wait(10)
        started = time.perf_counter()
        publisher.publish("bench/bare", messages)
        if not received.wait(60):
            raise RuntimeError(f"bare delivery: {count} of {len(messages)} messages")
        return time.perf_counter() - started
    finally:
        publisher.close()
        subscriber.disconnect()
        subscriber.loop_stop()


async def store_run(port: int, directory: Path, versions: list[list[bytes]]) -> list[float]:
    """The store receiving each version; seconds from HQ's first publish to the last part
    acknowledged with the version applied."""
    clock = SystemClock()
    async with Database.running(directory / "gateway.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("stock", "dwell", "receipts", "alerts"))
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        downlink = PriceDownlink(
            database=db,
            outbox=outbox,
            alerts=alerts,
            clock=clock,
            verifier=Verifier({"hq-1": KEY.public_key()}),
            store_id=STORE,
        )
        await downlink.load()
        config = MqttConfig(host="127.0.0.1", port=port, tls=False, allow_plaintext=True)
        link = MqttLink(config=config, store_id=STORE, boot=db.boot, clock=clock)
        handled = 0
        all_handled = asyncio.Event()
        expected = 0

        async def on_message(message: InboundMessage) -> None:
            nonlocal handled
            await downlink.on_message(message)
            handled += 1  # the link acknowledges it as this returns
            if handled == expected:
                all_handled.set()

        link.subscribe("down/prices", on_message)
        seconds = []
        async with asyncio.TaskGroup() as group:
            task = group.create_task(link.run(), name="mqtt.link")
            await link.connected.wait()
            await asyncio.sleep(0.5)  # subscribed
            publisher = Publisher(port)
            try:
                for number, messages in enumerate(versions, start=1):
                    handled, expected = 0, len(messages)
                    all_handled.clear()
                    started = time.perf_counter()
                    sending = asyncio.to_thread(publisher.publish, TOPIC, messages)
                    await asyncio.gather(sending, all_handled.wait())
                    seconds.append(time.perf_counter() - started)
                    if downlink.head != number:
                        raise RuntimeError(f"v{number} not applied (head v{downlink.head})")
            finally:
                publisher.close()
                task.cancel()
        rows = await db.fetchone("SELECT count(*) AS n FROM price_book")
        if rows is None or rows["n"] != ITEMS:
            raise RuntimeError(f"the book holds {rows and rows['n']} SKUs, not {ITEMS}")
    return seconds


def main() -> None:
    versions = [hq_messages(1), hq_messages(2)]
    first = versions[0]
    size = sum(map(len, first))
    print(
        f"a full price list of {ITEMS:,} items: {len(first)} signed parts, "
        f"{size / 1e6:.1f} MB (built and signed by HQ before the clock starts)"
    )
    started = time.perf_counter()
    for message in first:
        json.loads(message)
    loads_s = time.perf_counter() - started
    print(f"baseline: json.loads of the {len(first)} payloads: {loads_s:.4f} s")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_broker(Path(tmp), port)
        try:
            bare_s = bare_delivery(port, first)
            print(f"baseline: bare paho delivery of the {len(first)} payloads: {bare_s:.3f} s")
            results = asyncio.run(store_run(port, Path(tmp), versions))
        finally:
            broker.terminate()
            broker.wait()
    for label, seconds in zip(("into an empty book", "every price changed"), results, strict=True):
        print(
            f"storegw, received → verified → validated → committed → acked → applied, "
            f"{label}: {seconds:.2f} s = {ITEMS / seconds:,.0f} items/s "
            f"({seconds / loads_s:,.0f}x json.loads, {seconds / bare_s:.1f}x bare delivery)"
        )
    worst = max(results)
    verdict = "met" if worst <= GOAL_S else "NOT met"
    print(f"goal <= {GOAL_S:g} s for {ITEMS:,} items: {verdict} (slowest run {worst:.2f} s)")


if __name__ == "__main__":
    main()
