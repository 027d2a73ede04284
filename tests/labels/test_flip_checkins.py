"""Check-ins shortened ahead of a scheduled flip and put back after it, through the scheduler,
with an ESL driver that implements ``PreparesFlips`` (a small working fake: an access point's
``maxsleep`` and what it saved, kept apart from the driver object as an instance memory is)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from gateway.clock import FakeClock
from gateway.drivers.contracts import FlipRestoreToken, LabelDriver, PreparesFlips
from gateway.errors import DriverUnavailableError
from tests.labels.support import CountingDriver, LabelStore, item, label_store, later, promo


@dataclass
class AccessPointState:
    """What outlives a driver object: the AP's setting and the value saved to put back."""

    maxsleep_min: int = 10
    saved: int | None = None
    refuse: bool = False
    calls: list[tuple[str, datetime]] = field(default_factory=list)
    tokens: list[FlipRestoreToken | None] = field(default_factory=list)  # restore_checkins got


@dataclass
class SleepyDriver(CountingDriver):
    ap: AccessPointState = field(default_factory=AccessPointState)

    @property
    def checkin_interval_s(self) -> float:
        return self.ap.maxsleep_min * 60.0

    async def prepare_flip(self, window_start: datetime, window_end: datetime) -> FlipRestoreToken:
        if self.ap.refuse:
            raise DriverUnavailableError("save_apcfg refused: HTTP 403")
        self.ap.calls.append(("prepare", self.clock.utc_now()))
        if self.ap.saved is None:
            self.ap.saved = self.ap.maxsleep_min
        self.ap.maxsleep_min = 1
        return {"maxsleep": self.ap.saved}

    async def restore_checkins(self, token: FlipRestoreToken | None = None) -> str | None:
        if self.ap.refuse:
            raise DriverUnavailableError("save_apcfg refused: HTTP 403")
        self.ap.calls.append(("restore", self.clock.utc_now()))
        self.ap.tokens.append(token)
        if token is not None:
            self.ap.maxsleep_min, self.ap.saved = int(token.get("maxsleep") or 10), None
        elif self.ap.saved is not None:
            self.ap.maxsleep_min, self.ap.saved = self.ap.saved, None
        return None


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


async def test_check_ins_are_shortened_before_a_flip_and_put_back_after(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = SleepyDriver(clock=clock, rate=60)
    assert isinstance(driver, PreparesFlips)
    drivers: dict[str, LabelDriver | None] = {"esl": driver}
    async with label_store(tmp_path, clock=clock, drivers=drivers, flip_tolerance_s=60) as s:
        due = await flip_in(s, clock, minutes=14)
        await s.pipeline.scheduler_pass()
        assert driver.ap.calls == []  # 14 min ahead: more than the 10 min interval (+1)
        clock.advance(3 * 60)
        await s.pipeline.scheduler_pass()
        [(call, at)] = driver.ap.calls
        assert call == "prepare"
        assert due - at >= timedelta(minutes=10)
        assert driver.ap.maxsleep_min == 1
        clock.advance(11 * 60)  # the flip: 4 labels at 60/min, then the 60 s tolerance
        await s.pipeline.scheduler_pass()
        assert (await s.job("L0"))["scheduled"] == 1
        assert [c for c, _ in driver.ap.calls] == ["prepare"]
        clock.advance(64)
        await s.pipeline.scheduler_pass()
        assert [c for c, _ in driver.ap.calls] == ["prepare", "restore"]
        assert driver.ap.calls[1][1] >= due + timedelta(seconds=64)
        assert driver.ap.maxsleep_min == 10
        assert "label.flip_checkins" not in s.alert_keys()


async def test_a_refusing_ap_is_alerted_and_the_flip_still_goes_out(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = SleepyDriver(clock=clock, rate=60)
    driver.ap.refuse = True
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}) as s:
        await flip_in(s, clock, minutes=5)
        await s.pipeline.scheduler_pass()
        alert = next(a for a in s.alerts.active() if a.key == "label.flip_checkins")
        assert "403" in alert.message
        assert "the flip goes ahead" in alert.message
        assert driver.ap.maxsleep_min == 10
        # Its labels may get the flip only when they wake: planned with the 10 min interval.
        late = next(a for a in s.alerts.active() if a.key == "label.flip_late")
        assert late.details["flips"][0]["late_by_s"] == 600 - 120
        await s.pipeline.render_all()
        clock.advance(5 * 60)
        pushed = len(driver.pushes)
        await s.pipeline.scheduler_pass()
        assert await s.pipeline.dispatch_once() == 4  # the flip is still attempted
        assert {c.label_id for c in driver.pushes[pushed:]} == {"L0", "L1", "L2", "L3"}
        driver.ap.refuse = False  # the AP answers again: prepared late, alert cleared
        await s.pipeline.scheduler_pass()
        assert "label.flip_checkins" not in s.alert_keys()


async def test_a_driver_restarted_within_the_window_is_told_to_put_back(tmp_path: Path) -> None:
    clock = FakeClock()
    state = AccessPointState()
    drivers: dict[str, LabelDriver | None] = {"esl": SleepyDriver(clock=clock, rate=60, ap=state)}
    async with label_store(tmp_path, clock=clock, drivers=drivers) as s:
        await flip_in(s, clock, minutes=5)
        await s.pipeline.scheduler_pass()
        assert state.maxsleep_min == 1
        drivers["esl"] = SleepyDriver(clock=clock, rate=60, ap=state)  # the supervisor's restart
        clock.advance(3600)
        await s.pipeline.scheduler_pass()
        assert state.maxsleep_min == 10
        assert [c for c, _ in state.calls] == ["prepare", "restore"]


async def test_a_window_that_ended_while_the_gateway_was_down_is_put_back_at_start(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    state = AccessPointState(maxsleep_min=7)
    drivers: dict[str, LabelDriver | None] = {"esl": SleepyDriver(clock=clock, rate=60, ap=state)}
    async with label_store(tmp_path, clock=clock, drivers=drivers) as s:
        await flip_in(s, clock, minutes=5)
        await s.pipeline.scheduler_pass()
        assert state.maxsleep_min == 1
    clock.advance(3600)  # down until well after the window; the driver remembers nothing
    state.saved = None
    drivers = {"esl": None}  # not running yet at start: no alert, no restore
    async with label_store(tmp_path, clock=clock, drivers=drivers) as s:
        await s.pipeline.scheduler_pass()
        assert "label.flip_checkins" not in s.alert_keys()
        drivers["esl"] = SleepyDriver(clock=clock, rate=60, ap=state)
        await s.pipeline.scheduler_pass()
        assert state.tokens == [{"maxsleep": 7}]
        assert state.maxsleep_min == 7
        assert not await s.db.fetchall("SELECT * FROM label_flip_windows")


async def test_a_driver_that_stays_down_after_a_restart_is_alerted(tmp_path: Path) -> None:
    clock = FakeClock()
    state = AccessPointState()
    drivers: dict[str, LabelDriver | None] = {"esl": SleepyDriver(clock=clock, rate=60, ap=state)}
    async with label_store(tmp_path, clock=clock, drivers=drivers) as s:
        await flip_in(s, clock, minutes=5)
        await s.pipeline.scheduler_pass()
    clock.advance(3600)
    async with label_store(tmp_path, clock=clock, drivers={"esl": None}) as s:
        await s.pipeline.scheduler_pass()
        assert "label.flip_checkins" not in s.alert_keys()  # starting: it may come up yet
        clock.advance(61)
        await s.pipeline.scheduler_pass()
        alert = next(a for a in s.alerts.active() if a.key == "label.flip_checkins")
        assert "not running" in alert.message
