"""The MQTT link against a real mosquitto: birth/will, PUBACKs, reason codes, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.clock import FakeClock
from gateway.errors import (
    LinkDownError,
    MalformedMessageError,
    PublishRefusedError,
    StorageFullError,
)
from gateway.sync.config import MqttConfig
from gateway.sync.link import InboundMessage, MqttLink
from tests.support.broker import Broker
from tests.sync.support import running, until
from tests.waiting import patience


def plain(broker: Broker, **overrides: Any) -> MqttConfig:
    return MqttConfig(
        host=broker.host, port=broker.port, tls=False, allow_plaintext=True, **overrides
    )


class Observer:
    """A plain paho client in its own thread, standing in for HQ."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append(m)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.ready.wait(patience(10))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_birth_publish_and_puback(mosquitto: Broker) -> None:
    observer = Observer(mosquitto, "retail/v1/s1/#")
    link = MqttLink(config=plain(mosquitto), store_id="s1", boot=7, clock=FakeClock())
    try:
        async with running(link):
            await asyncio.wait_for(link.connected.wait(), patience(15))
            await asyncio.gather(
                *(link.publish("retail/v1/s1/up/stock", f"m{n}".encode()) for n in range(50))
            )
            assert link.stats.last_puback_at is not None
            assert link.stats.as_dict()["connected"] is True
            await until(lambda: len(observer.messages) >= 51)
    finally:
        observer.close()
    births = [m for m in observer.messages if m.topic == "retail/v1/s1/state"]
    assert json.loads(births[0].payload) == {"online": True, "boot": 7}
    payloads = [m.payload for m in observer.messages if m.topic.endswith("up/stock")]
    assert payloads == [f"m{n}".encode() for n in range(50)]


async def test_last_will_when_the_gateway_vanishes(mosquitto: Broker) -> None:
    observer = Observer(mosquitto, "retail/v1/s1/state")
    link = MqttLink(
        config=plain(mosquitto, keepalive_s=5), store_id="s1", boot=3, clock=FakeClock()
    )
    try:
        async with running(link):
            await asyncio.wait_for(link.connected.wait(), patience(15))
            client = link._client
            assert client is not None
            sock = client.socket()
            assert sock is not None
            sock.close()  # the box loses power: no DISCONNECT packet
            await until(
                lambda: any(json.loads(m.payload)["online"] is False for m in observer.messages)
            )
    finally:
        observer.close()
    death = [
        json.loads(m.payload) for m in observer.messages if not json.loads(m.payload)["online"]
    ]
    assert death[0] == {"online": False, "boot": 3}


async def test_publish_while_disconnected_fails_fast(mosquitto: Broker) -> None:
    mosquitto.stop()
    link = MqttLink(config=plain(mosquitto), store_id="s1", boot=1, clock=FakeClock())
    async with running(link):
        with pytest.raises(LinkDownError):
            await link.publish("retail/v1/s1/up/stock", b"x")
        error = await until(lambda: link.stats.last_error)
        assert "cannot connect" in error


async def test_reconnects_after_a_broker_crash(mosquitto: Broker) -> None:
    link = MqttLink(config=plain(mosquitto), store_id="s1", boot=1, clock=FakeClock())
    async with running(link):
        await asyncio.wait_for(link.connected.wait(), patience(15))
        mosquitto.kill()
        await until(lambda: not link.connected.is_set())
        with pytest.raises(LinkDownError):
            await link.publish("retail/v1/s1/up/stock", b"x")
        mosquitto.start()
        await until(link.connected.is_set, timeout=30)
        await link.publish("retail/v1/s1/up/stock", b"after")
        assert link.stats.reconnects >= 1


