"""``MqttLink.subscribed``: set once the broker acknowledged every subscription of the current
connection (what ``hq push-prices`` waits for before it times the retained states' quiet)."""

from __future__ import annotations

from pathlib import Path

from gateway.clock import FakeClock
from gateway.sync.config import MqttConfig
from gateway.sync.link import InboundMessage, MqttLink
from tests.support.broker import Broker
from tests.sync.support import running, until


async def test_subscribed_follows_every_connection(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    try:
        config = MqttConfig(host=broker.host, port=broker.port, tls=False, allow_plaintext=True)
        link = MqttLink(config=config, store_id="s1", boot=1, clock=FakeClock())

        async def ignore(_message: InboundMessage) -> None:
            return None

        link.subscribe("down/prices", ignore)
        link.subscribe("down/cmd/+", ignore)
        assert not link.subscribed.is_set()
        async with running(link):
            await until(link.subscribed.is_set)
            assert broker.subscribed("retail/v1/s1/down/prices")
            assert broker.subscribed("retail/v1/s1/down/cmd/+")
            broker.kill()
            await until(lambda: not link.connected.is_set())
            assert not link.subscribed.is_set()
            broker.start()
            await until(link.subscribed.is_set)
            assert broker.subscribed("retail/v1/s1/down/cmd/+")  # this run of the broker
    finally:
        broker.stop()


async def test_a_link_without_subscriptions_is_subscribed_once_connected(
    mosquitto: Broker,
) -> None:
    config = MqttConfig(host=mosquitto.host, port=mosquitto.port, tls=False, allow_plaintext=True)
    link = MqttLink(config=config, store_id="s1", boot=1, clock=FakeClock())
    async with running(link):
        await until(link.subscribed.is_set)
        assert link.connected.is_set()
