"""Price batches from HQ: verified, committed, applied once and in version order."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import MalformedMessageError
from gateway.hq.prices import build_price_messages
from gateway.prices.book import PriceBook
from gateway.prices.downlink import SIGNATURE_ALERT
from gateway.sync.signing import Signer
from gateway.wire import validate_event
from tests.prices.support import HQ_KEY, SIGNER, batch, item, store


async def test_full_then_delta_applied_in_order_with_receipts_and_history(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        [full] = batch(s.clock, 1, [item("a", "1.00"), item("b", "2.00")], kind="full")
        await s.receive(full)
        assert await s.prices() == {"a": "1.00", "b": "2.00"}
        [delta] = batch(s.clock, 2, [item("b", "2.50"), item("c", "3.00")], delete=["a"])
        await s.receive(delta)
        assert await s.prices() == {"b": "2.50", "c": "3.00"}
        assert s.downlink.head == 2
        receipts = await s.receipts()
        assert [(t, r["version"]) for t, r in receipts] == [
            ("price.stored", 1),
            ("price.applied", 1),
            ("price.stored", 2),
            ("price.applied", 2),
        ]
        assert receipts[3][1]["deleted"] == 1
        events = await s.outbox.read("receipts", after_seq=0, max_events=10, max_bytes=10**9)
        for event in events:  # every receipt matches its documented schema
            validate_event(event.wire())
        [full3] = batch(s.clock, 3, [item("c", "3.00"), item("d", "4.00")], kind="full")
        await s.receive(full3)  # b disappears: a full batch replaces the book
        assert await s.prices() == {"c": "3.00", "d": "4.00"}
        listing = await s.book.listing(s.clock.utc_now(), "b")
        assert [(h["version"], h["change"], h["price"]) for h in listing["history"]] == [
            (3, "delete", None),
            (2, "set", "2.50"),
            (1, "set", "2.00"),
        ]
        unchanged = await s.book.listing(s.clock.utc_now(), "c")
        assert [h["version"] for h in unchanged["history"]] == [2]  # same price: no new row


async def test_duplicates_and_stale_versions_are_no_ops(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        [v1] = batch(s.clock, 1, [item("a", "1.00")], kind="full")
        [v2] = batch(s.clock, 2, [item("a", "2.00")])
        await s.receive(v1)
        await s.receive(v2)
        await s.receive(v2)  # broker redelivery
        await s.receive(v1)  # replayed old batch
        assert await s.prices() == {"a": "2.00"}
        assert [t for t, _ in await s.receipts()] == ["price.stored", "price.applied"] * 2


async def test_a_gap_is_held_resync_requested_and_a_full_batch_fills_it(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        await s.receive(batch(s.clock, 1, [item("a", "1.00")], kind="full")[0])
        await s.receive(batch(s.clock, 3, [item("a", "3.00")])[0])  # v2 missing
        assert s.downlink.head == 1
        assert await s.prices() == {"a": "1.00"}
        held = await s.db.fetchall("SELECT version, state FROM price_versions ORDER BY version")
        assert [(r["version"], r["state"]) for r in held] == [(1, "applied"), (3, "held")]
        # No link attached here: the request is attempted only with a link (see the broker test).
        await s.receive(batch(s.clock, 5, [item("a", "5.00"), item("z", "9.99")], kind="full")[0])
        assert s.downlink.head == 5  # HQ's full answer jumps the gap
        assert await s.prices() == {"a": "5.00", "z": "9.99"}
        states = await s.db.fetchall("SELECT version, state FROM price_versions ORDER BY version")
        assert [(r["version"], r["state"]) for r in states] == [
            (1, "applied"),
            (3, "superseded"),
            (5, "applied"),
        ]
        assert (await s.receipts())[-1][1]["superseded"] == [3]


async def test_delta_waiting_for_its_predecessor_is_applied_when_it_arrives(
    tmp_path: Path,
) -> None:
    async with store(tmp_path) as s:
        await s.receive(batch(s.clock, 2, [item("a", "2.00")])[0])
        await s.receive(batch(s.clock, 3, [item("b", "3.00")])[0])
        assert s.downlink.head == 0
        await s.receive(batch(s.clock, 1, [item("a", "1.00")], kind="full")[0])
        assert s.downlink.head == 3
        assert await s.prices() == {"a": "2.00", "b": "3.00"}


async def test_bad_items_reject_the_whole_version_which_is_consumed(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        await s.receive(batch(s.clock, 1, [item("a", "1.00")], kind="full")[0])
        bad = [
            item("a", "9.00"),
            {"sku": "b", "price": 1.99, "currency": "EUR"},  # a float: never
            item("c", "1,99"),
            item("d", "1.00", currency="euro"),
            item("e", "1.00", unit_price="2.00"),  # unit missing
        ]
        await s.receive(batch(s.clock, 2, bad)[0])
        assert await s.prices() == {"a": "1.00"}  # all or nothing
        assert s.downlink.head == 2  # consumed, not a gap
        kind, receipt = (await s.receipts())[-1]
        assert kind == "price.rejected"
        assert receipt["version"] == 2
        assert sorted(p["item"] for p in receipt["problems"]) == ["b", "c", "d", "e"]
        assert any("string" in p["reason"] for p in receipt["problems"] if p["item"] == "b")
        await s.receive(batch(s.clock, 3, [item("a", "3.00")])[0])
        assert await s.prices() == {"a": "3.00"}


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("unsigned", "unsigned message"),
        ("other-key", "does not verify"),
        ("unknown-kid", "unknown key id"),
        ("flipped", "does not verify"),
        ("other-store", "does not include store"),
        ("expired", "expired"),
        ("kid-without-sig", "needs both kid and sig"),
    ],
)
async def test_unauthentic_messages_are_refused_with_an_alert(
    tmp_path: Path, tamper: str, reason: str
) -> None:
    async with store(tmp_path) as s:
        s.clock.synchronized = True
        good = batch(s.clock, 1, [item("a", "6.66")], kind="full")[0]
        payload: bytes
        if tamper == "unsigned":
            payload = batch(s.clock, 1, [item("a", "6.66")], kind="full", signer=None)[0]
        elif tamper == "other-key":
            payload = batch(
                s.clock,
                1,
                [item("a", "6.66")],
                kind="full",
                signer=Signer("hq-1", Ed25519PrivateKey.generate()),
            )[0]
        elif tamper == "unknown-kid":
            payload = batch(
                s.clock, 1, [item("a", "6.66")], kind="full", signer=Signer("hq-9", HQ_KEY)
            )[0]
        elif tamper == "flipped":
            wrapper = json.loads(good)
            inner = base64.b64decode(wrapper["payload"]).replace(b"6.66", b"0.01")
            wrapper["payload"] = base64.b64encode(inner).decode()
            payload = json.dumps(wrapper).encode()
        elif tamper == "other-store":
            payload = batch(s.clock, 1, [item("a", "6.66")], kind="full", stores=["s2"])[0]
        elif tamper == "expired":
            old = build_price_messages(
                [item("a", "6.66")],
                version=1,
                kind="full",
                stores=["s1"],
                issued_at=s.clock.utc_now() - timedelta(days=3),
                signer=SIGNER,
            )
            payload = old[0]
        else:
            wrapper = json.loads(good)
            del wrapper["sig"]
            payload = json.dumps(wrapper).encode()
        await s.receive(payload)
        assert await s.prices() == {}
        assert s.downlink.head == 0
        [alert] = s.alerts.active()
        assert alert.key == SIGNATURE_ALERT
        assert reason in alert.message
        await s.receive(good)  # the real one still goes through
        assert await s.prices() == {"a": "6.66"}


async def test_the_signature_alert_keeps_count_and_reason_current_and_clears_when_quiet(
    tmp_path: Path,
) -> None:
    """Item 9: after ten refusals the alert says 10 and the last reason (as status does), its
    updated_at moves, a restart keeps both, and it clears a day after the last refusal."""
    async with store(tmp_path) as s:
        for n in range(1, 11):
            s.clock.advance(60)
            stores = ["s1"] if n % 2 else ["s2"]
            signer = None if n % 2 else SIGNER  # unsigned, or scoped to another store
            [payload] = batch(s.clock, n, [item("a", "6.66")], signer=signer, stores=stores)
            await s.receive(payload)
        [alert] = s.alerts.active()
        assert alert.key == SIGNATURE_ALERT
        assert alert.details["refused"] == 10 == s.downlink.refused
        assert s.downlink.status()["refused"] == 10
        assert "does not include store 's1'" in str(alert.details["last_reason"])
        assert s.downlink.status()["last_refusal"] == alert.details["last_reason"]
        assert "does not include store 's1'" in alert.message
        assert (alert.updated_at - alert.raised_at).total_seconds() == 9 * 60
    async with store(tmp_path) as s:  # a restart
        assert s.downlink.refused == 10
        [alert] = s.alerts.active()
        assert alert.details["refused"] == 10
        s.clock.advance(25 * 3600)
        await s.downlink.refusals.expire()
        assert s.alerts.active() == ()
        assert s.downlink.refused == 0
        events = await s.outbox.read("alerts", after_seq=0, max_events=10, max_bytes=10**6)
        assert [e.type for e in events] == ["alert.raised", "alert.cleared"]
        assert json.loads(events[1].body)["details"]["refused"] == 10


async def test_unsigned_mode_refuses_a_signature_it_cannot_check(tmp_path: Path) -> None:
    """Item 10: without HQ keys, a wrapper claiming a signature is never applied unchecked."""
    async with store(tmp_path, signed=False) as s:
        forged = batch(
            s.clock,
            1,
            [item("a", "6.66")],
            kind="full",
            signer=Signer("hq-1", Ed25519PrivateKey.generate()),
        )[0]
        await s.receive(forged)
        assert await s.prices() == {}
        [alert] = s.alerts.active()
        assert alert.key == SIGNATURE_ALERT
        assert "no HQ keys are configured" in alert.message
        [unsigned] = batch(s.clock, 1, [item("a", "1.00")], kind="full", signer=None)
        await s.receive(unsigned)
        assert await s.prices() == {"a": "1.00"}


async def test_unreadable_price_messages_are_left_to_the_link_as_malformed(
    tmp_path: Path,
) -> None:
    """Item A: what cannot be read raises MalformedMessageError (the link acks and counts
    it under downlink.malformed); the signature alert is for what can be read."""
    async with store(tmp_path) as s:
        [good] = batch(s.clock, 1, [item("a", "1.00")], kind="full")
        deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
        for payload in (
            b"",
            b"\x00\xff",
            b"[" * 100_000,
            b'{"v": 1, "payload": "e30=", "kid": "hq-1", "sig": Infinity}',
            SIGNER.wrap(deep),  # signed, but nothing to read inside
            SIGNER.wrap(b"\xff\xfe"),
        ):
            with pytest.raises(MalformedMessageError):
                await s.receive(payload)
        assert s.alerts.active() == ()
        await s.receive(good)
        assert await s.prices() == {"a": "1.00"}


async def test_group_scope_and_unsigned_mode(tmp_path: Path) -> None:
    async with store(tmp_path, signed=False, groups=("north",)) as s:
        unsigned = batch(
            s.clock, 1, [item("a", "1.00")], kind="full", signer=None, stores=[], groups=["north"]
        )[0]
        await s.receive(unsigned)
        assert await s.prices() == {"a": "1.00"}
        elsewhere = batch(
            s.clock, 2, [item("a", "2.00")], signer=None, stores=[], groups=["south"]
        )[0]
        await s.receive(elsewhere)
        assert await s.prices() == {"a": "1.00"}


async def test_unreadable_scope_is_refused_not_a_poison_message(tmp_path: Path) -> None:
    async with store(tmp_path, groups=("g",)) as s:
        [good] = batch(s.clock, 1, [item("a", "1.00")], kind="full")
        payload = json.loads(base64.b64decode(json.loads(good)["payload"]))
        payload["scope"]["groups"] = [["g"]]
        await s.receive(SIGNER.wrap(json.dumps(payload).encode()))  # returns: acked, refused
        assert [a.key for a in s.alerts.active()] == [SIGNATURE_ALERT]
        assert s.downlink.head == 0


async def test_promotions_later_version_wins_and_cancel(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        now = s.clock.utc_now()

        def promo(pid: str, price: str, start: int, end: int) -> dict[str, Any]:
            return {
                "id": pid,
                "sku": "a",
                "price": price,
                "currency": "EUR",
                "effective_from": (now + timedelta(hours=start)).isoformat(),
                "effective_to": (now + timedelta(hours=end)).isoformat(),
            }

        await s.receive(
            batch(
                s.clock,
                1,
                [item("a", "2.00")],
                kind="full",
                promotions=[promo("p1", "1.50", 1, 10)],
            )[0]
        )
        await s.receive(batch(s.clock, 2, [], promotions=[promo("p2", "1.00", 2, 3)])[0])
        at = now + timedelta(minutes=30)
        assert (await s.book.shelf_price("a", at)).price == "2.00"  # type: ignore[union-attr]
        shelf = await s.book.shelf_price("a", now + timedelta(hours=1, minutes=30))
        assert shelf is not None
        # HQ sent no "was" price: none is shown (never an invented one).
        assert (shelf.price, shelf.promotion, shelf.reference_price) == ("1.50", "p1", None)
        shelf = await s.book.shelf_price("a", now + timedelta(hours=2, minutes=30))
        assert shelf is not None
        assert (shelf.price, shelf.promotion) == ("1.00", "p2")  # overlapping: later version
        await s.receive(batch(s.clock, 3, [], cancel_promotions=["p2"])[0])
        shelf = await s.book.shelf_price("a", now + timedelta(hours=2, minutes=30))
        assert shelf is not None
        assert (shelf.price, shelf.promotion) == ("1.50", "p1")
        listing = await s.book.listing(now, "a")
        assert [p["id"] for p in listing["promotions"]] == ["p1"]


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        await s.receive(batch(s.clock, 1, [item("a", "1.00")], kind="full")[0])
        await s.receive(batch(s.clock, 3, [item("a", "3.00")])[0])  # held
    async with store(tmp_path) as s:
        assert s.downlink.head == 1
        await s.receive(batch(s.clock, 2, [item("b", "2.00")])[0])
        assert s.downlink.head == 3
        assert await s.prices() == {"a": "3.00", "b": "2.00"}


async def test_history_is_pruned_beyond_its_retention(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        await s.receive(batch(s.clock, 1, [item("a", "1.00")], kind="full")[0])
        s.clock.advance(timedelta(days=5).total_seconds())
        await s.receive(batch(s.clock, 2, [item("a", "1.50")])[0])
        s.clock.advance(timedelta(days=95).total_seconds())
        await s.receive(batch(s.clock, 3, [item("a", "2.00")])[0])
        await s.downlink.prune_history()  # 90 days by default
        rows = await s.db.fetchall("SELECT version FROM price_history WHERE sku = 'a'")
        # v2 stays: it was the price in force 90 days ago, until v3 (a prior price needs it)
        assert [r["version"] for r in rows] == [2, 3]
        versions = await s.db.fetchall("SELECT version FROM price_versions")
        assert [r["version"] for r in versions] == [3]  # v1's and v2's records are past it
        assert await s.prices() == {"a": "2.00"}  # the book itself is never pruned


async def test_an_invalid_batch_for_another_store_consumes_nothing_here(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        bad_elsewhere = batch(s.clock, 1, [item("a", "1,00")], kind="full", stores=["s2"])[0]
        await s.receive(bad_elsewhere)
        assert s.downlink.head == 0  # not consumed: it was never ours
        assert await s.receipts() == []
        await s.receive(batch(s.clock, 1, [item("a", "1.00")], kind="full")[0])
        assert await s.prices() == {"a": "1.00"}


async def test_was_price_is_hqs_or_the_lowest_of_the_prior_30_days(tmp_path: Path) -> None:
    async with store(tmp_path) as s:
        start = s.clock.utc_now()
        await s.receive(batch(s.clock, 1, [item("a", "1.50")], kind="full")[0])  # day 0
        s.clock.advance(timedelta(days=20).total_seconds())
        await s.receive(batch(s.clock, 2, [item("a", "2.00")])[0])  # day 20
        s.clock.advance(timedelta(days=10).total_seconds())
        await s.receive(batch(s.clock, 3, [item("a", "1.70")])[0])  # day 30
        s.clock.advance(timedelta(days=15).total_seconds())
        await s.receive(batch(s.clock, 4, [item("a", "2.20")])[0])  # day 45
        begins = start + timedelta(days=55)
        sale = {
            "id": "sale-1",
            "sku": "a",
            "price": "0.99",
            "currency": "EUR",
            "effective_from": begins.isoformat(),
            "effective_to": (begins + timedelta(days=2)).isoformat(),
        }
        await s.receive(batch(s.clock, 5, [], promotions=[sale])[0])
        during = begins + timedelta(hours=1)
        assert (await s.book.shelf_price("a", during)).reference_price is None  # type: ignore[union-attr]
        lowest = PriceBook(s.db, was_price="lowest_30_days")
        shelf = await lowest.shelf_price("a", during)
        assert shelf is not None
        # Days 25..55: 2.00 was in force at the start, then 1.70, then 2.20; 1.50 is too old.
        assert (shelf.price, shelf.reference_price) == ("0.99", "1.70")
        hq_says = {**sale, "id": "sale-2", "reference_price": "1.99"}
        await s.receive(batch(s.clock, 6, [], promotions=[hq_says])[0])
        assert (await lowest.shelf_price("a", during)).reference_price == "1.99"  # type: ignore[union-attr]


@pytest.mark.parametrize("version", [2**63, 2**64 - 1, -(2**63) - 1])
async def test_a_batch_whose_version_no_database_holds_is_rejected_cleanly(
    tmp_path: Path, version: int
) -> None:
    """A header refused for a version beyond SQLite's integers (HQ's bug, or anyone in
    unsigned mode) is a rejected batch like any other — never an OverflowError from binding
    it, which the link could only count as a handler failure with a traceback."""
    async with store(tmp_path) as s:
        [good] = batch(s.clock, 1, [item("a", "1.00")], kind="full")
        header = json.loads(base64.b64decode(json.loads(good)["payload"]))
        header["version"] = version
        await s.receive(SIGNER.wrap(json.dumps(header).encode()))
        assert s.downlink.head == 0
        await s.receive(good)
        assert await s.prices() == {"a": "1.00"}
