"""Unbound labels: a label that shows (or was sent) content gets the neutral "not in use" face
through an ordinary job; a label never sent anything gets no job."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.clock import FakeClock
from gateway.drivers.contracts import LabelReportKind
from gateway.labels.faces import BLANK_FACE
from gateway.wire import validate_event
from tests.labels.support import CountingDriver, LabelStore, item, label_store


async def _validated_label_receipts(s: LabelStore) -> list[tuple[str, dict[str, object]]]:
    while await s.pipeline.pump_receipts():
        pass
    events = await s.outbox.read("receipts", after_seq=0, max_events=10_000, max_bytes=10**9)
    for event in events:
        validate_event(event.wire())
    return await s.receipts()


async def _confirmed_on_price(s: LabelStore, driver: CountingDriver) -> str:
    await s.bindings.bind("L1", "A", "hq")
    await s.prices([item("A", "1.00"), item("B", "2.00")], kind="full")
    await s.settle()
    await s.pipeline.dispatch_once()
    await s.confirm_all(driver)
    job = await s.job("L1")
    assert job["state"] == "confirmed"
    return str(job["content_hash"])


async def test_unbind_queues_the_blank_face_until_confirmed_then_rebind_shows_price(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        price_hash = await _confirmed_on_price(s, driver)

        await s.bindings.unbind("L1", "hq")
        await s.settle()
        job = await s.job("L1")
        assert (job["sku"], job["face"], job["price_version"]) == ("", BLANK_FACE, 0)
        assert job["state"] == "queued"
        blank_hash = str(job["content_hash"])
        assert blank_hash not in {"None", price_hash}

        await s.pipeline.dispatch_once()
        assert driver.pushed("L1") == [price_hash, blank_hash]
        assert (await s.job("L1"))["state"] == "pending"
        await s.confirm_all(driver)
        assert (await s.job("L1"))["state"] == "confirmed"

        # Confirmed blank: re-planning and reconciliation send nothing more.
        rev = (await s.job("L1"))["rev"]
        await s.pipeline.reconcile()
        await s.pipeline.plan(labels=["L1"], reason="binding changed")
        await s.pipeline.render_all()
        await s.pipeline.dispatch_once()
        assert (await s.job("L1"))["rev"] == rev
        assert (await s.job("L1"))["state"] == "confirmed"
        assert driver.pushed("L1") == [price_hash, blank_hash]

        receipts = await _validated_label_receipts(s)
        assert [(kind, body["sku"], body["content_hash"]) for kind, body in receipts] == [
            ("label.queued", "A", price_hash),
            ("label.confirmed", "A", price_hash),
            ("label.queued", "", blank_hash),
            ("label.confirmed", "", blank_hash),
        ]

        # Bound again: the price content is planned as for any bound label.
        await s.bindings.bind("L1", "B", "local")
        await s.settle()
        job = await s.job("L1")
        assert job["sku"] == "B"
        assert json.loads(job["face"])["price"] == "2.00"
        await s.pipeline.dispatch_once()
        await s.confirm_all(driver)
        assert (await s.job("L1"))["state"] == "confirmed"
        assert driver.pushed("L1")[-1] == (await s.job("L1"))["content_hash"]
        assert driver.pushed("L1")[-1] not in {price_hash, blank_hash}


async def test_blank_label_that_rebooted_to_old_content_is_re_pushed(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        price_hash = await _confirmed_on_price(s, driver)
        await s.bindings.unbind("L1", "local")
        await s.settle()
        await s.pipeline.dispatch_once()
        await s.confirm_all(driver)
        blank_hash = driver.pushed("L1")[-1]

        # The label fell back to its old price; its check-in says so.
        driver.shows["L1"] = price_hash
        s.pipeline.on_reading("esl", driver.report("L1", LabelReportKind.SEEN, price_hash))
        await s.pipeline.process_reports()
        assert (await s.job("L1"))["state"] == "queued"
        await s.pipeline.dispatch_once()
        assert driver.pushed("L1") == [price_hash, blank_hash, blank_hash]
        await s.confirm_all(driver)
        assert (await s.job("L1"))["state"] == "confirmed"
        assert [event for _, event in await s.audit("L1")][-3:] == [
            "confirmed",
            "requeued",
            "confirmed",
        ]


async def test_unbind_while_price_is_on_its_way_supersedes_it_with_the_blank(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await s.bindings.bind("L1", "A", "hq")
        await s.prices([item("A", "1.00")], kind="full")
        await s.settle()
        await s.pipeline.dispatch_once()  # sent, not confirmed yet
        await s.bindings.unbind("L1", "hq")
        await s.settle()
        job = await s.job("L1")
        assert (job["sku"], job["state"]) == ("", "queued")
        assert await s.audit("L1") == [
            ("L1", "queued"),
            ("L1", "superseded"),
            ("L1", "queued"),
        ]


async def test_unbind_of_a_label_never_sent_anything_queues_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await s.bindings.bind("L1", "A", "hq")
        await s.prices([item("A", "1.00")], kind="full")
        await s.settle()  # rendered and queued, never handed to the driver
        await s.bindings.unbind("L1", "hq")
        await s.settle()
        assert "L1" not in await s.jobs()
        # A new label reporting no content, bound to nothing: nothing to send either.
        s.pipeline.on_reading("esl", driver.report("L9", LabelReportKind.SEEN, None))
        await s.pipeline.process_reports()
        await s.pipeline.reconcile()
        await s.pipeline.render_all()
        await s.pipeline.dispatch_once()
        assert await s.jobs() == {}
        assert driver.pushes == []


async def test_an_unbound_label_reporting_old_content_is_blanked_set_based(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        # Left over after a re-layout: labels still showing something, bound to nothing.
        for label in ("L1", "L2", "L3"):
            s.pipeline.on_reading("esl", driver.report(label, LabelReportKind.SEEN, "f" * 64))
        await s.pipeline.process_reports()
        await s.pipeline.reconcile()
        await s.pipeline.render_all()
        jobs = await s.jobs()
        assert sorted(jobs) == ["L1", "L2", "L3"]
        assert {(j["sku"], j["face"]) for j in jobs.values()} == {("", BLANK_FACE)}
        assert len({j["content_hash"] for j in jobs.values()}) == 1  # one image, shared
        await s.pipeline.dispatch_once()
        await s.confirm_all(driver)
        assert {j["state"] for j in (await s.jobs()).values()} == {"confirmed"}
