"""The command processor (``down/cmd/{name}``): signed when they change state, executed once,
answered only where allowed, strict JSON inside a signed wrapper, ids that cannot be squatted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.clock import FakeClock, isoformat_utc
from gateway.errors import MalformedMessageError
from gateway.hq.cmd import parse_command_args, send_command
from gateway.store import Database
from gateway.sync.commands import (
    COMMAND_ALERT,
    CommandProcessor,
    CommandRequest,
    CommandResult,
    CommandSpec,
)
from gateway.sync.link import InboundMessage
from gateway.sync.signing import Signer, Verifier
from tests.support.broker import Broker
from tests.sync.command_harness import (
    KEY,
    SIGNER,
    ReplyWatcher,
    command,
    hq_settings,
    inbound,
    store,
)
from tests.sync.support import until
from tests.waiting import patience


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


async def test_commands_ids_cannot_be_squatted_and_replies_stay_in_up_reply(
    tmp_path: Path,
) -> None:
    clock = FakeClock(wall=datetime.now(UTC))
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        processor = CommandProcessor(
            database=db,
            clock=clock,
            verifier=Verifier({"hq-1": KEY.public_key()}),
            store_id="s1",
        )
        ran: list[str] = []

        async def ping(_r: CommandRequest) -> CommandResult:
            return CommandResult({"pong": True})

        async def flash(r: CommandRequest) -> CommandResult:
            ran.append(r.id)
            return CommandResult({"flashed": True})

        processor.register(CommandSpec("ping", ping, changes_state=False))
        processor.register(CommandSpec("flash", flash, changes_state=True))

        def command(name: str, valid: timedelta | None = timedelta(minutes=1)) -> bytes:
            now = clock.utc_now()
            body: dict[str, Any] = {
                "v": 1,
                "type": "command",
                "id": "c-1",
                "name": name,
                "args": {},
                "scope": {"stores": ["s1"]},
                "issued_at": isoformat_utc(now),
            }
            if valid is not None:
                body["valid_until"] = isoformat_utc(now + valid)
            return json.dumps(body).encode()

        def message(name: str, payload: bytes) -> InboundMessage:
            return InboundMessage(f"r/s1/down/cmd/{name}", payload, 1, False, None, None)

        await processor.on_message(message("ping", command("ping")))  # unsigned, same id
        await processor.on_message(message("flash", SIGNER.wrap(command("flash", None))))
        assert ran == []  # a state-changing command without valid_until is refused
        await processor.on_message(
            message("flash", SIGNER.wrap(command("flash", timedelta(days=30))))
        )
        assert ran == []  # valid far longer than the record is kept: replayable, refused
        await processor.on_message(message("flash", SIGNER.wrap(command("flash"))))
        assert ran == ["c-1"]  # the unsigned ping did not take the id
