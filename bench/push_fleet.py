"""A price push to 1 000 stores: signed, published pipelined, every store's receipt awaited.

HQ's real tool (``push_to_fleet``: versions taken in HQ's database, one signed batch per store,
published through the MQTT link, then each store's ``price.applied`` receipt awaited and
classified) against a local mosquitto. The stores are one paho client in a process of its
own that answers every complete batch on a store's topic with a ``price.applied`` receipt on
that store's ``up/receipts``, and ``resync`` with ``up/sync`` (the store side's own cost is
measured by bench/prices.py; bench/fleet.py runs real virtual stores). Timed: signing the
fleet's batches alone, and push → every store applied.

Baseline in the same run, interleaved: the push as it was before the fleet tool — per store,
its version read and written on its own, its batch built and signed from the items, published
and its PUBACK awaited before the next store — with the receipts counted by a bare subscriber.
Goal (issue 16): 1 000 stores all applied <= 60 s with the broker local.

    python bench/push_fleet.py        # BENCH_STORES=1000 BENCH_ITEMS=200 ROUNDS=2
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.uplink import free_port
from gateway.clock import SystemClock, isoformat_utc
from gateway.hq.consumer import HQ_MIGRATIONS
from gateway.hq.keys import generate_key
from gateway.hq.prices import PriceParts, build_price_messages
from gateway.hq.push import PricePush, push_to_fleet
from gateway.store.database import Database
from gateway.sync.link import MqttLink

STORES = int(os.environ.get("BENCH_STORES", "1000"))
ITEMS = int(os.environ.get("BENCH_ITEMS", "200"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
GOAL_S = 60.0


def start_broker(directory: Path, port: int) -> subprocess.Popen[bytes]:
    """A private mosquitto whose queue per client is not the limit: one client stands in for
    the whole fleet here, where every real store has a queue of its own (mosquitto's default,
    1 000 messages, would drop a big list's parts meant for a thousand stores)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    conf = directory / "m.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\nmax_queued_messages 1000000\n"
    )
    broker = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return broker
        time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def _stores_main(port: int, names: list[str], ready: Any) -> None:
    """Every store at once, in a process of its own (as stores are): births retained; a batch
    answered with ``price.applied`` once all its parts are in; ``resync`` with ``up/sync``."""
    applied: dict[str, int] = {}
    parts: dict[tuple[str, int], set[int]] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(100)

    def on_connect(client: mqtt.Client, *_: object) -> None:
        client.subscribe([("retail/v1/+/down/prices", 1), ("retail/v1/+/down/cmd/resync", 1)])

    def on_message(client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        store = message.topic.split("/")[2]
        now = isoformat_utc(datetime.now(UTC))
        if message.topic.endswith("/resync"):
            sync = {
                "v": 1, "type": "sync", "store": store, "have_version": applied.get(store, 0),
                "held_versions": [], "sent_at": now,
            }  # fmt: skip
            client.publish(f"retail/v1/{store}/up/sync", json.dumps(sync), qos=1)
            return
        wrapper = json.loads(message.payload)
        batch = json.loads(base64.b64decode(wrapper["payload"]))
        got = parts.setdefault((store, batch["version"]), set())
        got.add(batch["part"])
        if len(got) < batch["parts"]:
            return
        applied[store] = max(applied.get(store, 0), batch["version"])
        receipt = {
            "v": 1, "type": "events", "store": store, "stream": "receipts",
            "epoch": "0123456789abcdef", "boot": 1, "seq_from": batch["version"],
            "seq_to": batch["version"], "sent_at": now,
            "events": [{
                "seq": batch["version"], "id": f"{store}-{batch['version']}", "ts": now,
                "type": "price.applied", "version": batch["version"], "kind": batch["kind"],
                "parts": batch["parts"], "items": 0, "deleted": 0,
                "promotions": 0, "cancelled_promotions": 0, "superseded": [],
            }],
        }  # fmt: skip
        client.publish(f"retail/v1/{store}/up/receipts", json.dumps(receipt), qos=1)

    client.on_connect = on_connect
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    for name in names:
        birth = json.dumps({"online": True, "boot": 1}).encode()
        client.publish(f"retail/v1/{name}/state", birth, qos=1, retain=True)
    client.loop_forever()


class Receipts:
    """The baseline's view of "applied": every store's highest ``price.applied`` version."""

    def __init__(self, port: int) -> None:
        self.applied: dict[str, int] = {}
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        ready = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe("retail/v1/+/up/receipts", qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        ready.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        store = message.topic.split("/")[2]
        version = json.loads(message.payload)["events"][0]["version"]
        with self.lock:
            self.applied[store] = max(self.applied.get(store, 0), version)
        self.changed.set()

    def all_applied(self, versions: dict[str, int]) -> bool:
        with self.lock:
            return all(self.applied.get(s, 0) >= v for s, v in versions.items())

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def serial_push(
    push: PricePush, names: list[str], responder: Receipts
) -> tuple[float, float]:
    """The push before the fleet tool; returns (seconds to publish, seconds to all applied)."""
    settings = push.settings
    clock = SystemClock()
    start = time.perf_counter()
    versions: dict[str, int] = {}
    async with Database.running(
        settings.hq.database, clock=clock, migrations=HQ_MIGRATIONS
    ) as database:
        mqtt_config = settings.mqtt.model_copy(update={"client_id": "bench-serial"})
        link = MqttLink(config=mqtt_config, store_id="hq-push", boot=0, clock=clock, announce=False)
        task = asyncio.create_task(link.run())
        await link.connected.wait()
        for store in names:
            row = await database.fetchone(
                "SELECT version FROM hq_price_versions WHERE store = ?", (store,)
            )
            version = (int(row["version"]) if row is not None else 0) + 1
            messages = build_price_messages(
                push.items, version=version, kind="full", issued_at=clock.utc_now(),
                stores=[store], signer=push.signer,
            )  # fmt: skip
            await database.write(
                "INSERT INTO hq_price_versions VALUES (?, ?, ?) ON CONFLICT (store) "
                "DO UPDATE SET version = excluded.version, pushed_at = excluded.pushed_at",
                (store, version, isoformat_utc(clock.utc_now())),
            )
            for message in messages:
                await link.publish(f"retail/v1/{store}/down/prices", message)
            versions[store] = version
        published = time.perf_counter() - start
        while not responder.all_applied(versions):
            await asyncio.to_thread(responder.changed.wait, 1.0)
            responder.changed.clear()
        applied = time.perf_counter() - start
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return published, applied


def signing_only(push: PricePush, names: list[str]) -> float:
    start = time.perf_counter()
    parts = PriceParts.of(push.items, signed=True, max_message_bytes=128 * 1024)
    now = datetime.now(UTC)
    for n, store in enumerate(names, 1):
        parts.messages(version=n, kind="full", issued_at=now, stores=[store], signer=push.signer)
    return time.perf_counter() - start


def main() -> None:
    names = [f"store-{n:04d}" for n in range(STORES)]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        port = free_port()
        broker = start_broker(directory, port)
        try:
            generate_key(directory / "hq.key", "hq-bench")
            config = directory / "hq.toml"
            config.write_text(
                f"[mqtt]\nhost = '127.0.0.1'\nport = {port}\ntls = false\n"
                f"allow_plaintext = true\n[hq]\ndatabase = '{directory / 'hq.db'}'\n"
                f"[signing]\nkey_file = '{directory / 'hq.key'}'\nkid = 'hq-bench'\n",
                encoding="utf-8",
            )
            prices = directory / "prices.csv"
            prices.write_text(
                "sku,price,currency,name\n"
                + "".join(f"40{n:011d},{n % 90 + 1}.99,EUR,Item {n}\n" for n in range(ITEMS)),
                encoding="utf-8",
            )
            push = PricePush.load(config, prices)
            context = multiprocessing.get_context("spawn")
            ready = context.Event()
            stores = context.Process(target=_stores_main, args=(port, names, ready), daemon=True)
            stores.start()
            ready.wait(30)
            responder = Receipts(port)
            print(f"{STORES} stores, {ITEMS} items per batch, {ROUNDS} round(s), local mosquitto")
            try:
                for round_ in range(1, ROUNDS + 1):
                    published, applied = asyncio.run(serial_push(push, names, responder))
                    print(
                        f"  round {round_} baseline (serial push): published {published:6.2f} s,"
                        f" all applied {applied:6.2f} s"
                    )
                    start = time.perf_counter()
                    summary = asyncio.run(
                        push_to_fleet(push, kind="full", stores=names, deadline_s=300)
                    )
                    fleet_s = time.perf_counter() - start
                    counts = {k: v for k, v in summary.counts.items() if v}
                    print(
                        f"  round {round_} push_to_fleet:         all applied {fleet_s:6.2f} s"
                        f" {counts}  ratio {applied / fleet_s:5.1f}x faster"
                        f"  (goal <= {GOAL_S:g} s: {'met' if fleet_s <= GOAL_S else 'MISSED'})"
                    )
                    signed = signing_only(push, names)
                    print(f"  round {round_} signing {STORES} batches alone: {signed:6.2f} s")
            finally:
                responder.stop()
                stores.terminate()
                stores.join()
        finally:
            broker.terminate()
            broker.wait()


if __name__ == "__main__":
    main()