async def test_running_out_of_file_descriptors_is_retried_then_reconnects(
    mosquitto: Broker,
) -> None:
    """socket() failing with EMFILE while reconnecting must be one more retry, shown in the
    link's last error, never an error that kills the link (and with it the daemon)."""
    link = MqttLink(
        config=plain(mosquitto), store_id="s1", boot=1, clock=FakeClock(), rng=random.Random(7)
    )
    async with running(link):
        await asyncio.wait_for(link.connected.wait(), 15)
        mosquitto.kill()
        await until(lambda: not link.connected.is_set())
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (3, hard))  # no new descriptor at all
        try:
            await until(lambda: "Too many open files" in (link.stats.last_error or ""))
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert link.stats.last_error_at is not None
        mosquitto.start()
        await until(link.connected.is_set, timeout=60)
        await link.publish("retail/v1/s1/up/stock", b"after")
    assert link.stats.last_error is None  # cleared by the reconnect
    assert link.stats.reconnects >= 2


async def test_refused_publish_raises_with_the_reason_code(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic write retail/v1/s1/state\ntopic write retail/v1/s1/up/allowed\n")
    broker = Broker(tmp_path, extra=f"acl_file {acl}")
    broker.start()
    try:
        link = MqttLink(config=plain(broker), store_id="s1", boot=1, clock=FakeClock())
        async with running(link):
            await asyncio.wait_for(link.connected.wait(), patience(15))
            await link.publish("retail/v1/s1/up/allowed", b"ok")
            with pytest.raises(PublishRefusedError) as caught:
                await link.publish("retail/v1/s1/up/denied", b"no")
            assert caught.value.reason_code == 0x87
    finally:
        broker.stop()


async def test_inbound_messages_reach_handlers_then_are_acked(mosquitto: Broker) -> None:
    received: list[InboundMessage] = []

    async def handler(message: InboundMessage) -> None:
        received.append(message)

    link = MqttLink(config=plain(mosquitto), store_id="s1", boot=1, clock=FakeClock())
    link.subscribe("down/#", handler)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    try:
        async with running(link):
            await asyncio.wait_for(link.connected.wait(), patience(15))
            await until(lambda: mosquitto.subscribed("retail/v1/s1/down/#"))
            # Another store's message first: had it been delivered, it would come before ours.
            publisher.publish("retail/v1/other/down/ack", b"not ours", qos=1).wait_for_publish(
                patience(5)
            )
            publisher.publish("retail/v1/s1/down/ack", b'{"seq":1}', qos=1).wait_for_publish(
                patience(5)
            )
            await until(lambda: len(received) >= 1)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    assert [m.payload for m in received] == [b'{"seq":1}']
    assert received[0].topic == "retail/v1/s1/down/ack"


async def test_tls_is_never_downgraded_to_plaintext(mosquitto: Broker) -> None:
    config = MqttConfig(host=mosquitto.host, port=mosquitto.port)  # TLS on, plaintext broker
    link = MqttLink(config=config, store_id="s1", boot=1, clock=FakeClock())
    async with running(link):
        await until(lambda: link.stats.last_error)
        assert not link.connected.is_set()
    assert link.stats.transport == "tls"


async def test_batch_subscriber_gets_what_queued_up_and_acks_it_all(mosquitto: Broker) -> None:
    batches: list[list[bytes]] = []
    singles: list[bytes] = []
    release = asyncio.Event()

    async def on_batch(messages: list[InboundMessage]) -> None:
        batches.append([m.payload for m in messages])
        await release.wait()  # busy: the rest queues up meanwhile

    async def on_single(message: InboundMessage) -> None:
        singles.append(message.payload)

    config = plain(mosquitto).model_copy(update={"client_id": "batch-consumer"})
    link = MqttLink(config=config, store_id="s1", boot=1, clock=FakeClock(), announce=False)
    link.subscribe_batches("up/#", on_batch)
    link.subscribe("down/#", on_single)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    try:
        async with running(link):
            await asyncio.wait_for(link.connected.wait(), patience(15))
            for topic_filter in ("retail/v1/s1/up/#", "retail/v1/s1/down/#"):
                await until(lambda f=topic_filter: mosquitto.subscribed(f, "batch-consumer"))
            publisher.publish("retail/v1/s1/up/stock", b"0", qos=1).wait_for_publish(patience(5))
            await until(lambda: len(batches) == 1)
            for n in range(1, 11):
                publisher.publish("retail/v1/s1/up/stock", str(n).encode(), qos=1)
            publisher.publish("retail/v1/s1/down/ack", b"single", qos=1).wait_for_publish(
                patience(5)
            )
            # All of them reached the link while the handler is busy (they wait in its inbox).
            await until(lambda: link._inbox.qsize() == 11)
            release.set()
            await until(lambda: sum(map(len, batches)) == 11 and singles == [b"single"])
        assert batches[0] == [b"0"]
        assert [p for batch in batches for p in batch] == [str(n).encode() for n in range(11)]
        assert len(batches) < 11  # the queued ones came together
        # Every one was acknowledged: a new session of the same client gets no redelivery.
        redelivered: list[list[bytes]] = []

        async def record(messages: list[InboundMessage]) -> None:
            redelivered.append([m.payload for m in messages])

        again = MqttLink(config=config, store_id="s1", boot=1, clock=FakeClock(), announce=False)
        again.subscribe_batches("up/#", record)
        async with running(again):
            await asyncio.wait_for(again.connected.wait(), patience(15))
            # A new message after the reconnect: a redelivery would come before it.
            publisher.publish("retail/v1/s1/up/stock", b"new", qos=1).wait_for_publish(patience(5))
            await until(lambda: any(b"new" in batch for batch in redelivered))
        assert redelivered == [[b"new"]]
    finally:
        publisher.disconnect()
        publisher.loop_stop()


async def test_a_lingering_batch_waits_for_messages_sent_one_by_one(mosquitto: Broker) -> None:
    """Group commit: with a linger, messages that arrive one after the other (each published
    only once the last was acknowledged by the broker) still come in one batch, up to its
    size; another route's message ends a batch at once. (The linger here is far longer than
    the test: the batch is ended by its size, not by time.)"""
    batches: list[list[bytes]] = []
    singles: list[bytes] = []

    async def on_batch(messages: list[InboundMessage]) -> None:
        batches.append([m.payload for m in messages])

    async def on_single(message: InboundMessage) -> None:
        singles.append(message.payload)

    config = plain(mosquitto).model_copy(update={"client_id": "linger-consumer"})
    link = MqttLink(config=config, store_id="s1", boot=1, clock=FakeClock(), announce=False)
    link.subscribe_batches("up/#", on_batch, max_batch=3, linger_s=600.0)
    link.subscribe("down/#", on_single)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    try:
        async with running(link):
            await asyncio.wait_for(link.connected.wait(), patience(15))
            for topic_filter in ("retail/v1/s1/up/#", "retail/v1/s1/down/#"):
                await until(lambda f=topic_filter: mosquitto.subscribed(f, "linger-consumer"))
            for n in range(3):
                info = publisher.publish("retail/v1/s1/up/stock", str(n).encode(), qos=1)
                await until(info.is_published)
            await until(lambda: len(batches) == 1)
            publisher.publish("retail/v1/s1/up/stock", b"3", qos=1)
            publisher.publish("retail/v1/s1/down/ack", b"single", qos=1)
            await until(lambda: len(batches) == 2 and singles == [b"single"])
        assert batches == [[b"0", b"1", b"2"], [b"3"]]
    finally:
        publisher.disconnect()
        publisher.loop_stop()


async def test_every_inbound_message_ends_in_an_ack_whatever_its_handler_does(
    mosquitto: Broker,
) -> None:
    """Item A: a handler that refuses (DownlinkError) or fails (a bug, here a RecursionError)
    must not leave the message unacknowledged — mosquitto stops delivering to a client with 20
    unacknowledged ones, and the persistent session would hand the poison back after a
    restart. Each is acknowledged and reported to on_refused; what follows flows."""
    seen: list[bytes] = []
    refused: list[tuple[str, bytes, str]] = []

    async def handler(message: InboundMessage) -> None:
        seen.append(message.payload)
        if message.payload.startswith(b"unreadable"):
            raise MalformedMessageError("nested deeper than 32 levels")
        if message.payload.startswith(b"bug"):
            raise RecursionError("maximum recursion depth exceeded")

    async def on_refused(topic_filter: str, message: InboundMessage, reason: str) -> None:
        refused.append((topic_filter, message.payload, reason))

    def new_link() -> MqttLink:
        config = plain(mosquitto).model_copy(update={"client_id": "poisoned"})
        link = MqttLink(config=config, store_id="s1", boot=1, clock=FakeClock())
        link.subscribe("down/#", handler)
        link.on_refused = on_refused
        return link

    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()

    async def probe(payload: bytes) -> None:
        """Publish until the handler sees it (the subscription may still be on its way)."""
        while payload not in seen:
            publisher.publish("retail/v1/s1/down/probe", payload, qos=1).wait_for_publish(5)
            with contextlib.suppress(AssertionError):
                await until(lambda: payload in seen, timeout=1.0)

    try:
        async with running(new_link()) as link:
            await asyncio.wait_for(link.connected.wait(), 15)
            await probe(b"subscribed")
            for n in range(25):
                publisher.publish("retail/v1/s1/down/ack", b"unreadable %d" % n, qos=1)
                publisher.publish("retail/v1/s1/down/cmd/ping", b"bug %d" % n, qos=1)
            publisher.publish("retail/v1/s1/down/prices", b"good", qos=1).wait_for_publish(5)
            await until(lambda: b"good" in seen)
        assert len(refused) == 50
        assert {topic for topic, _, _ in refused} == {"down/#"}
        assert {reason for _, payload, reason in refused if payload.startswith(b"bug")} == {
            "handler failed: RecursionError('maximum recursion depth exceeded')"
        }
        # The same session again: nothing comes back, the poison was acknowledged.
        before = len(seen)
        async with running(new_link()) as link:
            await asyncio.wait_for(link.connected.wait(), 15)
            await probe(b"after the restart")
        assert all(p.startswith((b"after", b"subscribed")) for p in seen[before:]), seen[before:]
    finally:
        publisher.disconnect()
        publisher.loop_stop()


@pytest.mark.timeout(150)
async def test_a_message_left_unacknowledged_by_a_storage_failure_is_taken_once_it_works(
    mosquitto: Broker,
) -> None:
    """A handler that cannot commit (the disk is full) leaves its message unacknowledged, so
    nothing HQ sent is lost. But mosquitto delivers at most 20 unacknowledged messages to a
    client: left for a next session that a healthy connection never starts, they would cut
    the store off from HQ (acks, prices, commands) long after the disk has room again. The
    link hands them to their handler again until they are taken, on the same connection."""
    disk_full = False
    attempted: list[bytes] = []
    taken: list[bytes] = []

    async def handler(message: InboundMessage) -> None:
        attempted.append(message.payload)
        if disk_full:
            raise StorageFullError("gateway.db", "write failed: database or disk is full")
        if message.payload not in taken:
            taken.append(message.payload)

    config = plain(mosquitto).model_copy(update={"client_id": "disk-full"})
    link = MqttLink(config=config, store_id="s1", boot=1, clock=FakeClock())
    link.subscribe("down/#", handler)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    try:
        async with running(link):
            await asyncio.wait_for(link.connected.wait(), 15)
            while b"subscribed" not in taken:  # the subscription may still be on its way
                publisher.publish("retail/v1/s1/down/probe", b"subscribed", qos=1)
                with contextlib.suppress(AssertionError):
                    await until(lambda: b"subscribed" in taken, timeout=1.0)
            disk_full = True
            parts = [b"part %d" % n for n in range(25)]
            for part in parts:
                publisher.publish("retail/v1/s1/down/prices", part, qos=1)
            # The broker stops at its in-flight limit, with every one of them refused.
            await until(lambda: len(set(attempted) & set(parts)) >= 20)
            disk_full = False  # room again
            publisher.publish("retail/v1/s1/down/ack", b"after", qos=1)
            await until(lambda: len(taken) == 27, timeout=90)
            assert set(taken) == {b"subscribed", b"after", *parts}
            assert link.stats.reconnects == 0  # taken on the same connection
    finally:
        publisher.disconnect()
        publisher.loop_stop()
