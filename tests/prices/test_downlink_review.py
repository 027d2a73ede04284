"""Regressions from the independent review of the downlink: races, re-sent versions, poison
messages, id squatting, replay scope."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.clock import FakeClock, isoformat_utc
from gateway.commands import CommandProcessor, CommandRequest, CommandResult, CommandSpec
from gateway.prices.batch import parse_price_batch
from gateway.prices.downlink import SIGNATURE_ALERT
from gateway.store import Database
from gateway.sync.link import InboundMessage
from gateway.sync.signing import Verifier
from tests.prices.test_downlink import HQ_KEY, SIGNER, Store, batch, item, store


async def hold(s: Store, message: bytes) -> None:
    """Commit a part without advancing (as if the sequencer had not run yet)."""
    payload, _ = s.downlink._verifier.open(message)
    await s.downlink._store_part(parse_price_batch(payload).header, payload)


async def test_concurrent_advances_apply_each_version_once(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        await s.receive(batch(s.clock, 1, [item("a", "1.00")], kind="full")[0])
        await hold(s, batch(s.clock, 2, [item("a", "2.00")], kind="full")[0])
        await hold(s, batch(s.clock, 3, [item("a", "3.00")])[0])
        real = s.db.fetchall

        async def slow_parts(sql: str, params: Any = ()) -> Any:
            if sql.startswith("SELECT payload FROM price_parts"):
                await asyncio.sleep(0.2)  # widen the window between reading and applying
            return await real(sql, params)

        s.db.fetchall = slow_parts  # type: ignore[method-assign]
        try:
            await asyncio.gather(s.downlink.advance(), s.downlink.advance(), s.downlink.advance())
        finally:
            s.db.fetchall = real  # type: ignore[method-assign]
        applied = [r["version"] for t, r in await s.receipts() if t == "price.applied"]
        assert applied == [1, 2, 3]
        assert await s.prices() == {"a": "3.00"}
        assert s.downlink.head == 3


async def test_a_version_that_expired_incomplete_is_applied_when_re_sent(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        await s.receive(batch(s.clock, 1, [item("a", "1.00")], kind="full")[0])
        items = [item(f"s{n}", "1.00") for n in range(40)]
        parts = batch(s.clock, 2, items, max_message_bytes=1500)
        assert len(parts) > 1
        await s.receive(parts[0])
        s.clock.advance(601)
        await s.downlink.advance()  # v2 expires: a gap
        for part in batch(s.clock, 2, items, max_message_bytes=1500):
            await s.receive(part)  # HQ answers the resync with v2 again
        assert s.downlink.head == 2
        assert len(await s.prices()) == 41


async def test_a_re_issued_version_replaces_its_stale_parts(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        await s.receive(batch(s.clock, 1, [item("a", "1.00")], kind="full")[0])
        first = batch(
            s.clock, 2, [item(f"s{n}", "1.00") for n in range(40)], max_message_bytes=1500
        )
        await s.receive(first[0])  # HQ's push died after part 1
        s.clock.advance(5)
        second = batch(s.clock, 2, [item("b", "2.00")])  # HQ pushes v2 again, different content
        await s.receive(second[0])
        assert s.downlink.head == 2
        assert await s.prices() == {"a": "1.00", "b": "2.00"}
        await s.receive(first[1])  # a late part of the old push changes nothing
        assert await s.prices() == {"a": "1.00", "b": "2.00"}


async def test_unreadable_scope_is_refused_not_a_poison_message(tmp_path: Path) -> None:
    async with store(tmp_path, groups=("g",)) as s:
        [good] = batch(s.clock, 1, [item("a", "1.00")], kind="full")
        payload = json.loads(base64.b64decode(json.loads(good)["payload"]))
        payload["scope"]["groups"] = [["g"]]
        await s.receive(SIGNER.wrap(json.dumps(payload).encode()))  # returns: acked, refused
        assert [a.key for a in s.alerts.active()] == [SIGNATURE_ALERT]
        assert s.downlink.head == 0


def test_hq_push_scopes_every_batch_to_one_store(tmp_path: Path) -> None:
    from gateway.hq import push

    source = Path(push.__file__).read_text(encoding="utf-8")
    assert "stores=[store]," in source
    assert "groups=" not in source.split("build_price_messages(")[1].split(")")[0]


async def test_commands_ids_cannot_be_squatted_and_replies_stay_in_up_reply(
    tmp_path: Path,
) -> None:
    clock = FakeClock(wall=datetime.now(UTC))
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        processor = CommandProcessor(
            database=db,
            clock=clock,
            verifier=Verifier({"hq-1": HQ_KEY.public_key()}),
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


async def test_a_rejection_lists_the_bad_items_of_every_part(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        await s.receive(batch(s.clock, 1, [item("a", "1.00")], kind="full")[0])
        items = [item(f"s{n}", "1.00") for n in range(40)]
        items[0]["price"] = 1.0  # bad in the first part
        items[-1]["price"] = "2,00"  # bad in the last part
        parts = batch(s.clock, 2, items, max_message_bytes=1500)
        assert len(parts) > 2
        for part in parts:
            await s.receive(part)
        [rejected] = [r for t, r in await s.receipts() if t == "price.rejected"]
        assert {p["item"] for p in rejected["problems"]} == {"s0", "s39"}
        assert s.downlink.head == 2  # consumed once complete
        assert await s.prices() == {"a": "1.00"}
