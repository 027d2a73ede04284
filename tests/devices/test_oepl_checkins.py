"""``esl.oepl`` against the fake access point: maxsleep lowered for a scheduled flip's window
and put back after it (also across restarts), the fake's check-in timing that makes it matter,
LED lengths, tags mounted turned, and ``cmd=clear`` only for our labels."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from devices.simulated.oepl_ap import FakeAccessPoint, FakeTag
from gateway.drivers.contracts import (
    InstanceMemory,
    LabelModel,
    LabelPalette,
    LabelReportKind,
    PreparesFlips,
)
from gateway.errors import DriverUnavailableError, LabelPanelMismatchError
from tests.devices.oepl_support import content, nothing_listening, running
from tests.waiting import until

TAG = "0000A00000000000"


def window() -> tuple[datetime, datetime]:
    start = datetime.now(UTC) + timedelta(minutes=10)
    return start, start + timedelta(minutes=30)


async def test_maxsleep_is_lowered_for_a_flip_and_the_aps_own_value_put_back() -> None:
    async with FakeAccessPoint(tag_count=1) as ap:
        ap.maxsleep_min = 7
        async with running(ap) as rig:
            assert isinstance(rig.driver, PreparesFlips)
            assert rig.driver.checkin_interval_s == 7 * 60
            assert await rig.driver.prepare_flip(*window()) == {"maxsleep_min": 7}
            assert ap.maxsleep_min == 1
            assert rig.driver.checkin_interval_s == 60
            # A second flip: 1 is not saved as the AP's own, the token stays.
            assert await rig.driver.prepare_flip(*window()) == {"maxsleep_min": 7}
            assert await rig.driver.restore_checkins() is None
            assert ap.maxsleep_min == 7
            await rig.driver.restore_checkins()  # nothing prepared: nothing to do
            assert ap.maxsleep_min == 7


async def test_a_driver_restarted_within_the_window_puts_back_the_aps_own_value() -> None:
    memory = InstanceMemory()  # the supervisor keeps it across restarts
    async with FakeAccessPoint(tag_count=1) as ap:
        async with running(ap, memory=memory) as rig:
            await rig.driver.prepare_flip(*window())
        assert ap.maxsleep_min == 1
        async with running(ap, memory=memory) as again:  # reads 1 from the AP now
            assert ap.maxsleep_min == 1  # the window is still on
            await again.driver.restore_checkins()
        assert ap.maxsleep_min == 10


async def test_a_new_process_puts_back_what_the_token_says_and_never_guesses() -> None:
    async with FakeAccessPoint(tag_count=1) as ap:
        ap.maxsleep_min = 7
        async with running(ap) as rig:
            token = await rig.driver.prepare_flip(*window())
        async with running(ap) as again:  # a new process: nothing remembered
            assert ap.maxsleep_min == 1  # left as it is, though it is the flip value
            # Asked again (a longer window): the AP's value now, the core keeps the first.
            assert await again.driver.prepare_flip(*window()) == {"maxsleep_min": 1}
            assert await again.driver.restore_checkins(token) is None
            assert ap.maxsleep_min == 7


@pytest.mark.parametrize(
    "token", [{}, {"maxsleep_min": "seven"}, {"maxsleep_min": 0}, {"maxsleep_min": True}]
)
async def test_an_unreadable_token_puts_back_the_firmware_default_and_says_so(
    token: dict[str, object],
) -> None:
    async with FakeAccessPoint(tag_count=1) as ap, running(ap) as rig:
        ap.maxsleep_min = 1
        instead = await rig.driver.restore_checkins(token)
        assert ap.maxsleep_min == 10
        assert instead is not None
        assert "firmware's default 10 min" in instead


async def test_an_ap_refusing_or_gone_is_unavailable_and_nothing_is_lost() -> None:
    memory = InstanceMemory()
    async with FakeAccessPoint(tag_count=1) as ap:
        ap.maxsleep_min = 5
        async with running(ap, memory=memory) as rig:
            ap.config_refused = True
            with pytest.raises(DriverUnavailableError, match="refused"):
                await rig.driver.prepare_flip(*window())
            assert ap.maxsleep_min == 5
            ap.config_refused = False
            await rig.driver.prepare_flip(*window())  # tried again: lands
            assert ap.maxsleep_min == 1
            ap.config_refused = True
            with pytest.raises(DriverUnavailableError):
                await rig.driver.restore_checkins()
            ap.config_refused = False
            await rig.driver.restore_checkins()
            assert ap.maxsleep_min == 5
    gone = FakeAccessPoint()
    gone.url = nothing_listening()
    with pytest.raises(DriverUnavailableError):
        async with running(gone, "gone"):
            pass


async def test_the_fake_ap_serves_a_sleeping_tag_when_it_wakes_and_honours_maxsleep() -> None:
    async with FakeAccessPoint(tag_count=1, minute_s=360.0) as ap, running(ap) as rig:
        tag = ap.tags[TAG]
        tag.wake_at = time.monotonic() + 3600  # asleep for an hour
        shown = content(TAG, "1.00")
        await rig.driver.push(shown)
        assert tag.queue  # queued at the AP, the tag asleep
        tag.wake_at = time.monotonic()  # it wakes
        await rig.confirmed(TAG, shown.content_hash)
        assert tag.wake_at - time.monotonic() > 1800  # told to sleep maxsleep (10 min) again
        await rig.driver.prepare_flip(*window())
        assert ap.sleep_s == 360.0  # the next sleeps are 1 min


async def test_the_led_flashes_about_as_long_as_asked() -> None:
    async with FakeAccessPoint(tag_count=1) as ap, running(ap) as rig:
        for seconds in (5.0, 30.0, 120.0):
            await rig.driver.flash(TAG, seconds=seconds)
            assert abs(ap.led_seconds[TAG] - seconds) <= 1.6


async def test_a_tag_mounted_upright_is_drawn_height_by_width() -> None:
    async with FakeAccessPoint([FakeTag(TAG, rotate=1)]) as ap, running(ap) as rig:
        upright = LabelModel(128, 296, LabelPalette.BWR, has_led=True)
        seen = rig.reports(LabelReportKind.SEEN, TAG)
        assert seen[0].model == upright
        with pytest.raises(LabelPanelMismatchError) as refused:
            await rig.driver.push(content(TAG, "x", LabelModel(296, 128, LabelPalette.BWR)))
        assert refused.value.panel == upright
        shown = content(TAG, "2.00", upright)
        await rig.driver.push(shown)
        await rig.confirmed(TAG, shown.content_hash)
        assert ap.upload_sizes[TAG] == (128, 296)  # the AP turns it onto the panel


async def test_a_pending_of_a_tag_that_is_not_ours_is_never_cleared() -> None:
    theirs = "0000A00000000001"
    async with FakeAccessPoint(tag_count=2, checkin_s=0.05) as ap, running(ap) as rig:
        ap.stick_pending(theirs)  # another client's content, or stuck: not ours to clear
        await until(lambda: len(rig.reports(LabelReportKind.SEEN, theirs)) >= 6)
        assert (theirs, "clear") not in ap.commands
