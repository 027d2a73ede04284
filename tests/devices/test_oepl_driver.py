"""``esl.oepl`` against the fake access point: delivery, and one named test per known trap
(research/esl.md)."""

from __future__ import annotations

import pytest

from devices.esl.protocol import content_hash
from devices.simulated.oepl_ap import FakeAccessPoint, FakeTag
from gateway.clock import ClockSyncSource, SystemClock
from gateway.drivers.contracts import LabelModel, LabelPalette, LabelReportKind
from gateway.errors import DriverConfigError, DriverUnavailableError, LabelPanelMismatchError
from gateway.hub import ReadingHub
from gateway.labels.directory import LabelDirectory
from tests.devices.oepl_support import PANEL, content, nothing_listening, running
from tests.waiting import until

TAG = "0000A00000000000"


async def test_push_is_confirmed_only_by_the_tags_xfer_complete() -> None:
    async with FakeAccessPoint(tag_count=2) as ap, running(ap) as rig:
        seen = rig.reports(LabelReportKind.SEEN, TAG)
        assert seen
        assert seen[0].model == PANEL  # the panel from the AP's tag type 0x01
        first = content(TAG, "1.99")
        await rig.driver.push(first)
        await rig.confirmed(TAG, first.content_hash)
        confirmed = rig.reports(LabelReportKind.CONFIRMED, TAG)
        assert "reports xfer complete" in confirmed[0].evidence
        assert ap.uploads == [TAG]


async def test_unknown_labels_and_wrong_panels_are_refused() -> None:
    async with FakeAccessPoint(tag_count=1) as ap, running(ap) as rig:
        with pytest.raises(DriverConfigError):
            await rig.driver.push(content("00000000DEADBEEF", "x"))
        with pytest.raises(DriverConfigError):
            await rig.driver.push(content("not a mac", "x"))
        small = LabelModel(152, 152, LabelPalette.BW)
        with pytest.raises(LabelPanelMismatchError) as refused:
            await rig.driver.push(content(TAG, "x", small))
        assert refused.value.panel == PANEL


async def test_trap_409_come_back_later_is_retried_after_a_pause() -> None:
    async with FakeAccessPoint(tag_count=1) as ap, running(ap) as rig:
        ap.busy_uploads = 3
        shown = content(TAG, "2.49")
        await rig.driver.push(shown)
        await rig.confirmed(TAG, shown.content_hash)
        assert ap.busy_uploads == 0


async def test_trap_409_for_too_long_is_unavailable_not_lost() -> None:
    async with FakeAccessPoint(tag_count=1) as ap, running(ap, busy_retries=1) as rig:
        ap.busy_uploads = 5
        with pytest.raises(DriverUnavailableError, match="busy"):
            await rig.driver.push(content(TAG, "2.49"))


async def test_trap_ap_reboot_losing_its_queue_is_pushed_again() -> None:
    async with FakeAccessPoint(tag_count=1, radio_s=60) as ap, running(ap) as rig:
        shown = content(TAG, "3.00")
        await rig.driver.push(shown)
        await until(lambda: ap.tags[TAG].queue, what="queued")
        await ap.reboot()
        ap.set_radio_s(0)
        await until(lambda: ap.uploads.count(TAG) == 2, what="re-pushed after REBOOTING")
        await rig.confirmed(TAG, shown.content_hash)


async def test_trap_tag_reboot_zeroes_its_hash_and_its_content_is_pushed_again() -> None:
    async with FakeAccessPoint(tag_count=1) as ap, running(ap) as rig:
        shown = content(TAG, "4.00")
        await rig.driver.push(shown)
        await rig.confirmed(TAG, shown.content_hash)
        await ap.reboot_tag(TAG)
        rebooted = await until(
            lambda: [r for r in rig.reports(LabelReportKind.SEEN, TAG) if "rebooted" in r.evidence]
        )
        assert rebooted[-1].content_hash is None  # it shows nothing now ...
        await until(lambda: ap.uploads.count(TAG) == 2, what="re-pushed by the driver")
        await until(lambda: len(rig.reports(LabelReportKind.CONFIRMED, TAG)) == 2)
        assert rig.reports(LabelReportKind.CONFIRMED, TAG)[-1].content_hash == shown.content_hash
        assert ap.tags[TAG].ap_hash != "0" * 32  # ... and its content again


async def test_trap_led_command_overwriting_the_hash_is_no_confirmation() -> None:
    async with FakeAccessPoint(tag_count=1, radio_s=60) as ap, running(ap) as rig:
        shown = content(TAG, "5.00")
        await rig.driver.flash(TAG)  # queued first: its xfer complete comes first
        await rig.driver.push(shown)
        ap.set_radio_s(0)
        await rig.confirmed(TAG, shown.content_hash)
        assert len(rig.reports(LabelReportKind.CONFIRMED, TAG)) == 1
        await rig.driver.flash(TAG)  # overwrites the AP's hash; the tag still shows ours
        await until(lambda: not ap.tags[TAG].queue and rig.driver._memory.shown[TAG].ap_hash)
        seen = await until(lambda: rig.reports(LabelReportKind.SEEN, TAG)[-1])
        assert seen.content_hash == shown.content_hash
        assert len(rig.reports(LabelReportKind.CONFIRMED, TAG)) == 1


async def test_trap_pending_stuck_is_cleared_and_pushed_again() -> None:
    async with FakeAccessPoint(tag_count=1, checkin_s=0.05) as ap, running(ap) as rig:
        shown = content(TAG, "6.00")
        await rig.driver.push(shown)
        await rig.confirmed(TAG, shown.content_hash)
        ap.stick_pending(TAG)
        await until(lambda: (TAG, "clear") in ap.commands, what="cmd=clear sent")
        assert not ap.tags[TAG].stuck_pending


