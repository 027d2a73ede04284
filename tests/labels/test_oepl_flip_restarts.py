"""A flip window across gateway restarts with the real ``esl.oepl`` driver and the fake access
point: the scheduler lowers the AP's ``maxsleep``, the gateway (pipeline, database and driver,
its memory with it) stops mid-window and starts again, and after the window the AP's *own*
value is put back from the restore token kept in SQLite — not the firmware's default, not the
flip value. A token damaged in the database puts back the default, with an alert saying so."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from devices.simulated.oepl_ap import FakeAccessPoint
from gateway.clock import FakeClock
from gateway.drivers.contracts import LabelDriver
from tests.devices.oepl_support import running
from tests.labels.support import LabelStore, item, label_store, later, promo


async def flip_in(s: LabelStore, clock: FakeClock, minutes: float) -> datetime:
    start = later(clock, minutes=minutes)
    for n in range(4):
        await s.bindings.bind(f"L{n}", "S0", "hq")
    await s.prices(
        [item("S0", "2.00")],
        kind="full",
        promotions=[promo("sale", "S0", "1.00", start, later(clock, hours=3))],
    )
    await s.settle()
    return start


async def test_a_gateway_restarted_mid_window_puts_back_the_aps_own_maxsleep(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with FakeAccessPoint(tag_count=1) as ap:
        ap.maxsleep_min = 7
        async with running(ap) as rig:
            drivers: dict[str, LabelDriver | None] = {"esl": rig.driver}
            async with label_store(tmp_path, clock=clock, drivers=drivers) as s:
                await flip_in(s, clock, minutes=5)
                await s.pipeline.scheduler_pass()
                assert ap.maxsleep_min == 1
        clock.advance(60)
        async with running(ap) as rig:  # started again within the window
            assert ap.maxsleep_min == 1
            async with label_store(tmp_path, clock=clock, drivers={"esl": rig.driver}) as s:
                await s.pipeline.scheduler_pass()
                assert ap.maxsleep_min == 1  # the window is still on
        clock.advance(3600)
        async with (
            running(ap) as rig,  # and again, after the window
            label_store(tmp_path, clock=clock, drivers={"esl": rig.driver}) as s,
        ):
            await s.pipeline.scheduler_pass()
            assert ap.maxsleep_min == 7
            assert not {k for k in s.alert_keys() if k.startswith("label.flip_checkins")}
            assert not await s.db.fetchall("SELECT * FROM label_flip_windows")


@pytest.mark.parametrize(
    ("stored", "why"),
    [("{not json", "not JSON"), ('{"maxsleep_min": "seven"}', "could not be read")],
)
async def test_a_damaged_token_puts_back_the_firmware_default_with_an_alert(
    tmp_path: Path, stored: str, why: str
) -> None:
    clock = FakeClock()
    async with FakeAccessPoint(tag_count=1) as ap:
        ap.maxsleep_min = 7
        async with running(ap) as rig:
            drivers: dict[str, LabelDriver | None] = {"esl": rig.driver}
            async with label_store(tmp_path, clock=clock, drivers=drivers) as s:
                await flip_in(s, clock, minutes=5)
                await s.pipeline.scheduler_pass()
                await s.db.write("UPDATE label_flip_windows SET token = ?", (stored,))
        clock.advance(3600)
        async with (
            running(ap) as rig,
            label_store(tmp_path, clock=clock, drivers={"esl": rig.driver}) as s,
        ):
            await s.pipeline.scheduler_pass()
            assert ap.maxsleep_min == 10  # the firmware's default, not the flip value
            alert = s.alerts.get("label.flip_checkins_default:esl")
            assert alert is not None
            assert why in alert.message
            assert "firmware's default 10 min" in alert.message
            assert "label.flip_checkins" not in s.alert_keys()
            # The next window put back as it was clears it.
            ap.maxsleep_min = 7
            await flip_in(s, clock, minutes=5)
            await s.pipeline.scheduler_pass()
            assert ap.maxsleep_min == 1
            clock.advance(3600)
            await s.pipeline.scheduler_pass()
            assert ap.maxsleep_min == 7
            assert "label.flip_checkins_default:esl" not in s.alert_keys()
