"""HQ's commands against a store's real command processor on a real broker: the harness of the
command tests of sync/ (the processor) and of the features that register commands."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from gateway.alerts import Alerts
from gateway.clock import FakeClock, isoformat_utc
from gateway.hq.tail import HqSettings
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.commands import (
    CommandProcessor,
    CommandRequest,
    CommandResult,
    CommandSpec,
    builtin_commands,
)
from gateway.sync.config import MqttConfig
from gateway.sync.link import InboundMessage, MqttLink
from gateway.sync.signing import Signer, Verifier
from tests.support.broker import Broker
from tests.sync.support import running, until
from tests.waiting import patience

KEY = Ed25519PrivateKey.generate()
SIGNER = Signer("hq-1", KEY)


@dataclass
class Store:
    db: Database
    processor: CommandProcessor
    alerts: Alerts
    link: MqttLink
    counted: list[int]


#: A feature's commands for the harness: built from the store's database, outbox and clock.
Specs = Callable[[Database, Outbox, FakeClock], Iterable[CommandSpec]]


@asynccontextmanager
async def store(
    tmp_path: Path, broker: Broker, *, signed: bool = True, specs: Specs | None = None
) -> AsyncIterator[Store]:
    """A store's command processor on ``broker``: the built-ins, ``count`` (state-changing,
    counted in ``Store.counted`` and a table) and ``specs``' commands, HQ's keys when
    ``signed``."""
    clock = FakeClock(wall=datetime.now(UTC))
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("alerts", "receipts"))
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        await db.write("CREATE TABLE counter (n INTEGER)")
        config = MqttConfig(host=broker.host, port=broker.port, tls=False, allow_plaintext=True)
        link = MqttLink(config=config, store_id="s1", boot=db.boot, clock=clock)
        processor = CommandProcessor(
            database=db,
            clock=clock,
            verifier=Verifier({"hq-1": KEY.public_key()} if signed else {}),
            store_id="s1",
            alerts=alerts,
        )
        counted: list[int] = []

        async def count(request: CommandRequest) -> CommandResult:
            counted.append(int(request.args.get("n", 1)))
            return CommandResult(
                {"counted": len(counted)}, [("INSERT INTO counter VALUES (?)", (len(counted),))]
            )

        async def describe() -> dict[str, Any]:
            return {"store": "s1"}

        async def announce() -> dict[str, Any] | None:
            return {"have_version": 7, "held_versions": []}

        for spec in builtin_commands(link=link, announce_prices=announce, describe=describe):
            processor.register(spec)
        for spec in specs(db, outbox, clock) if specs is not None else ():
            processor.register(spec)
        processor.register(CommandSpec("count", count, changes_state=True))
        processor.attach(link)
        async with running(link):
            await asyncio.wait_for(link.connected.wait(), patience(15))
            # HQ's commands reach the store from here on
            await until(lambda: broker.subscribed("retail/v1/s1/down/cmd/+", "storegw-s1"))
            yield Store(db, processor, alerts, link, counted)


def hq_settings(broker: Broker) -> HqSettings:
    """HQ's tools pointed at the test broker (plaintext, allowed explicitly)."""
    mqtt = {"host": broker.host, "port": broker.port, "tls": False, "allow_plaintext": True}
    return HqSettings.model_validate({"mqtt": mqtt})


def command(name: str, *, cid: str = "c-1", signer: Signer | None = SIGNER, **args: Any) -> bytes:
    now = datetime.now(UTC)
    payload = json.dumps(
        {
            "v": 1,
            "type": "command",
            "id": cid,
            "name": name,
            "args": args,
            "scope": {"stores": ["s1"]},
            "issued_at": isoformat_utc(now),
            "valid_until": isoformat_utc(now + timedelta(minutes=5)),
        }
    ).encode()
    return signer.wrap(payload) if signer else payload


class ReplyWatcher:
    def __init__(self, broker: Broker) -> None:
        self.replies: list[tuple[dict[str, Any], bytes | None]] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda _c, _u, m: self.replies.append(
            (json.loads(m.payload), getattr(m.properties, "CorrelationData", None))
        )
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("retail/v1/+/up/reply/#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(patience(10))  # no reply can slip past it

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def inbound(name: str, payload: bytes, reply_to: str | None) -> InboundMessage:
    return InboundMessage(f"retail/v1/s1/down/cmd/{name}", payload, 1, False, reply_to, b"corr")
