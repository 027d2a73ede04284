"""SlotCounter: one slot's sans-IO stock logic fed synthetic samples with synthetic time."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import FakeClock
from gateway.drivers.contracts import ScaleStatus, WeightSample
from gateway.shelves.slot_counter import (
    ChangeKind,
    CounterOutput,
    CounterSettings,
    Fault,
    FaultChange,
    SlotCounter,
    SlotSpec,
    StockAmbiguous,
    StockChange,
    StockState,
    StockStateChange,
)

UNIT = 250.0
TRAY = 60.0


def spec(**changes: object) -> SlotSpec:
    values: dict[str, object] = {
        "slot": "s1",
        "sku": "A",
        "unit_grams": UNIT,
        "tare_grams": TRAY,
        "min_count": 2,
    }
    values.update(changes)
    return SlotSpec(**values)  # type: ignore[arg-type]


class Run:
    """Drives a counter at 10 Hz with tiny deterministic noise; collects its outputs."""

    def __init__(self, counter: SlotCounter | None = None, **settings: float) -> None:
        self.counter = counter or SlotCounter(spec(), CounterSettings(**settings))  # type: ignore[arg-type]
        self.t = 0.0
        self.outputs: list[CounterOutput] = []
        self._next_tick = 1.0
        self._flip = 1.0

    def hold(
        self,
        seconds: float,
        grams: float | None,
        *,
        stable: bool | None = True,
        status: ScaleStatus = ScaleStatus.OK,
    ) -> None:
        end = self.t + seconds
        while self.t < end:
            self.t = round(self.t + 0.1, 6)
            self._flip = -self._flip
            raw = None if grams is None else grams + 0.4 * self._flip
            self.outputs += self.counter.observe(self.t, raw, stable, status)
            self._tick()

    def silence(self, seconds: float) -> None:
        end = self.t + seconds
        while self.t < end:
            self.t = round(self.t + 0.1, 6)
            self._tick()

    def _tick(self, *, device_up: bool = True) -> None:
        if self.t >= self._next_tick:
            self.outputs += self.counter.tick(self.t, device_up=device_up)
            self._next_tick += 1.0

    def items(self, count: int) -> float:
        return TRAY + count * UNIT

    def changes(self) -> list[tuple[ChangeKind, int | None, int | None, int | None]]:
        return [
            (o.kind, o.before, o.after, o.delta) for o in self.outputs if isinstance(o, StockChange)
        ]

    def of(self, kind: type[CounterOutput]) -> list[CounterOutput]:
        return [o for o in self.outputs if isinstance(o, kind)]


def started(count: int = 10, **settings: float) -> Run:
    run = Run(**settings)
    run.hold(15, run.items(count))
    assert run.counter.count == count
    run.outputs.clear()
    return run


# --- counting -------------------------------------------------------------------------------


def test_start_up_count_comes_from_the_absolute_level() -> None:
    run = Run()
    run.hold(15, run.items(7))
    assert run.changes() == [(ChangeKind.RECOUNT, None, 7, None)]
    assert run.counter.state is StockState.OK


def test_pick_is_counted_once_the_level_settles() -> None:
    run = started(10)
    run.hold(1.5, run.items(10) + 300, stable=False)  # the hand
    run.hold(5, run.items(9))
    assert run.changes() == [(ChangeKind.PICK, 10, 9, -1)]
    change = run.of(StockChange)[0]
    assert isinstance(change, StockChange)
    assert change.confidence > 0.9
    assert change.at - 1.5 - 15 <= 3.0  # within seconds of the hand leaving


def test_put_back_waits_out_the_rise_hold_then_counts() -> None:
    run = started(5)
    run.hold(1.5, run.items(5) + 200, stable=False)
    run.hold(8, run.items(7))
    assert run.changes() == []  # could still be someone leaning
    run.hold(5, run.items(7))
    assert run.changes() == [(ChangeKind.PUT, 5, 7, 2)]


def test_leaning_that_holds_steady_is_not_stock() -> None:
    run = started(5)
    for force in (400.0, 1900.0, 720.0):
        run.hold(0.3, run.items(5) + force / 2, stable=False)
        run.hold(7.5, run.items(5) + force)  # the device even says "stable"
        run.hold(0.3, run.items(5) + force / 2, stable=False)
        run.hold(5, run.items(5))
    assert run.changes() == []
    assert run.of(StockAmbiguous) == []


def test_a_pick_while_leaning_is_still_the_pick() -> None:
    run = started(5)
    run.hold(5, run.items(5) + 800)
    run.hold(1, run.items(4) + 800, stable=False)
    run.hold(3, run.items(4) + 800)
    run.hold(5, run.items(4))
    assert run.changes() == [(ChangeKind.PICK, 5, 4, -1)]


def test_half_an_item_is_ambiguous_and_the_count_unknown_until_recounted() -> None:
    run = started(6)
    run.hold(1, run.items(6), stable=False)
    run.hold(5, run.items(6) - 1.5 * UNIT)
    ambiguous = run.of(StockAmbiguous)
    assert len(ambiguous) == 1
    assert isinstance(ambiguous[0], StockAmbiguous)
    assert ambiguous[0].count_before == 6
    assert run.counter.count is None
    run.hold(1, run.items(4), stable=False)  # the half item goes: whole again
    run.hold(5, run.items(4))
    assert (ChangeKind.RECOUNT, None, 4, None) in run.changes()
    assert run.counter.count == 4


def test_recount_corrects_a_running_count_that_drifted_from_the_weight() -> None:
    run = started(6, recount_interval_s=30)
    run.counter.count = 5  # e.g. a change missed while the count was believed
    run.hold(40, run.items(6))
    assert run.changes() == [(ChangeKind.RECOUNT, 5, 6, 1)]


def test_zero_tracking_follows_creep_so_recounts_stay_right() -> None:
    run = started(4, recount_interval_s=60)
    grams = run.items(4)
    for _ in range(3 * 3600):  # 3 h at 1 s steps, creeping 10 g/h (0.12 of a unit)
        grams += 10 / 3600
        run.hold(1, grams)
    assert run.changes() == []
    assert run.counter.zero == pytest.approx(30, abs=5)


# --- stock states ---------------------------------------------------------------------------


def test_low_and_out_hold_then_clear_with_hysteresis_without_flapping() -> None:
    run = started(4, low_hold_s=20, clear_hold_s=10)
    run.counter.spec = spec(min_count=3)
    run.hold(1, run.items(4), stable=False)
    run.hold(30, run.items(3))  # count 3 = min: low after the hold
    states = [(o.previous, o.state) for o in run.of(StockStateChange)]  # type: ignore[union-attr]
    assert states == [(StockState.OK, StockState.LOW)]
    run.hold(1, run.items(3), stable=False)
    run.hold(30, run.items(4))  # 4 < min + hysteresis (1)? no: 4 >= 3 + 1 clears
    run.hold(1, run.items(4), stable=False)
    run.hold(3, run.items(3))  # back to low only briefly (the put-back takes its rise hold)
    run.hold(1, run.items(3), stable=False)
    run.hold(30, run.items(4))  # ... and up again before the low hold ran out: no flap
    run.hold(1, run.items(4), stable=False)
    run.hold(30, run.items(0))
    states = [(o.previous, o.state) for o in run.of(StockStateChange)]  # type: ignore[union-attr]
    assert states == [
        (StockState.OK, StockState.LOW),
        (StockState.LOW, StockState.OK),
        (StockState.OK, StockState.OUT),
    ]


# --- faults ---------------------------------------------------------------------------------


def faults(run: Run) -> list[tuple[Fault, ...]]:
    return [o.faults for o in run.of(FaultChange)]  # type: ignore[union-attr]


def test_no_data_is_raised_and_cleared_and_a_pick_meanwhile_still_counts() -> None:
    run = started(5)
    run.silence(60)
    run.hold(20, run.items(3))
    assert faults(run) == [(Fault.NO_DATA,), ()]
    assert run.changes() == [(ChangeKind.PICK, 5, 3, -2)]


def test_overload_is_debounced_and_never_counted() -> None:
    run = started(5)
    run.hold(1, None, status=ScaleStatus.OVERLOAD)  # a blip: no alert
    run.hold(10, run.items(5))
    assert faults(run) == []
    run.hold(20, None, status=ScaleStatus.OVERLOAD)
    run.hold(10, run.items(5))
    # an overload is no weight either: 10 s of it is no data too
    assert faults(run) == [(Fault.OVERLOAD,), (Fault.NO_DATA, Fault.OVERLOAD), ()]
    assert run.changes() == []


def test_stuck_value_and_disconnected_driver() -> None:
    run = started(5, stuck_s=30)
    counter = run.counter
    for second in range(40):
        run.outputs += counter.observe(run.t + second, run.items(5))
        run.outputs += counter.tick(run.t + second)
    assert faults(run) == [(Fault.STUCK,)]
    run.t += 40
    run.outputs += counter.tick(run.t + 1, device_up=False)
    run.outputs += counter.tick(run.t + 4, device_up=False)
    assert Fault.DISCONNECTED in faults(run)[-1]


def test_far_below_the_empty_tray_is_an_underload_fault() -> None:
    run = started(2)
    run.hold(1, 0.0, stable=False)
    run.hold(15, 0.0)  # the reading 60 g below the tray's tare: within slack
    assert Fault.UNDERLOAD not in run.counter.faults
    run.hold(15, -400.0)  # far below: the tray is gone or the tare is wrong
    assert Fault.UNDERLOAD in run.counter.faults


# --- configuration --------------------------------------------------------------------------


def test_spec_refuses_nonsense() -> None:
    for bad in ({"unit_grams": 0}, {"unit_grams": -5}, {"tolerance": 0.6}, {"gain": 0}):
        with pytest.raises(ValueError, match="s1"):
            spec(**bad)


def test_new_tare_rebases_without_events_and_new_unit_recounts() -> None:
    run = started(4)
    run.counter.reconfigure(spec(tare_grams=TRAY + UNIT))  # a technician's software tare
    run.hold(15, run.items(4))
    assert run.changes() == [(ChangeKind.RECOUNT, 4, 3, -1)]
    run.outputs.clear()
    run.counter.reconfigure(spec(tare_grams=TRAY + UNIT, unit_grams=UNIT / 2))
    run.hold(65, run.items(4))
    assert run.changes() == [(ChangeKind.RECOUNT, None, 6, None)]


def test_activity_counts_picks_and_put_backs() -> None:
    run = started(6)
    for count in (5, 3, 4):
        run.hold(1, run.items(6), stable=False)
        run.hold(12, run.items(count))
    activity = run.counter.take_activity()
    assert (activity.picks, activity.picked_items, activity.puts, activity.put_items) == (
        2,
        3,
        1,
        1,
    )
    assert not run.counter.take_activity().any()


# --- a unit that stops answering ------------------------------------------------------------


@dataclass(frozen=True)
class PollBackoff:
    """When ``modbus.rtu`` polls a unit that does not answer, and so when its slots get an
    ERROR sample without weight: every cycle until ``failures_before_backoff`` failures in a
    row, then after skipping 1, 2, 4 ... cycles, at most ``max_backoff_cycles``."""

    period_s: float
    timeout_s: float
    failures_before_backoff: int
    max_backoff_cycles: int

    def error_times(self, start: float, end: float) -> list[float]:
        times: list[float] = []
        at, failures, backoff = start, 0, 0
        while True:
            at += self.timeout_s  # the poll fails when its reply timeout runs out
            if at >= end:
                return times
            times.append(at)
            failures += 1
            skip = 0
            if failures >= self.failures_before_backoff:
                backoff = min(max(1, backoff * 2), self.max_backoff_cycles)
                skip = backoff
            at += (skip + 1) * self.period_s


#: the issue's bus: 10 Hz, 0.2 s timeout, backing off after 3 failures up to 64 cycles (6.4 s)
DEFAULT_BACKOFF = PollBackoff(0.1, 0.2, 3, 64)


class Shelf:
    """One slot's counter fed as the shelves service feeds it, in time kept by a FakeClock:
    samples of the slot's channel, a tick every second. ``check`` runs after every step."""

    def __init__(self, settings: CounterSettings, check: Callable[[Shelf], None]) -> None:
        self.clock = FakeClock()
        self.counter = SlotCounter(spec(), settings, self.clock.monotonic())
        self.outputs: list[CounterOutput] = []
        self.check = check
        self.ticked = False  # whether the last step was a tick
        self._next_tick = self.clock.monotonic() + 1.0
        self._flip = 0.4

    @property
    def now(self) -> float:
        return self.clock.monotonic()

    def view(self) -> dict[str, object]:
        return self.counter.snapshot().as_dict()

    def faults(self) -> list[tuple[Fault, ...]]:
        return [o.faults for o in self.outputs if isinstance(o, FaultChange)]

    def _to(self, at: float) -> None:
        """Move time to ``at``, ticking on the way."""
        while self._next_tick <= at:
            self.clock.advance(self._next_tick - self.now)
            self.outputs += self.counter.tick(self.now)
            self._next_tick += 1.0
            self.ticked = True
            self.check(self)
        self.clock.advance(max(0.0, at - self.now))

    def _feed(self, grams: float | None) -> None:
        self.outputs += self.counter.feed(
            WeightSample(
                channel="ch1",
                gross_grams=grams,
                net_grams=None,
                stable=None if grams is None else True,
                status=ScaleStatus.OK if grams is not None else ScaleStatus.ERROR,
                monotonic=self.now,
                observed_at=self.clock.utc_now(),
            )
        )
        self.ticked = False
        self.check(self)

    def weights(self, seconds: float, count: int) -> None:
        """The unit answers: a weight sample every 0.1 s."""
        for _ in range(round(seconds * 10)):
            self._to(self.now + 0.1)
            self._flip = -self._flip
            self._feed(TRAY + count * UNIT + self._flip)

    def errors(self, times: list[float], until: float) -> None:
        """The unit does not answer: an ERROR sample without weight at each of ``times``."""
        for at in times:
            self._to(at)
            self._feed(None)
        self._to(until)


