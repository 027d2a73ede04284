"""Publishing a fleet's batches (gateway/hq/push.py): every store once, its parts in order; a
store whose publish the link dropped is tried again when the link is back, a store the broker
refused is reported — against a small link that drops and refuses on cue."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.errors import LinkDownError, PublishRefusedError
from gateway.hq import publish as publish_module
from gateway.hq.prices import PriceParts
from gateway.hq.publish import Plan, new_link, publish_all, run_link, stop
from gateway.hq.tail import load_hq_config
from gateway.sync.link import InboundMessage
from tests.support.broker import Broker
from tests.waiting import patience, until


class DroppingLink:
    """Publishes succeed, except: the next ``drops`` fail as a dropped link would (the link is
    then down until the next publish attempt finds it back), and topics of ``refused`` stores
    are refused by the broker."""

    def __init__(self, *, drops: int = 0, refused: frozenset[str] = frozenset()) -> None:
        self.connected = asyncio.Event()
        self.connected.set()
        self.drops = drops
        self.refused = refused
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, topic: str, payload: bytes) -> None:
        await asyncio.sleep(0)  # a PUBACK is never synchronous
        if topic.split("/")[2] in self.refused:
            raise PublishRefusedError(topic, 0x87, "Not authorized")
        if self.drops:
            self.drops -= 1
            self.connected.clear()
            asyncio.get_running_loop().call_soon(self.connected.set)  # reconnected
            raise LinkDownError("disconnected")
        self.published.append((topic, payload))


def plan(stores: list[str], items: int) -> Plan:
    rows = [{"sku": f"sku{n}", "price": "1.00", "currency": "EUR"} for n in range(items)]
    parts = PriceParts.of(rows, signed=False, max_message_bytes=1024)  # several parts
    return Plan(dict.fromkeys(stores, 7), parts, "full", datetime(2026, 11, 23, tzinfo=UTC))


async def test_every_store_once_with_its_parts_in_order() -> None:
    fleet = plan([f"s{n}" for n in range(50)], items=40)
    link = DroppingLink()
    sent: list[tuple[str, int]] = []
    await publish_all(link, "retail/v1/", fleet, on_sent=lambda s, n: sent.append((s, n)))
    parts = len(fleet.parts.chunks)
    assert parts > 1
    assert len(link.published) == 50 * parts
    for store in fleet.versions:
        mine = [p for t, p in link.published if t == f"retail/v1/{store}/down/prices"]
        assert mine == fleet.messages(store)  # in order, nothing twice
    assert sent.count(("s0", parts)) == parts


async def test_a_dropped_link_is_waited_for_and_a_refusal_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publish_module, "RETRY_PAUSE_S", 0.0)
    fleet = plan(["a", "b", "c", "d"], items=3)
    link = DroppingLink(drops=3, refused=frozenset({"c"}))
    failed: dict[str, str] = {}
    await publish_all(link, "retail/v1/", fleet, on_failed=failed.__setitem__)
    assert {t.split("/")[2] for t, _ in link.published} == {"a", "b", "d"}
    assert len(link.published) == 3  # one part each, once each
    assert list(failed) == ["c"]
    assert "Not authorized" in failed["c"]


async def test_a_link_that_stays_down_gives_up_per_store_or_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publish_module, "RETRY_PAUSE_S", 0.0)
    fleet = plan(["a"], items=1)
    failed: dict[str, str] = {}
    await publish_all(DroppingLink(drops=100), "retail/v1/", fleet, on_failed=failed.__setitem__)
    assert failed == {"a": "disconnected"}
    with pytest.raises(ExceptionGroup) as raised:  # push_prices: the first failure ends it
        await publish_all(DroppingLink(drops=1), "retail/v1/", fleet)
    assert raised.group_contains(LinkDownError)


async def test_the_push_link_leaves_no_session_at_the_broker(
    tmp_path: Path, mosquitto: Broker
) -> None:
    """A one-shot push subscribes to every store's receipts: a session kept after it (a week,
    like a store's) would have the broker queue the fleet's receipts for nobody."""
    config = tmp_path / "hq.toml"
    config.write_text(
        f"[mqtt]\nhost = '{mosquitto.host}'\nport = {mosquitto.port}\ntls = false\n"
        f"allow_plaintext = true\n[hq]\ndatabase = '{tmp_path / 'hq.db'}'\n",
        encoding="utf-8",
    )
    settings = load_hq_config(config)
    link = new_link(settings)

    async def ignore(_message: InboundMessage) -> None:
        return None

    link.subscribe("up/receipts", ignore)
    task = await run_link(link, settings, patience(10))
    await until(lambda: mosquitto.subscribed("retail/v1/+/up/receipts"))
    await stop(task)
    resumed = threading.Event()
    present: list[bool] = []
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=link._client_id, protocol=mqtt.MQTTv5
    )

    def on_connect(_c: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, *_: object) -> None:
        present.append(flags.session_present)
        resumed.set()

    client.on_connect = on_connect
    client.connect(mosquitto.host, mosquitto.port, clean_start=False)
    client.loop_start()
    try:
        assert resumed.wait(patience(10))
        assert present == [False]
    finally:
        client.disconnect()
        client.loop_stop()
