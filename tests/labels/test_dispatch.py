"""Dispatch and driver reports: pacing, driver down, retries, lost confirmations, drift,
restarts."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from gateway.clock import FakeClock
from gateway.drivers.contracts import LabelDriver, LabelReportKind
from tests.labels.support import CountingDriver, item, label_store


async def _store_with(s, labels: int) -> None:  # type: ignore[no-untyped-def]
    for n in range(labels):
        await s.bindings.bind(f"L{n:03d}", f"S{n % 5}", "hq")
    await s.prices([item(f"S{n}", "1.00") for n in range(5)], kind="full")
    await s.settle()


async def test_pacing_keeps_a_few_seconds_of_work_per_driver(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(rate=60.0, clock=clock)  # one label a second
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}, queue_ahead_s=5) as s:
        await _store_with(s, 20)
        assert await s.pipeline.dispatch_once() == 5
        assert await s.pipeline.dispatch_once() == 0  # the window is full
        clock.advance(11 * 60)  # they never checked in: timed out, not on the radio
        assert await s.pipeline.dispatch_once() == 5
        await s.confirm_all(driver)
        assert await s.pipeline.dispatch_once() == 5
        states = {j["state"] for j in (await s.jobs()).values()}
        assert states == {"confirmed", "pending", "queued"}


async def test_driver_down_jobs_wait_with_an_alert_then_flow(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    drivers: dict[str, LabelDriver | None] = {"esl": None}
    async with label_store(tmp_path, clock=clock, drivers=drivers) as s:
        await _store_with(s, 4)
        assert await s.pipeline.dispatch_once() == 0
        clock.advance(3600)  # an hour down: nothing lost
        await s.pipeline.upkeep(reconcile=False)
        assert "label.driver_down:esl" in s.alert_keys()
        alert = next(a for a in s.alerts.active() if a.key == "label.driver_down:esl")
        assert alert.details == {"waiting": 4}
        drivers["esl"] = driver
        assert await s.pipeline.dispatch_once() == 4
        await s.pipeline.upkeep(reconcile=False)
        assert "label.driver_down:esl" not in s.alert_keys()
        await s.confirm_all(driver)
        assert {j["state"] for j in (await s.jobs()).values()} == {"confirmed"}


async def test_failures_retry_with_backoff_and_config_errors_are_permanent(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock, refuse={"L001"})
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await _store_with(s, 3)
        assert await s.pipeline.dispatch_once() == 2
        job = await s.job("L001")
        assert job["state"] == "failed_permanent"
        assert "unknown label L001" in job["last_error"]
        digest = (await s.job("L000"))["content_hash"]
        s.pipeline.on_reading(
            "esl", driver.report("L000", LabelReportKind.FAILED, digest, "xfer timeout")
        )
        await s.pipeline.process_reports()
        job = await s.job("L000")
        assert (job["state"], job["last_error"]) == ("failed", "xfer timeout")
        assert await s.pipeline.dispatch_once() == 0  # not before its backoff
        clock.advance(20)  # beyond the first backoff ceiling (10 s)
        assert await s.pipeline.dispatch_once() == 1
        assert driver.pushed("L000") == [digest, digest]
        assert (await s.job("L000"))["attempts"] == 2
        driver.unavailable = True  # the access point stops answering: retryable
        s.pipeline.on_reading(
            "esl", driver.report("L000", LabelReportKind.FAILED, digest, "xfer timeout")
        )
        await s.pipeline.process_reports()
        clock.advance(60)
        assert await s.pipeline.dispatch_once() == 0
        assert (await s.job("L000"))["state"] == "failed"
        assert "access point does not answer" in (await s.job("L000"))["last_error"]


async def test_lost_confirmation_is_resolved_by_seen(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await _store_with(s, 1)
        await s.pipeline.dispatch_once()
        digest = driver.pushes[-1].content_hash
        # The label got it but its confirmation was lost; its next check-in shows the hash.
        s.pipeline.on_reading(
            "esl", driver.report("L000", LabelReportKind.SEEN, digest, "check-in")
        )
        await s.pipeline.process_reports()
        job = await s.job("L000")
        assert job["state"] == "confirmed"
        assert job["evidence"] == "seen with expected content (check-in)"
        # A late duplicate confirmation changes nothing.
        s.pipeline.on_reading("esl", driver.report("L000", LabelReportKind.CONFIRMED, digest))
        await s.pipeline.process_reports()
        assert await s.audit("L000") == [("L000", "queued"), ("L000", "confirmed")]


async def test_unconfirmed_push_times_out_and_is_retried(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(
        tmp_path, clock=clock, drivers={"esl": driver}, confirm_timeout_s=60
    ) as s:
        await _store_with(s, 1)
        await s.pipeline.dispatch_once()
        clock.advance(61)
        await s.pipeline.upkeep(reconcile=False)
        job = await s.job("L000")
        assert job["state"] == "failed"
        assert job["last_error"] == "no confirmation within 60 s"


async def test_a_label_asleep_when_pushed_times_out_only_after_its_check_in(
    tmp_path: Path,
) -> None:
    """``confirm_timeout_s`` (600 s) is as long as an access point's ``maxsleep`` (10 min):
    content for a tag sleeping 10 min counts from its check-in, so it is not sent again; a
    tag that never checks in still times out."""
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await _store_with(s, 2)
        for label in ("L000", "L001"):
            report = driver.report(label, LabelReportKind.SEEN, None)
            wake = clock.utc_now() + timedelta(minutes=10)
            s.pipeline.on_reading("esl", replace(report, next_checkin=wake))
        await s.settle()
        assert await s.pipeline.dispatch_once() == 2
        clock.advance(10 * 60 + 30)  # 630 s after the push, 30 s after their check-in
        await s.pipeline.upkeep(reconcile=False)
        assert {(await s.job(label))["state"] for label in ("L000", "L001")} == {"pending"}
        s.pipeline.on_reading(  # L000 woke and got it; L001 is lost
            "esl", driver.report("L000", LabelReportKind.CONFIRMED, driver.pushed("L000")[0])
        )
        await s.pipeline.process_reports()
        clock.advance(600)
        await s.pipeline.upkeep(reconcile=False)
        assert (await s.job("L000"))["state"] == "confirmed"
        lost = await s.job("L001")
        assert lost["state"] == "failed"
        assert lost["last_error"] == "no confirmation within 600 s"
        assert len(driver.pushes) == 2  # nothing sent again while the tags slept


async def test_label_rebooted_to_old_content_is_re_pushed(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await _store_with(s, 1)
        await s.pipeline.dispatch_once()
        await s.confirm_all(driver)
        digest = driver.pushes[-1].content_hash
        # The label rebooted: its hash is zeroed (OEPL), seen at its next check-in.
        driver.shows["L000"] = None
        s.pipeline.on_reading("esl", driver.report("L000", LabelReportKind.SEEN, None))
        await s.pipeline.process_reports()
        assert (await s.job("L000"))["state"] == "queued"
        await s.pipeline.dispatch_once()
        assert driver.pushed("L000") == [digest, digest]
        await s.confirm_all(driver)
        assert (await s.job("L000"))["state"] == "confirmed"
        events = [event for _, event in await s.audit("L000")]
        assert events == ["queued", "confirmed", "requeued", "confirmed"]


async def test_reconciliation_re_pushes_drift(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await _store_with(s, 2)
        await s.pipeline.dispatch_once()
        await s.confirm_all(driver)
        # What the driver last confirmed for L001 differs from its job (e.g. edited by hand).
        await s.db.write("UPDATE label_shown SET content_hash = 'other' WHERE label = 'L001'")
        await s.pipeline.load()
        await s.pipeline.reconcile()
        jobs = await s.jobs()
        assert (jobs["L000"]["state"], jobs["L001"]["state"]) == ("confirmed", "queued")


async def test_content_identical_to_what_the_label_shows_is_not_sent(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await _store_with(s, 1)
        await s.pipeline.dispatch_once()
        await s.confirm_all(driver)
        await s.prices([item("S0", "2.00")])
        await s.settle()
        await s.prices([item("S0", "1.00")])  # back before the 2.00 was sent
        await s.settle()
        job = await s.job("L000")
        assert job["state"] == "confirmed"
        assert job["evidence"] == "the label already shows this content"
        assert await s.pipeline.dispatch_once() == 0
        assert [e for _, e in await s.audit("L000")][-2:] == ["superseded", "unchanged"]


async def test_restart_with_jobs_in_flight_re_sends_each_label_at_most_once(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    first = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": first}) as s:
        await _store_with(s, 30)
        assert await s.pipeline.dispatch_once() == 30
        await s.confirm_all(CountingDriver(clock=clock, pushes=first.pushes[:10]))
    # "Crash": a new runtime on the same database, a new driver (the old queue is gone).
    second = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": second}) as s:
        while await s.pipeline.dispatch_once():
            pass
        await s.confirm_all(second)
        assert len(second.pushes) == 20
        assert len({c.label_id for c in second.pushes}) == 20
        assert {j["state"] for j in (await s.jobs()).values()} == {"confirmed"}
        assert await s.pipeline.dispatch_once() == 0


async def test_a_restarted_driver_gets_what_was_in_flight_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    first = CountingDriver(clock=clock)
    drivers: dict[str, LabelDriver | None] = {"esl": first}
    async with label_store(tmp_path, clock=clock, drivers=drivers) as s:
        await _store_with(s, 6)
        assert await s.pipeline.dispatch_once() == 6
        await s.confirm_all(CountingDriver(clock=clock, pushes=first.pushes[:2]))
        assert await s.pipeline.dispatch_once() == 0  # four in flight, nothing new
        # The supervisor restarts the driver: a new object, the access point's queue is gone.
        second = CountingDriver(clock=clock)
        drivers["esl"] = second
        assert await s.pipeline.dispatch_once() == 4  # at once, not after confirm_timeout_s
        assert sorted(c.label_id for c in second.pushes) == sorted(
            c.label_id for c in first.pushes[2:]
        )
        await s.confirm_all(second)
        assert {j["state"] for j in (await s.jobs()).values()} == {"confirmed"}
        assert await s.pipeline.dispatch_once() == 0  # once each


async def test_content_for_labels_asleep_until_later_does_not_hold_the_window(
    tmp_path: Path,
) -> None:
    """An access point's tags sleep minutes between check-ins and get content only when they
    wake: what waits for a sleeping label is not radio work yet, so it goes out in the same
    pass beside the window's few seconds of work — until the labels are due to wake."""
    clock = FakeClock()
    driver = CountingDriver(rate=60.0, clock=clock)  # one label a second: 5 in flight
    async with label_store(
        tmp_path, clock=clock, drivers={"esl": driver}, queue_ahead_s=5, confirm_timeout_s=3600
    ) as s:

        async def deliver_awake() -> None:  # labels L010 on have no wake-up reported
            for content in driver.pushes:
                if content.label_id >= "L010" and driver.shows.get(content.label_id) is None:
                    report = driver.report(content.label_id, LabelReportKind.CONFIRMED, None)
                    report = replace(report, content_hash=content.content_hash)
                    driver.shows[content.label_id] = content.content_hash
                    s.pipeline.on_reading("esl", report)
            while await s.pipeline.process_reports():
                pass

        await _store_with(s, 25)
        for n in range(10):  # the first ten check in again in 10 minutes
            report = driver.report(f"L{n:03d}", LabelReportKind.SEEN, None)
            s.pipeline.on_reading(
                "esl", replace(report, next_checkin=clock.utc_now() + timedelta(minutes=10))
            )
        await s.settle()
        assert await s.pipeline.dispatch_once() == 15  # ten asleep, and the window's five
        assert await s.pipeline.dispatch_once() == 0
        await deliver_awake()
        assert await s.pipeline.dispatch_once() == 5
        await deliver_awake()
        clock.advance(9 * 60 + 56)  # the ten are due to wake: on the radio now
        assert await s.pipeline.dispatch_once() == 0  # five wait
        clock.advance(11 * 60)  # they never checked in: timed out, not on the radio
        assert await s.pipeline.dispatch_once() == 5