def silent_unit(
    backoff: PollBackoff, settings: CounterSettings, silent_s: float
) -> tuple[Shelf, float, float]:
    """10 items weighed, then the unit stays silent for ``silent_s`` (3 items are picked
    meanwhile), then it answers again for ``fault_off_s`` + 30 s. Checks, at every step:

    - from the first ERROR sample (or ``no_data_s`` without one) until the fault clears, the
      view shows no count (unknown, stale, the last count kept apart), never a silent last
      value;
    - from ``fault_on_s`` after the first ERROR sample (or ``no_data_s``) until weights
      resume, the fault is active at every tick, whatever the gaps between ERROR samples.

    Returns the shelf, when the unit went silent and when it answered again."""
    never = math.inf
    stale_from, fault_from, resumed = never, never, never

    def check(shelf: Shelf) -> None:
        view = shelf.view()
        if shelf.now >= stale_from and (shelf.now < resumed or shelf.counter.faults):
            assert view["count"] is None, (shelf.now, view)
            assert view["stale"] is True, (shelf.now, view)
            assert view["state"] == "unknown", (shelf.now, view)
            # kept apart: the count before, or the pick counted once weights are back
            assert view["last_count"] in ({10} if shelf.now < resumed else {10, 7}), view
        if shelf.ticked and fault_from <= shelf.now < resumed:
            assert shelf.counter.faults, (shelf.now, "no fault while the unit gives no weight")

    shelf = Shelf(settings, check)
    shelf.weights(15, 10)
    assert shelf.counter.count == 10
    assert shelf.view()["stale"] is False
    silent_from = shelf.now  # the last weight
    times = backoff.error_times(silent_from, silent_from + silent_s)
    first_error = times[0] if times else never
    no_data_at = silent_from + settings.no_data_s + 1e-6  # no weight for no_data_s
    stale_from = min(first_error, no_data_at)
    fault_from = min(
        first_error + settings.fault_on_s,
        no_data_at + max(0.0, settings.fault_on_s - settings.no_data_s),
    )
    shelf.errors(times, until=silent_from + silent_s)
    assert () not in shelf.faults(), "the fault cleared while the unit gave no weight"
    resumed = shelf.now
    shelf.weights(settings.fault_off_s + 30, 7)
    return shelf, silent_from, resumed


