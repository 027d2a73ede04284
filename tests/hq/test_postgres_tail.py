"""``hq tail`` on PostgreSQL in-process with real gateways: a store restoring an old database,
as two consumers sharing the load see it — the restored store re-uses seqs HQ holds (conflicts,
the held events kept), HQ's committed watermark gives the restore away, and the store re-sends
under a new epoch that HQ takes from seq 1, every event once; and the JSON lines it prints."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from paho.mqtt import publish as paho_publish
from paho.mqtt.enums import MQTTProtocolVersion

from gateway.clock import SystemClock
from gateway.hq.tail import HqConsumerConfig, HqSettings, tail
from gateway.sync.config import MqttConfig
from tests.hq.support import envelope, pg_rows
from tests.store.probes import probes
from tests.support.broker import Broker
from tests.sync.support import drained, gateway, until

pytestmark = pytest.mark.slow


@asynccontextmanager
async def shared_consumers(url: str, broker: Broker, count: int) -> AsyncIterator[None]:
    tasks = []
    for n in range(count):
        settings = HqSettings(
            mqtt=MqttConfig(
                host=broker.host,
                port=broker.port,
                tls=False,
                allow_plaintext=True,
                client_id=f"hq-{n}",
            ),
            hq=HqConsumerConfig(database=url, share_group="ingest"),
        )
        tasks.append(asyncio.create_task(tail(settings, clock=SystemClock(), out=None)))
    try:
        for n in range(count):
            await until(lambda n=n: broker.subscribed("$share/ingest/retail/v1/+/up/#", f"hq-{n}"))
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _stock(url: str) -> list[tuple[str, int, int]]:
    return [
        (epoch, seq, int(n))
        for epoch, seq, n in pg_rows(
            url,
            "SELECT epoch, seq, event ->> 'n' FROM hq_events WHERE stream = 'stock' "
            "ORDER BY received_at, epoch, seq",
        )
    ]


async def test_a_restored_store_starts_a_new_epoch_and_hq_keeps_every_event_once(
    tmp_path: Path, mosquitto: Broker, postgres_url: str
) -> None:
    database = tmp_path / "state" / "g.db"
    database.parent.mkdir()
    backup = tmp_path / "backup"
    async with shared_consumers(postgres_url, mosquitto, 2):
        async with gateway(database, mosquitto) as gw:
            await gw.outbox.append_many("stock", probes("s", ({"n": n} for n in range(100))))
            assert await drained(gw.outbox) == 0
            epoch = gw.outbox.epoch
        shutil.copytree(database.parent, backup)  # the whole state directory, high water too
        async with gateway(database, mosquitto) as gw:
            await gw.outbox.append_many("stock", probes("s", ({"n": n} for n in range(100, 300))))
            assert await drained(gw.outbox) == 0
        shutil.rmtree(database.parent)
        shutil.copytree(backup, database.parent)
        async with gateway(database, mosquitto) as gw:
            assert gw.outbox.epoch_of("stock") == epoch  # nothing to notice at open
            await gw.outbox.append_many("stock", probes("s", ({"n": n} for n in range(1000, 1150))))
            await until(lambda: gw.outbox.epoch_of("stock") != epoch)
            assert await drained(gw.outbox, 60) == 0
            new_epoch = gw.outbox.epoch_of("stock")
    rows = _stock(postgres_url)
    old = [(seq, n) for e, seq, n in rows if e == epoch]
    new = [(seq, n) for e, seq, n in rows if e == new_epoch]
    assert old == [(seq, seq - 1) for seq in range(1, 301)]  # the held events kept
    assert new == [(seq, 999 + seq) for seq in range(1, 151)]
    marks = pg_rows(postgres_url, "SELECT epoch, seq FROM hq_watermarks WHERE stream = 'stock'")
    assert sorted(marks) == sorted([(epoch, 300), (new_epoch, 150)])
    conflicts = pg_rows(
        postgres_url, "SELECT min(seq), max(seq), count(*) FROM hq_conflicts WHERE epoch = %s",
        (epoch,),
    )  # fmt: skip
    assert conflicts[0][2] > 0  # the restored store re-used seqs HQ held, until HQ's ack
    assert conflicts[0][0] >= 101
    assert conflicts[0][1] <= 250


async def test_hq_tail_on_postgres_prints_each_new_event_as_a_json_line(
    tmp_path: Path, mosquitto: Broker, postgres_url: str
) -> None:
    out = io.StringIO()
    settings = HqSettings(
        mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, tls=False, allow_plaintext=True),
        hq=HqConsumerConfig(database=postgres_url),
    )
    task = asyncio.create_task(tail(settings, clock=SystemClock(), out=out), name="hq")
    try:
        await until(lambda: mosquitto.subscribed("retail/v1/+/up/#"))
        async with gateway(tmp_path / "g.db", mosquitto) as gw:
            await gw.outbox.append_many("stock", probes("s", ({"n": n} for n in range(10))))
            assert await drained(gw.outbox) == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    stock = [line for line in lines if line["stream"] == "stock"]
    assert [(line["store"], line["seq"], line["n"]) for line in stock] == [
        ("s1", n + 1, n) for n in range(10)
    ]


_S1_STOCK = "SELECT watermark FROM hq_marks WHERE store = 's1' AND stream = 'stock'"


def _publish(broker: Broker, messages: list[tuple[str, bytes]]) -> None:
    """QoS 1 publishes, in order, from a plain client (a store's credentials, on its topics)."""
    paho_publish.multiple(
        [{"topic": topic, "payload": payload, "qos": 1} for topic, payload in messages],
        hostname=broker.host,
        port=broker.port,
        protocol=MQTTProtocolVersion.MQTTv5,
    )


async def test_an_envelope_naming_another_store_than_its_topic_is_refused(
    mosquitto: Broker, postgres_url: str
) -> None:
    """The broker's ACL lets a store publish on its own topics only; HQ must hold the envelope
    to the topic it came on, or a store could write (and have HQ ack) another store's seqs —
    and the other store's real events would then be conflicts, acked and lost."""
    settings = HqSettings(
        mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, tls=False, allow_plaintext=True),
        hq=HqConsumerConfig(database=postgres_url),
    )
    task = asyncio.create_task(tail(settings, clock=SystemClock(), out=None), name="hq")
    try:
        await until(lambda: mosquitto.subscribed("retail/v1/+/up/#"))
        _publish(
            mosquitto,
            [
                ("retail/v1/s1/up/stock", envelope([1, 2], store="s2")),
                ("retail/v1/s1/up/stock", envelope([1, 2], stream="alerts")),
                ("retail/v1/s1/up/stock", envelope([1])),
            ],
        )
        await until(lambda: pg_rows(postgres_url, _S1_STOCK) == [(1,)])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert pg_rows(postgres_url, "SELECT store, stream, seq FROM hq_events") == [("s1", "stock", 1)]
    assert pg_rows(postgres_url, "SELECT store, stream, seq FROM hq_watermarks") == [
        ("s1", "stock", 1)
    ]
