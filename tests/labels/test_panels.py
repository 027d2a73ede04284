"""Panels: a label's content is drawn for the panel its ESL system reports. Labels bound before
their first check-in wait for it; a refusal for the panel size is drawn again, never given up;
a swapped panel is drawn again; jobs a wrong panel left stuck recover at restart and by
reconciliation. A technician's ``label bind`` retries a failed job."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from gateway.clock import FakeClock
from gateway.drivers.contracts import LabelModel, LabelPalette, LabelReportKind
from tests.labels.support import (
    MODEL,
    CountingDriver,
    LabelStore,
    item,
    label_store,
    later,
    promo,
)

WIDE = LabelModel(400, 300, LabelPalette.BWR, has_led=True)
BIG = LabelModel(800, 480, LabelPalette.BWR, has_led=False)


def _size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        return image.size


async def _drain(s: LabelStore) -> None:
    while await s.pipeline.pump_receipts():
        pass


async def test_labels_bound_before_their_first_check_in_wait_for_their_panel(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    panels = {"L0": MODEL, "L1": WIDE, "L2": BIG}
    driver = CountingDriver(clock=clock, panels=dict(panels))
    async with label_store(
        tmp_path, clock=clock, drivers={"esl": driver}, heard_on_bind=False
    ) as s:
        await s.bindings.seed([(label, "S1") for label in panels])  # right after installation
        await s.prices([item("S1", "1.99")], kind="full")
        await s.settle()
        assert {j["state"] for j in (await s.jobs()).values()} == {"awaiting_model"}
        assert all(j["content_hash"] is None for j in (await s.jobs()).values())
        assert await s.pipeline.dispatch_once() == 0
        listing = await s.pipeline.listing()
        assert listing["counts"] == {"awaiting_model": 3}
        assert "report its panel" in listing["jobs"][0]["last_error"]
        shown = await s.pipeline.show("L2")
        assert (shown["job"]["state"], shown["panel"]) == ("awaiting_model", None)
        assert ("L2", "awaiting_model") in await s.audit("L2")
        await _drain(s)
        assert await s.receipts() == []  # nothing was drawn: nothing announced to HQ

        for label, model in panels.items():
            s.check_in(label, model)
        await s.settle()
        jobs = await s.jobs()
        assert {label: j["model"] for label, j in jobs.items()} == {
            "L0": "296x128:bwr",
            "L1": "400x300:bwr",
            "L2": "800x480:bwr",
        }
        assert {j["state"] for j in jobs.values()} == {"queued"}
        assert (await s.pipeline.show("L2"))["panel"] == "800x480:bwr"
        assert await s.pipeline.dispatch_once() == 3
        assert {c.label_id: _size(c.image_png) for c in driver.pushes} == {
            label: (model.width, model.height) for label, model in panels.items()
        }
        await s.confirm_all(driver)
        assert {j["state"] for j in (await s.jobs()).values()} == {"confirmed"}


async def test_a_refusal_naming_the_panel_is_drawn_again_for_it_never_permanent(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock, panels={"L1": BIG})
    async with label_store(
        tmp_path, clock=clock, drivers={"esl": driver}, heard_on_bind=False
    ) as s:
        await s.bindings.bind("L1", "S1", "hq")
        await s.prices([item("S1", "1.99")], kind="full")
        s.check_in("L1", None)  # its driver reports no model: the configured default is used
        await s.settle()
        assert (await s.job("L1"))["model"] == "296x128:bwr"
        assert await s.pipeline.dispatch_once() == 0  # refused: "not the label's panel"
        job = await s.job("L1")
        assert (job["state"], job["content_hash"], job["attempts"]) == ("queued", None, 0)
        assert "not the label's panel: drawn again for 800x480:bwr" in job["last_error"]
        assert (await s.pipeline.show("L1"))["panel"] == "800x480:bwr"
        await s.settle()
        assert (await s.job("L1"))["model"] == "800x480:bwr"
        assert await s.pipeline.dispatch_once() == 1
        assert _size(driver.pushes[-1].image_png) == (800, 480)
        await s.confirm_all(driver)
        assert (await s.job("L1"))["state"] == "confirmed"
        await _drain(s)
        kinds = [(kind, body.get("permanent")) for kind, body in await s.receipts()]
        assert kinds == [
            ("label.queued", None),
            ("label.superseded", None),
            ("label.queued", None),
            ("label.confirmed", None),
        ]
        superseded = next(b for k, b in await s.receipts() if k == "label.superseded")
        assert "drawn again for 800x480:bwr" in superseded["reason"]


async def test_a_refusal_naming_no_panel_is_retried_after_a_backoff(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock, panels={"L1": None})
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await s.bindings.bind("L1", "S1", "hq")
        await s.prices([item("S1", "1.99")], kind="full")
        await s.settle()
        assert await s.pipeline.dispatch_once() == 0
        job = await s.job("L1")
        assert job["state"] == "failed"  # retryable: the label may report its panel meanwhile
        assert job["next_attempt_at"] is not None
        s.check_in("L1", BIG)
        driver.panels["L1"] = BIG
        await s.settle()
        job = await s.job("L1")
        assert (job["state"], job["model"]) == ("queued", "800x480:bwr")
        assert await s.pipeline.dispatch_once() == 1  # drawn again: no backoff to wait out


async def test_a_swapped_panel_gets_its_content_and_flips_drawn_again(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await s.bindings.bind("L1", "S1", "hq")
        start, end = later(clock, minutes=5), later(clock, hours=2)
        await s.prices(
            [item("S1", "2.00")],
            kind="full",
            promotions=[promo("sale", "S1", "1.00", start, end, reference_price="2.00")],
        )
        await s.settle()
        await s.pipeline.dispatch_once()
        await s.confirm_all(driver)
        assert await s.pipeline.scheduler_pass()
        await s.pipeline.render_all()
        before = await s.job("L1")
        assert (before["state"], before["model"]) == ("confirmed", "296x128:bwr")
        flip = await s.db.fetchone("SELECT model, content_hash FROM label_schedule")
        assert flip is not None
        assert flip["model"] == "296x128:bwr"

        driver.panels["L1"] = BIG  # a technician put a 7.5" panel behind the label's id
        s.check_in("L1", BIG)
        await s.settle()
        job = await s.job("L1")
        assert (job["state"], job["model"], job["rev"]) == ("queued", "800x480:bwr", 2)
        flip = await s.db.fetchone("SELECT model, content_hash FROM label_schedule")
        assert flip is not None
        assert flip["model"] == "800x480:bwr"
        assert await s.pipeline.dispatch_once() == 1
        assert _size(driver.pushes[-1].image_png) == (800, 480)
        await s.confirm_all(driver)
        assert (await s.job("L1"))["state"] == "confirmed"
        clock.advance(5 * 60)  # the flip lands drawn for the new panel
        await s.pipeline.scheduler_pass()
        await s.pipeline.dispatch_once()
        assert driver.pushes[-1].model == BIG
        assert _size(driver.pushes[-1].image_png) == (800, 480)


async def _stuck_the_old_way(s: LabelStore, driver: CountingDriver) -> None:
    """What a gateway without panel handling left behind: a label bound before its check-in,
    drawn for the default panel, refused by the ESL system for good; the label checked in
    since (its driver reported 800x480)."""
    await s.bindings.bind("L1", "S1", "hq")
    await s.prices([item("S1", "1.99")], kind="full")
    await s.settle()
    await s.db.write(
        "UPDATE label_jobs SET state = 'failed_permanent', attempts = 1, "
        "last_error = 'esl: content for label L1 is 296x128, the panel is 800x480'"
    )
    s.check_in("L1", BIG)
    await s.pipeline.process_reports()
    await s.db.write("UPDATE label_jobs SET model = '296x128:bwr'")  # as it was drawn
    driver.panels["L1"] = BIG


async def test_jobs_stuck_on_a_wrong_panel_recover_by_reconciliation(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await _stuck_the_old_way(s, driver)
        await s.pipeline.reconcile()
        job = await s.job("L1")
        assert (job["state"], job["content_hash"]) == ("queued", None)
        await s.settle()
        assert await s.pipeline.dispatch_once() == 1
        await s.confirm_all(driver)
        job = await s.job("L1")
        assert (job["state"], job["model"]) == ("confirmed", "800x480:bwr")


async def test_jobs_stuck_or_waiting_for_a_panel_recover_across_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with label_store(tmp_path / "a", clock=clock, drivers={"esl": driver}) as s:
        await _stuck_the_old_way(s, driver)
    async with label_store(tmp_path / "a", clock=clock, drivers={"esl": driver}) as s:
        job = await s.job("L1")  # load() put it right
        assert (job["state"], job["content_hash"]) == ("queued", None)
        await s.settle()
        assert await s.pipeline.dispatch_once() == 1
        assert _size(driver.pushes[-1].image_png) == (800, 480)

    # A job parked while its label was unheard waits through a restart, then is drawn.
    async with label_store(
        tmp_path / "b", clock=clock, drivers={"esl": driver}, heard_on_bind=False
    ) as s:
        await s.bindings.bind("L2", "S2", "hq")
        await s.prices([item("S2", "3.49")], kind="full")
        await s.settle()
        assert (await s.job("L2"))["state"] == "awaiting_model"
    async with label_store(
        tmp_path / "b", clock=clock, drivers={"esl": driver}, heard_on_bind=False
    ) as s:
        assert (await s.job("L2"))["state"] == "awaiting_model"
        driver.panels["L2"] = WIDE
        s.check_in("L2", WIDE)
        await s.settle()
        assert await s.pipeline.dispatch_once() == 1
        assert _size(driver.pushes[-1].image_png) == (400, 300)
        await s.confirm_all(driver)
        assert (await s.job("L2"))["state"] == "confirmed"


async def test_retry_failed_queues_a_failed_job_of_the_bound_sku_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock, refuse={"L1"})
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await s.bindings.bind("L1", "S1", "hq")
        await s.prices([item("S1", "1.99")], kind="full")
        await s.settle()
        await s.pipeline.dispatch_once()
        assert (await s.job("L1"))["state"] == "failed_permanent"
        assert await s.pipeline.retry_failed("L1", "S2", "a technician") is None  # other SKU
        assert (await s.job("L1"))["state"] == "failed_permanent"
        driver.refuse.clear()  # the access point registered the label meanwhile
        assert await s.pipeline.retry_failed("L1", "S1", "a technician") == "queued"
        job = await s.job("L1")
        assert (job["state"], job["attempts"]) == ("queued", 0)
        assert await s.pipeline.dispatch_once() == 1
        await s.confirm_all(driver)
        assert (await s.job("L1"))["state"] == "confirmed"
        await _drain(s)
        queued = [b for k, b in await s.receipts() if k == "label.queued"]
        assert [b.get("reason") for b in queued] == [None, "a technician"]
        # A retryable failure waits for its backoff, unless retried.
        await s.prices([item("S1", "2.49")])
        await s.settle()
        assert await s.pipeline.dispatch_once() == 1
        digest = driver.pushes[-1].content_hash
        s.pipeline.on_reading("esl", driver.report("L1", LabelReportKind.FAILED, digest))
        await s.pipeline.process_reports()
        assert (await s.job("L1"))["state"] == "failed"
        assert await s.pipeline.dispatch_once() == 0  # its backoff
        assert await s.pipeline.retry_failed("L1", "S1", "a technician") == "queued"
        assert await s.pipeline.dispatch_once() == 1