def test_a_silent_unit_on_the_issues_bus_stays_faulty_until_weights_resume() -> None:
    # The field trial: unit 2 silent for 45 s; the fault used to clear after ~14 s.
    settings = CounterSettings()
    shelf, silent_from, resumed = silent_unit(DEFAULT_BACKOFF, settings, 45.0)
    changes = [o for o in shelf.outputs if isinstance(o, FaultChange)]
    # the error at once (debounced), no data once no weight came for no_data_s, then healthy
    assert [change.faults for change in changes] == [
        (Fault.ERROR,),
        (Fault.ERROR, Fault.NO_DATA),
        (),
    ]
    raised, no_data, cleared = changes
    assert raised.at <= silent_from + 0.2 + settings.fault_on_s + 1.0
    assert no_data.at <= silent_from + settings.no_data_s + 1.0
    assert cleared.at >= resumed + settings.fault_off_s
    assert shelf.counter.count == 7
    view = shelf.view()
    assert (view["count"], view["stale"], view["state"]) == (7, False, "ok")
    assert shelf.counter.snapshot().faults == ()


@settings(max_examples=150, deadline=None)
@given(
    backoff=st.builds(
        PollBackoff,
        period_s=st.floats(min_value=0.01, max_value=10.0),
        timeout_s=st.floats(min_value=0.01, max_value=5.0),
        failures_before_backoff=st.integers(min_value=1, max_value=20),
        max_backoff_cycles=st.integers(min_value=1, max_value=100_000),
    ),
    fault_on_s=st.sampled_from([0.0, 0.5, 2.0, 10.0]),
    fault_off_s=st.sampled_from([0.0, 1.0, 5.0, 30.0]),
    no_data_s=st.sampled_from([1.0, 10.0, 120.0]),
    silent_s=st.floats(min_value=1.0, max_value=300.0),
)
def test_a_unit_that_gives_no_weight_keeps_its_fault_at_every_backoff_setting(
    backoff: PollBackoff, fault_on_s: float, fault_off_s: float, no_data_s: float, silent_s: float
) -> None:
    settings = CounterSettings(fault_on_s=fault_on_s, fault_off_s=fault_off_s, no_data_s=no_data_s)
    shelf, _, resumed = silent_unit(backoff, settings, silent_s)
    cleared = [o for o in shelf.outputs if isinstance(o, FaultChange) and not o.faults]
    for change in cleared:
        assert change.at >= resumed + fault_off_s  # only after real weights, for fault_off_s
    assert shelf.counter.faults == ()
    assert shelf.counter.count == 7
    assert shelf.view()["stale"] is False


def test_an_error_blip_long_after_the_last_one_is_a_new_blip_not_a_fault() -> None:
    run = started(5)
    run.hold(0.1, None, status=ScaleStatus.ERROR)
    run.hold(5.5, run.items(5))  # weights for longer than fault_off_s: the blip is gone ...
    run.hold(0.1, None, status=ScaleStatus.ERROR)  # ... even before a tick forgot it
    run.hold(10, run.items(5))
    assert faults(run) == []
    assert run.counter.snapshot().as_dict()["count"] == 5
