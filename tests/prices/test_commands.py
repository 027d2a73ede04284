"""Commands from HQ: signed when they change state, executed once, answered where allowed."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from gateway.alerts import Alerts
from gateway.clock import FakeClock, isoformat_utc
from gateway.commands import (
    COMMAND_ALERT,
    CommandProcessor,
    CommandRequest,
    CommandResult,
    CommandSpec,
    binding_commands,
    builtin_commands,
)
from gateway.errors import MalformedMessageError
from gateway.hq.cmd import parse_command_args, send_command
from gateway.hq.tail import HqSettings
from gateway.labels.bindings import LabelBindings
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.config import MqttConfig
from gateway.sync.link import InboundMessage, MqttLink
from gateway.sync.signing import Signer, Verifier
from tests.conftest import Broker
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


@asynccontextmanager
async def store(tmp_path: Path, broker: Broker, *, signed: bool = True) -> AsyncIterator[Store]:
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
        for spec in binding_commands(LabelBindings(db, outbox, clock)):
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


async def test_hq_tool_round_trip_over_the_broker(tmp_path: Path, mosquitto: Broker) -> None:
    settings = hq_settings(mosquitto)
    async with store(tmp_path, mosquitto):
        reply = await send_command(
            settings, "s1", "ping", {}, signer=SIGNER, timeout_s=patience(20)
        )
        assert reply["ok"] is True
        assert reply["result"] == {"pong": True, "store": "s1"}
        reply = await send_command(
            settings, "s1", "resync", {}, signer=None, timeout_s=patience(20)
        )
        assert reply["result"]["have_version"] == 7  # read-only: may come unsigned
        reply = await send_command(
            settings, "s1", "count", parse_command_args(["n=3"]), signer=SIGNER, timeout_s=20
        )
        assert reply == {
            "v": 1,
            "type": "reply",
            "id": reply["id"],
            "name": "count",
            "ok": True,
            "result": {"counted": 1},
        }


async def test_a_command_id_is_executed_once_and_answered_again(
    tmp_path: Path, mosquitto: Broker
) -> None:
    watcher = ReplyWatcher(mosquitto)
    try:
        async with store(tmp_path, mosquitto) as s:
            message = inbound("count", command("count", cid="c-42"), "retail/v1/s1/up/reply/x")
            await s.processor.on_message(message)
            await s.processor.on_message(message)  # redelivered
            assert s.counted == [1]
            rows = await s.db.fetchall("SELECT n FROM counter")
            assert [r["n"] for r in rows] == [1]  # state change committed once, with the record
            assert (s.processor.executed, s.processor.replayed) == (1, 1)
            await until(lambda: len(watcher.replies) == 2)
            assert watcher.replies[0] == watcher.replies[1]
            assert watcher.replies[0][1] == b"corr"
    finally:
        watcher.close()


async def test_refusals(tmp_path: Path, mosquitto: Broker) -> None:
    watcher = ReplyWatcher(mosquitto)
    own = "retail/v1/s1/up/reply/x"
    try:
        async with store(tmp_path, mosquitto) as s:
            # A reply topic outside the store's up/ tree: nothing executed, nothing published.
            await s.processor.on_message(inbound("count", command("count"), "retail/v1/s2/up/x"))
            await s.processor.on_message(inbound("count", command("count"), "elsewhere/topic"))
            # Under up/, but onto a data stream rather than up/reply/: refused too.
            await s.processor.on_message(
                inbound("count", command("count"), "retail/v1/s1/up/receipts")
            )
            # State-changing but unsigned while keys are configured.
            await s.processor.on_message(
                inbound("count", command("count", cid="c-2", signer=None), own)
            )
            # Forged signature, unknown command, name mismatch, garbage.
            forged = command(
                "count", cid="c-3", signer=Signer("hq-1", Ed25519PrivateKey.generate())
            )
            await s.processor.on_message(inbound("count", forged, own))
            await s.processor.on_message(inbound("launch", command("launch", cid="c-4"), own))
            await s.processor.on_message(inbound("ping", command("count", cid="c-5"), own))
            # Garbage is answered, then left to the link to acknowledge and count as malformed.
            with pytest.raises(MalformedMessageError, match="not JSON"):
                await s.processor.on_message(inbound("ping", b"{nonsense", own))
            assert s.counted == []
            assert s.processor.refused == 7
            [alert] = s.alerts.active()
            assert alert.key == COMMAND_ALERT
            assert alert.details["refused"] == 7
            await until(lambda: len(watcher.replies) == 5)
            assert all(reply["ok"] is False for reply, _ in watcher.replies)
            errors = " | ".join(reply["error"] for reply, _ in watcher.replies)
            assert "must be signed" in errors
            assert "does not verify" in errors
            assert "unknown command 'launch'" in errors
            assert "topic names command" in errors
            assert not any(t for t in [r for r, _ in watcher.replies] if t.get("id") == "c-1")
    finally:
        watcher.close()


def test_command_arguments_parse() -> None:
    assert parse_command_args(["a=1", "b=x", 'c=["y"]']) == {"a": 1, "b": "x", "c": ["y"]}
    for bad in (["novalue"], ["=1"]):
        try:
            parse_command_args(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")


async def test_hq_binds_labels_with_signed_commands(tmp_path: Path, mosquitto: Broker) -> None:
    settings = hq_settings(mosquitto)
    async with store(tmp_path, mosquitto):
        args = {"label": "L-7", "sku": "4006381333931"}
        reply = await send_command(
            settings, "s1", "bind", args, signer=SIGNER, timeout_s=patience(20)
        )
        assert reply["ok"] is True
        assert reply["result"]["sku"] == "4006381333931"
        unsigned = await send_command(
            settings, "s1", "bind", args, signer=None, timeout_s=patience(20)
        )
        assert unsigned["ok"] is False
        assert "must be signed" in unsigned["error"]
        other = {"label": "L-7", "sku": "4006381333948"}
        refused = await send_command(
            settings, "s1", "bind", other, signer=SIGNER, timeout_s=patience(20)
        )
        assert refused["ok"] is False
        assert "unbind it before" in refused["error"]
        gone = await send_command(settings, "s1", "unbind", {"label": "L-7"}, signer=SIGNER)
        assert gone["result"]["removed"]["sku"] == "4006381333931"


async def test_unsigned_mode_refuses_a_signature_it_cannot_check(
    tmp_path: Path, mosquitto: Broker
) -> None:
    """Item 10: without HQ keys, a command claiming a signature is not run as if unsigned."""
    async with store(tmp_path, mosquitto, signed=False) as s:
        forged = command("count", cid="c-1", signer=Signer("hq-1", Ed25519PrivateKey.generate()))
        await s.processor.on_message(inbound("count", forged, None))
        assert s.counted == []
        [alert] = s.alerts.active()
        assert alert.key == COMMAND_ALERT
        assert "no HQ keys are configured" in alert.message
        await s.processor.on_message(inbound("count", command("count", signer=None), None))
        assert s.counted == [1]  # unsigned mode takes what claims no signature


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
async def test_a_signed_command_is_read_as_strict_json_too(
    tmp_path: Path, mosquitto: Broker, number: bytes
) -> None:
    """docs/protocol.md: the payload inside a signed wrapper is read within the same limits,
    strict JSON included — no NaN, Infinity or number beyond a double reaches a handler."""
    payload = command("count", signer=None, n=1).replace(b'"n": 1', b'"n": ' + number)
    assert number in payload
    async with store(tmp_path, mosquitto) as s:
        with pytest.raises(MalformedMessageError, match="not JSON"):
            await s.processor.on_message(inbound("count", SIGNER.wrap(payload), None))
        assert s.counted == []
