"""HQ's signed ``enrol`` command: tags and identity keys enrolled, kept in SQLite across a
restart, merged with the file's (which HQ cannot replace); garbage refused with the reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import CommandRefusedError
from gateway.presence.enrolment import EnrolmentBook
from gateway.sync.commands import CommandRequest
from tests.presence.support import Floor, cart, floor
from tests.wire.documented import sent_events

IRK = "ec0234a357c8ad05341010a60a397d9b"


def request(args: dict[str, Any]) -> CommandRequest:
    return CommandRequest(
        v=1,
        type="command",
        id="c-1",
        name="enrol",
        args=args,
        scope={"stores": ["test"]},
        issued_at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
    )


async def run(f: Floor, args: dict[str, Any]) -> dict[str, Any]:
    """The command as the processor runs it: the handler, then its statements committed."""
    spec = f.service.command()
    result = await spec.handler(request(args))
    await f.database.submit_atomic(list(result.statements))
    await f.service.tick()  # applied once committed
    return dict(result.result)


async def test_an_enrolled_cart_is_reported_by_name_and_survives_a_restart(tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        reply = await run(f, {"tags": [{"name": "cart-2", "beacon": str(cart(2))}]})
        assert reply == {"enrolled": ["cart-2"], "removed": []}
        await f.stay(40, ("rx-a", -55, {"beacon": cart(2)}))
        await f.stay(60)
        events = await sent_events(f.outbox)
        assert [e["tag"] for e in events if e["type"] == "zone.exit"] == ["cart-2"]
        assert await EnrolmentBook(f.database).load() == {"cart-2": ("tag", str(cart(2)))}


async def test_a_removed_enrolment_is_counted_anonymously_again(tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        await run(f, {"identity_keys": [{"name": "app-user-1", "irk": IRK}]})
        assert "app-user-1" in f.service.identities.key_names
        reply = await run(f, {"remove": ["app-user-1"]})
        assert reply["removed"] == ["app-user-1"]
        assert "app-user-1" not in f.service.identities.key_names


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({}, "nothing to enrol"),
        ({"tags": [{"name": "x", "beacon": "garbage"}]}, "not a beacon id"),
        ({"tags": "cart-1"}, "tags"),
        ({"identity_keys": [{"name": "k", "irk": "00"}]}, "identity_keys"),
        ({"remove": ["bad name!"]}, "remove"),
        ({"surprise": True}, "surprise"),
        ({"tags": [{"name": "cart-1", "beacon": str(cart(5))}]}, "store's own file"),
        ({"remove": ["cart-1"]}, "store's own file"),
        ({"tags": [{"name": "c9", "beacon": str(cart(1))}]}, "configured locally"),
        (
            {"tags": [{"name": "c9", "beacon": str(cart(8))}], "remove": ["c9"]},
            "appears twice",
        ),
    ],
)
async def test_garbage_is_refused_with_the_reason_and_changes_nothing(
    tmp_path: Path, args: dict[str, Any], reason: str
) -> None:
    async with floor(tmp_path) as f:
        with pytest.raises(CommandRefusedError, match=reason):
            await f.service.command().handler(request(args))
        assert await EnrolmentBook(f.database).load() == {}