async def test_trap_more_than_255_tags_are_all_read_without_relying_on_pos() -> None:
    async with FakeAccessPoint(tag_count=300, checkin_s=3600) as ap, running(ap) as rig:
        macs = {r.label_id for r in rig.reports(LabelReportKind.SEEN)}
        assert len(macs) >= 250
        last = "0000A0" + f"{299:010X}"
        shown = content(last, "7.00")
        await rig.driver.push(shown)  # beyond the pages: asked for with ?mac=
        await rig.confirmed(last, shown.content_hash)


async def test_trap_identical_content_is_not_sent_again_and_still_confirmed() -> None:
    async with FakeAccessPoint(tag_count=1) as ap, running(ap) as rig:
        shown = content(TAG, "8.00")
        await rig.driver.push(shown)
        await rig.confirmed(TAG, shown.content_hash)
        await until(lambda: rig.driver._memory.shown[TAG].ap_hash)
        await rig.driver.push(shown)
        await until(lambda: len(rig.reports(LabelReportKind.CONFIRMED, TAG)) == 2)
        assert ap.uploads == [TAG]


async def test_trap_identical_content_after_a_restart_is_confirmed_by_the_ap_not_queueing() -> None:
    async with FakeAccessPoint(tag_count=1) as ap:
        shown = content(TAG, "8.50")
        async with running(ap) as rig:
            await rig.driver.push(shown)
            await rig.confirmed(TAG, shown.content_hash)
        async with running(ap) as fresh:  # a new process: nothing remembered
            await fresh.driver.push(shown)
            await fresh.confirmed(TAG, shown.content_hash)
            assert "already shows" in fresh.reports(LabelReportKind.CONFIRMED, TAG)[0].evidence


async def test_trap_xfer_timeout_fails_the_job_with_that_evidence() -> None:
    async with FakeAccessPoint(tag_count=1) as ap, running(ap) as rig:
        ap.fail_deliveries.add(TAG)
        shown = content(TAG, "9.00")
        await rig.driver.push(shown)
        failed = await until(lambda: rig.reports(LabelReportKind.FAILED, TAG))
        assert failed[0].content_hash == shown.content_hash
        assert "xfer timeout" in failed[0].evidence
        assert not rig.reports(LabelReportKind.CONFIRMED, TAG)


async def test_trap_only_the_latest_content_is_sent_behind_a_queued_image() -> None:
    async with FakeAccessPoint(tag_count=1, radio_s=60) as ap, running(ap) as rig:
        first, second, third = (content(TAG, price) for price in ("1.00", "1.10", "1.20"))
        await rig.driver.push(first)
        await rig.driver.push(second)
        await rig.driver.push(third)
        assert ap.uploads == [TAG]  # the queued image is not replaced: the others wait
        ap.set_radio_s(0)
        await rig.confirmed(TAG, third.content_hash)
        assert ap.uploads == [TAG, TAG]  # second was never sent
        confirmed = [r.content_hash for r in rig.reports(LabelReportKind.CONFIRMED, TAG)]
        assert confirmed == [first.content_hash, third.content_hash]


async def test_trap_ap_answering_garbage_is_degraded_not_crashing() -> None:
    async with FakeAccessPoint(tag_count=1) as ap, running(ap) as rig:
        ap.garbage = True
        await until(lambda: rig.driver._garbage > 0)
        assert rig.error is None
        with pytest.raises(DriverUnavailableError):  # its tag database answers garbage
            await rig.driver.push(content("00000000DEADBEEF", "x"))
    async with FakeAccessPoint(tag_count=1) as ap:
        ap.garbage = True
        driver = running(ap)
        with pytest.raises(DriverUnavailableError):
            async with driver:
                pass


async def test_trap_unreachable_or_slow_ap_is_unavailable_and_other_aps_go_on() -> None:
    async with (
        FakeAccessPoint(tag_count=1) as slow,
        FakeAccessPoint(tag_count=1) as healthy,
        running(healthy, "ap-2") as other,
    ):
        slow.slow_s = 5
        with pytest.raises(DriverUnavailableError):
            async with running(slow, "ap-1", request_timeout_s=0.2):
                pass
        shown = content(TAG, "1.50")
        await other.driver.push(shown)
        await other.confirmed(TAG, shown.content_hash)
    gone = FakeAccessPoint()
    gone.url = nothing_listening()
    with pytest.raises(DriverUnavailableError):
        async with running(gone, "gone"):
            pass


async def test_trap_label_heard_by_two_aps_is_where_it_was_last_heard() -> None:
    clock = SystemClock(sync=ClockSyncSource.ASSUME)
    hub = ReadingHub()
    directory = LabelDirectory(hub, clock)
    first, second = (
        FakeAccessPoint([FakeTag(TAG)], checkin_s=3600),
        FakeAccessPoint([FakeTag(TAG)], checkin_s=3600),
    )
    async with first, second, running(first, "ap-1") as one, running(second, "ap-2") as two:
        for name, rig in (("ap-1", one), ("ap-2", two)):
            for reading in rig.readings:
                hub.publish(name, reading)
        assert directory.where(TAG) == "ap-2"
        await first.reboot_tag(TAG)  # the tag checks in at the first AP again
        report = await until(lambda: one.reports(LabelReportKind.SEEN, TAG)[1:])
        hub.publish("ap-1", report[-1])
        assert directory.where(TAG) == "ap-1"
    directory.close()
    assert content_hash(b"") != ""
