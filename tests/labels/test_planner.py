"""The planner: set-based jobs for the labels whose should-show content changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.errors import CommandRefusedError
from gateway.wire import validate_event
from tests.labels.support import CountingDriver, item, label_store


async def test_only_labels_of_changed_skus_get_jobs_and_new_content_supersedes(
    tmp_path: Path,
) -> None:
    async with label_store(tmp_path) as s:
        for label, sku in (("L1", "A"), ("L2", "A"), ("L3", "B"), ("L4", "C")):
            await s.bindings.bind(label, sku, "hq")
        await s.prices([item("A", "1.00"), item("B", "2.00"), item("C", "3.00")], kind="full")
        await s.settle()
        jobs = await s.jobs()
        assert sorted(jobs) == ["L1", "L2", "L3", "L4"]
        assert {j["state"] for j in jobs.values()} == {"queued"}
        assert jobs["L1"]["content_hash"] == jobs["L2"]["content_hash"]  # same face, same image
        assert json.loads(jobs["L3"]["face"])["price"] == "2.00"
        before = {label: job["rev"] for label, job in jobs.items()}

        await s.prices([item("A", "1.10")])  # only A's labels change
        await s.settle()
        jobs = await s.jobs()
        assert {label for label, job in jobs.items() if job["rev"] != before[label]} == {
            "L1",
            "L2",
        }
        assert json.loads(jobs["L1"]["face"])["price"] == "1.10"
        assert jobs["L1"]["price_version"] == 2
        assert await s.audit("L1") == [
            ("L1", "queued"),
            ("L1", "superseded"),
            ("L1", "queued"),
        ]

        await s.prices([item("B", "2.00")])  # same price again: nothing to do
        await s.settle()
        assert (await s.job("L3"))["rev"] == before["L3"]


async def test_bindings_plan_and_a_second_sku_is_refused(tmp_path: Path) -> None:
    async with label_store(tmp_path) as s:
        await s.prices([item("A", "1.00"), item("B", "2.00")], kind="full")
        await s.bindings.bind("L1", "A", "hq")
        await s.settle()
        assert json.loads((await s.job("L1"))["face"])["sku"] == "A"
        with pytest.raises(CommandRefusedError, match="unbind it before"):
            await s.bindings.bind("L1", "B", "hq")
        await s.settle()
        job = await s.job("L1")
        assert job["sku"] == "A"  # the job path never saw B
        await s.bindings.unbind("L1", "hq")
        await s.settle()
        assert "L1" not in await s.jobs()
        assert await s.audit("L1") == [("L1", "queued"), ("L1", "superseded")]


async def test_bound_sku_without_price_shows_price_unavailable_with_an_alert(
    tmp_path: Path,
) -> None:
    async with label_store(tmp_path) as s:
        await s.bindings.bind("L1", "NOPRICE", "hq")
        await s.settle()
        job = await s.job("L1")
        assert json.loads(job["face"]) == {"sku": "NOPRICE", "price": None}
        assert job["content_hash"] is not None
        await s.pipeline.reconcile()
        assert "label.no_price:NOPRICE" in s.alert_keys()
        await s.prices([item("NOPRICE", "0.99")])
        await s.settle()
        await s.pipeline.reconcile()
        assert "label.no_price:NOPRICE" not in s.alert_keys()
        assert json.loads((await s.job("L1"))["face"])["price"] == "0.99"


async def test_receipts_reach_the_outbox_in_order(tmp_path: Path) -> None:
    driver = CountingDriver()
    async with label_store(tmp_path, drivers={"esl": driver}) as s:
        driver.clock = s.clock
        await s.bindings.bind("L1", "A", "hq")
        await s.prices([item("A", "1.00")], kind="full")
        await s.settle()
        await s.pipeline.dispatch_once()
        await s.confirm_all(driver)
        await s.prices([item("A", "1.20")])
        await s.settle()
        await s.prices([item("A", "1.30")])  # supersedes 1.20 before it was sent
        await s.settle()
        await s.pipeline.dispatch_once()
        await s.confirm_all(driver)
        while await s.pipeline.pump_receipts():
            pass
        receipts = await s.receipts()
        assert [(kind, body["price_version"]) for kind, body in receipts] == [
            ("label.queued", 1),
            ("label.confirmed", 1),
            ("label.queued", 2),
            ("label.superseded", 2),
            ("label.queued", 3),
            ("label.confirmed", 3),
        ]
        confirmed = receipts[-1][1]
        assert confirmed["evidence"] == "fake: xfer complete"
        assert confirmed["content_hash"] == driver.pushes[-1].content_hash
        events = await s.outbox.read("receipts", after_seq=0, max_events=1000, max_bytes=10**9)
        for event in events:
            validate_event(event.wire())
        assert len(driver.pushes) == 2  # 1.20 was never sent


async def test_sla_alert_counts_unconfirmed_labels_and_clears(tmp_path: Path) -> None:
    driver = CountingDriver()
    async with label_store(tmp_path, drivers={"esl": driver}, sla_s=600) as s:
        driver.clock = s.clock
        for n in range(3):
            await s.bindings.bind(f"L{n}", "A", "hq")
        await s.prices([item("A", "1.00")], kind="full")
        await s.settle()
        await s.pipeline.dispatch_once()
        await s.pipeline.upkeep(reconcile=False)
        assert "label.sla" not in s.alert_keys()
        s.clock.advance(601)
        await s.pipeline.upkeep(reconcile=False)
        alert = next(a for a in s.alerts.active() if a.key == "label.sla")
        assert alert.details["count"] == 3
        await s.confirm_all(driver)
        await s.pipeline.upkeep(reconcile=False)
        assert "label.sla" not in s.alert_keys()


async def test_audit_retention_prunes_only_forwarded_old_rows(tmp_path: Path) -> None:
    async with label_store(tmp_path, audit_retention_days=1) as s:
        await s.bindings.bind("L1", "A", "hq")
        await s.prices([item("A", "1.00")], kind="full")
        await s.settle()
        s.clock.advance(2 * 86400)
        await s.pipeline.prune_audit()
        assert await s.audit() == [("L1", "queued")]  # not forwarded yet: kept
        await s.pipeline.pump_receipts()
        await s.prices([item("A", "1.10")])
        await s.settle()
        await s.pipeline.prune_audit()
        assert await s.audit() == [("L1", "superseded"), ("L1", "queued")]
        assert [kind for kind, _ in await s.receipts()] == ["label.queued"]
