"""The stock-logic accuracy harness: scripted timelines with ground truth through SlotCounter.

Each :class:`Scenario` builds a :class:`~devices.simulated.shelf_timeline.ShelfTimeline` from
its committed seed, the counter is driven with the samples' synthetic timestamps (``tick`` once
a simulated second, also while the sensor is silent) and its outputs are scored against the
truth:

- a pick/put is *right* when it matches an unmatched truth event with the same item delta
  within ``match_s`` after it; *wrong* when the nearest truth event in that window has another
  delta; otherwise *false*;
- an ambiguous event covering a truth event in its window is *ambiguous* (honest); one with
  no truth event near it counts as a *false* event too;
- truth events neither matched nor covered are *missed*;
- the count is checked ``match_s`` after every truth event and at the end: right, unknown
  (None, allowed) or wrong (never allowed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from devices.simulated.shelf_timeline import ShelfTimeline, TruthEvent
from gateway.shelves.slot_counter import (
    ChangeKind,
    CounterSettings,
    FaultChange,
    SlotCounter,
    SlotSpec,
    StockAmbiguous,
    StockChange,
)

__all__ = ["SCENARIOS", "Scenario", "ScenarioResult", "format_report", "run_scenario"]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    seed: int
    duration_s: float
    build: Callable[[int], tuple[ShelfTimeline, SlotSpec]]
    match_s: float = 30.0
    goal: str = ""


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    truth: int = 0
    right: int = 0
    wrong: int = 0
    false: int = 0
    missed: int = 0
    ambiguous: int = 0
    recounts: int = 0
    checks: int = 0
    counts_right: int = 0
    counts_unknown: int = 0
    counts_wrong: int = 0
    faults_raised: list[str] = field(default_factory=list)
    faults_active_at_end: tuple[str, ...] = ()
    samples: int = 0
    seconds: float = 0.0

    @property
    def count_accuracy(self) -> float:
        return self.counts_right / self.checks if self.checks else 1.0


def run_scenario(scenario: Scenario, settings: CounterSettings | None = None) -> ScenarioResult:
    timeline, spec = scenario.build(scenario.seed)
    counter = SlotCounter(spec, settings or CounterSettings())
    truth = list(timeline.truth)
    # Checked match_s after each truth event, or just before the next one.
    nexts = [*(event.at for event in truth[1:]), scenario.duration_s][: len(truth)]
    checkpoints = sorted(
        {
            min(event.at + scenario.match_s, after - 0.01)
            for event, after in zip(truth, nexts, strict=True)
        }
        | {scenario.duration_s}
    )
    result = ScenarioResult(scenario, truth=len(truth))
    detections: list[StockChange | StockAmbiguous] = []
    started = time.perf_counter()
    next_tick = 1.0
    next_check = 0
    observe, tick = counter.observe, counter.tick

    def handle(outputs: tuple[object, ...]) -> None:
        for output in outputs:
            if isinstance(output, StockChange):
                if output.kind is ChangeKind.RECOUNT:
                    result.recounts += 1 if output.before is not None else 0
                else:
                    detections.append(output)
            elif isinstance(output, StockAmbiguous):
                detections.append(output)
            elif isinstance(output, FaultChange):
                result.faults_raised.extend(
                    f.value for f in output.faults if f.value not in result.faults_raised
                )

    def check(at: float) -> None:
        nonlocal next_check
        while next_check < len(checkpoints) and checkpoints[next_check] <= at:
            expected = _count_at(truth, timeline, checkpoints[next_check])
            result.checks += 1
            if counter.count is None:
                result.counts_unknown += 1
            elif counter.count == expected:
                result.counts_right += 1
            else:
                result.counts_wrong += 1
            next_check += 1

    for t, raw, stable, status in timeline.samples(scenario.duration_s):
        result.samples += 1
        while next_tick <= t:  # also covers silent stretches
            handle(tick(next_tick))
            check(next_tick)
            next_tick += 1.0
        outputs = observe(t, raw, stable, status)
        if outputs:
            handle(outputs)
    while next_tick <= scenario.duration_s + 1:
        handle(tick(next_tick))
        next_tick += 1.0
    check(scenario.duration_s + 1)
    result.seconds = time.perf_counter() - started
    result.faults_active_at_end = tuple(f.value for f in counter.faults)
    _score(result, truth, detections, scenario.match_s)
    return result


def _count_at(truth: list[TruthEvent], timeline: ShelfTimeline, at: float) -> int:
    count = len(timeline.items)
    for event in truth:
        if event.at <= at:
            count = event.count_after
    return count


def _score(
    result: ScenarioResult,
    truth: list[TruthEvent],
    detections: list[StockChange | StockAmbiguous],
    match_s: float,
) -> None:
    used = [False] * len(truth)
    for detection in sorted(detections, key=lambda d: d.at):
        window = [
            index
            for index, event in enumerate(truth)
            if not used[index] and event.at <= detection.at <= event.at + match_s
        ]
        if isinstance(detection, StockAmbiguous):
            if window:
                used[window[0]] = True
                result.ambiguous += 1
            else:
                result.false += 1
            continue
        same = [index for index in window if truth[index].delta == detection.delta]
        if same:
            used[same[0]] = True
            result.right += 1
        elif window:
            used[window[0]] = True
            result.wrong += 1
        else:
            result.false += 1
    result.missed = used.count(False)


# --- scenarios (committed seeds) -------------------------------------------------------------


def _spec(unit: float, tray: float = 60.0, **extra: float) -> SlotSpec:
    return SlotSpec(
        slot="slot-1",
        sku="sku-1",
        unit_grams=unit,
        tare_grams=tray,
        min_count=2,
        **extra,  # type: ignore[arg-type]
    )


def _single_items(seed: int, *, hours: float, noise: float, drift: float, flag: bool = True):  # type: ignore[no-untyped-def]
    def build(seed: int = seed) -> tuple[ShelfTimeline, SlotSpec]:
        timeline = ShelfTimeline(
            seed,
            unit_grams=330.0,
            initial_count=10,
            noise_grams=noise,
            drift_grams_per_h=drift,
            device_flag=flag,
        )
        rng = timeline.rng
        at, count = 30.0, 10
        while at < hours * 3600 - 120:
            if count <= 1 or (count < 12 and rng.random() < 0.3):
                timeline.put(at, 1)
                count += 1
            else:
                timeline.pick(at, 1)
                count -= 1
            at += rng.uniform(25.0, 180.0)
        return timeline, _spec(330.0)

    return build


def _multi_items(seed: int) -> tuple[ShelfTimeline, SlotSpec]:
    timeline = ShelfTimeline(seed, unit_grams=125.0, initial_count=20, noise_grams=1.5)
    rng = timeline.rng
    at, count = 30.0, 20
    while at < 4 * 3600 - 120:
        items = rng.randint(1, 5)
        if count - items < 0 or (count < 20 and rng.random() < 0.4):
            timeline.put(at, items)
            count += items
        else:
            timeline.pick(at, items)
            count -= items
        at += rng.uniform(30.0, 240.0)
    return timeline, _spec(125.0)


def _leaning_day(seed: int) -> tuple[ShelfTimeline, SlotSpec]:
    timeline = ShelfTimeline(
        seed, unit_grams=330.0, initial_count=8, noise_grams=2.0, drift_grams_per_h=5.0
    )
    rng = timeline.rng
    at = 20.0
    while at < 24 * 3600 - 60:
        timeline.lean(at, rng.uniform(0.5, 8.0), rng.uniform(200.0, 2000.0))
        at += rng.uniform(60.0, 600.0)
    return timeline, _spec(330.0)


def _busy_day(seed: int) -> tuple[ShelfTimeline, SlotSpec]:
    timeline = ShelfTimeline(
        seed, unit_grams=520.0, initial_count=12, noise_grams=1.5, drift_grams_per_h=-5.0
    )
    rng = timeline.rng
    at, count = 40.0, 12
    while at < 24 * 3600 - 120:
        if rng.random() < 0.5:
            timeline.lean(at, rng.uniform(0.5, 8.0), rng.uniform(200.0, 2000.0))
        elif count <= 2:
            timeline.put(at, 14 - count)  # staff restock
            count = 14
        elif rng.random() < 0.2:
            timeline.put(at, 1)
            count += 1
        else:
            items = 2 if rng.random() < 0.2 else 1
            timeline.pick(at, items)
            count -= items
        at += rng.uniform(30.0, 900.0)
    return timeline, _spec(520.0)


def _lookalikes(seed: int) -> tuple[ShelfTimeline, SlotSpec]:
    # SKU A 100 g and its look-alike B 108 g share the slot: they differ by less than the
    # 25 g tolerance, and the slot's item_spread says so.
    weights = [100.0] * 10 + [108.0] * 10
    timeline = ShelfTimeline(seed, unit_grams=100.0, items=weights, noise_grams=1.0)
    rng = timeline.rng
    rng.shuffle(timeline.items)
    at, count = 30.0, 20
    while at < 4 * 3600 - 120:
        items = rng.randint(1, 9)
        if count - items < 0 or (count < 20 and rng.random() < 0.45):
            timeline.put(at, tuple(rng.choice((100.0, 108.0)) for _ in range(items)))
            count += items
        else:
            timeline.pick(at, items)
            count -= items
        at += rng.uniform(30.0, 240.0)
    return timeline, _spec(100.0, item_spread=0.09)


def _overload(seed: int) -> tuple[ShelfTimeline, SlotSpec]:
    timeline = ShelfTimeline(seed, unit_grams=250.0, initial_count=10, noise_grams=1.0)
    rng = timeline.rng
    at, count = 30.0, 10
    for _ in range(10):
        timeline.overload(at, rng.uniform(5.0, 30.0))
        at += 60.0
        if count > 3:
            timeline.pick(at, 1)
            count -= 1
        at += rng.uniform(60.0, 300.0)
    return timeline, _spec(250.0)


def _unplugged(seed: int) -> tuple[ShelfTimeline, SlotSpec]:
    timeline = ShelfTimeline(seed, unit_grams=400.0, initial_count=10, noise_grams=1.0)
    timeline.pick(300.0, 1)
    timeline.unplug(600.0, 60.0)
    timeline.pick(630.0, 2)  # while unplugged: seen as one change once it is back
    timeline.put(1200.0, 1)
    timeline.unplug(1500.0, 60.0)
    return timeline, _spec(400.0)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "clean single items noise 0.5 g",
        101,
        6 * 3600,
        _single_items(101, hours=6, noise=0.5, drift=0.0),
        goal="every event right",
    ),
    Scenario(
        "noise 2 g + drift 5 g/h",
        102,
        6 * 3600,
        _single_items(102, hours=6, noise=2.0, drift=5.0),
        goal="every event right",
    ),
    Scenario(
        "single items, no device flag",
        103,
        3 * 3600,
        _single_items(103, hours=3, noise=1.0, drift=2.0, flag=False),
        goal="every event right",
    ),
    Scenario("multi-item picks/puts", 104, 4 * 3600, _multi_items, goal="every event right"),
    Scenario(
        "leaning+noise+drift 24 h",
        105,
        24 * 3600,
        _leaning_day,
        goal="0 false events",
    ),
    Scenario(
        "busy day 24 h (lean, drift)",
        106,
        24 * 3600,
        _busy_day,
        goal="0 false/wrong",
    ),
    Scenario(
        "look-alike SKUs 100/108 g",
        107,
        4 * 3600,
        _lookalikes,
        goal="ambiguous, never wrong",
    ),
    Scenario("overload episodes", 108, 3600, _overload, goal="0 false, fault raised"),
    Scenario("unplugged 60 s", 109, 1800, _unplugged, match_s=90.0, goal="0 false, fault raised"),
)


def format_report(results: list[ScenarioResult]) -> str:
    header = (
        f"{'scenario':<30} {'sim h':>5} {'truth':>5} {'right':>5} {'wrong':>5} "
        f"{'false':>5} {'missed':>6} {'ambig':>5} {'count acc':>9} {'cnt wrong':>9} {'unknown':>7} "
        f"{'faults':<22} {'cpu s':>5}"
    )
    lines = [header, "-" * len(header)]
    lines.extend(
        f"{r.scenario.name:<30} {r.scenario.duration_s / 3600:>5.1f} {r.truth:>5} "
        f"{r.right:>5} {r.wrong:>5} {r.false:>5} {r.missed:>6} {r.ambiguous:>5} "
        f"{100 * r.count_accuracy:>8.1f}% {r.counts_wrong:>9} {r.counts_unknown:>7} "
        f"{','.join(r.faults_raised) or '-':<22} {r.seconds:>5.1f}"
        for r in results
    )
    samples = sum(r.samples for r in results)
    seconds = sum(r.seconds for r in results)
    lines.append(
        f"{samples} samples ({sum(r.scenario.duration_s for r in results) / 3600:.0f} simulated "
        f"hours at 10 Hz) in {seconds:.1f} s"
    )
    return "\n".join(lines)
