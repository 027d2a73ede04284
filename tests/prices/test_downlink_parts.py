"""Multi-part price batches and the sequencer: a version's parts applied together once all
are in, expired when incomplete, re-sent or re-issued by HQ, rejected with every part's bad
items; concurrent sequencer runs apply each version once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.prices.batch import parse_price_batch
from tests.prices.support import Store, batch, item, store


async def hold(s: Store, message: bytes) -> None:
    """Commit a part without advancing (as if the sequencer had not run yet)."""
    payload, _ = s.downlink._verifier.open(message)
    await s.downlink._store_part(parse_price_batch(payload).header, payload)


async def test_parts_are_applied_together_once_all_are_in(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        items = [item(f"sku-{n:04}", f"{n}.99", name="x" * 100) for n in range(400)]
        parts = batch(s.clock, 1, items, kind="full", max_message_bytes=16 * 1024)
        assert len(parts) > 3
        for part in reversed(parts[1:]):
            await s.receive(part)
        assert await s.prices() == {}  # nothing until the set is complete
        await s.receive(parts[0])
        assert len(await s.prices()) == 400
        assert (await s.receipts())[-1][1]["parts"] == len(parts)


async def test_incomplete_parts_expire_with_a_receipt(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        items = [item(f"sku-{n:04}", "1.00", name="y" * 100) for n in range(300)]
        parts = batch(s.clock, 1, items, kind="full", max_message_bytes=16 * 1024)
        await s.receive(parts[0])
        s.clock.advance(601)
        await s.downlink.advance()
        kind, receipt = (await s.receipts())[-1]
        assert kind == "price.rejected"
        assert receipt["reason"].startswith("incomplete: got part(s) [1] of")
        assert s.downlink.head == 0
        assert await s.db.fetchall("SELECT * FROM price_parts") == []


class RecordingLink:
    """The part of a link the downlink publishes through: keeps what went up."""

    topic_root = "retail/v1/s1/"

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    def subscribe(self, _topic: str, _handler: Any) -> None:
        pass

    async def publish(self, topic: str, payload: bytes) -> None:
        self.published.append((topic, json.loads(payload)))


async def test_a_batch_arriving_part_by_part_is_no_gap_until_its_parts_stop_coming(
    tmp_path: Path,
) -> None:
    async with store(tmp_path) as s:
        link = RecordingLink()
        s.downlink.attach(link)  # type: ignore[arg-type]
        items = [item(f"sku-{n}", "1.00", name="n" * 150) for n in range(3000)]
        parts = batch(s.clock, 1, items, kind="full")
        assert len(parts) >= 3
        for part in parts[:-1]:
            await s.receive(part)
            s.clock.advance(2)
        assert link.published == []  # the next version, still arriving: nothing to ask for
        s.clock.advance(s.downlink.settings.resync_interval_s)
        await s.downlink.advance()  # its parts stopped coming: HQ is asked for it
        [(topic, request)] = link.published
        assert topic == "retail/v1/s1/up/sync"
        assert (request["have_version"], request["held_versions"]) == (0, [1])
        await s.receive(parts[-1])
        assert s.downlink.head == 1
        assert len(await s.prices()) == 3000


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
