"""One slot's stock logic, sans-IO: weight samples and a timestamp in, stock events out.

:class:`SlotCounter` is fed every weight sample of its load cell (``observe`` / ``feed``) and a
periodic ``tick(now)``; both return what changed. No clock, sleep or socket inside: time is the
samples' monotonic timestamps and the ``now`` given to ``tick``.

How weight becomes stock::

    raw (device net, else gross) ──(raw - tare) x gain──▶ load L
    L ──moving window (window_s)──▶ stable?  std <= motion_k x idle noise, and the device's
                                             own stable flag unless it says "moving"
    stable level ── differs from the reference level by more than a touch ──▶ candidate
    candidate held settle_s (a drop) or rise_hold_s (a rise) ──▶ commit: Δ = level - reference
    Δ ──decide_count──▶ pick / put of k items, a touch (k = 0), or ambiguous

Rises wait longer on purpose: a shopper leaning on or pressing a shelf adds weight for
seconds, never removes it, so only a rise that outlasts ``rise_hold_s`` is a put-back. The
idle noise is measured, not configured: the 25th percentile of the window's spread over the
last minutes, so a busy aisle does not inflate it.

The count is absolute and re-derived: every ``recount_interval_s`` of quiet, and right after
any change, ``(reference - zero) / unit`` is decided with the same rule; a decidable absolute
count that disagrees with the running one replaces it (a ``recount``). An ambiguous change
makes the count unknown (``None``) until such a recount settles it: the slot never reports a
count it is not sure of. Slow zero-tracking moves ``zero`` towards the residual only while the
level sits within ``zero_band`` of a whole number of items, at most
``zero_track_grams_per_h``: load-cell creep, not stock, is what it absorbs.

Data is a plain weight. A sample without one (the device answered with an error, an
overload, or a driver's "no reply") is no data: ``no_data`` runs from the last *weight*, not
from the last sample, however often such samples come. Faults (``no_data``, ``stuck``,
``overload``, ``underload``, ``error``, ``disconnected``) are debounced: raised once present
for ``fault_on_s`` (a weightless condition lasts until a weight says otherwise, so sparse
error samples keep it present), cleared only after weights have been read for ``fault_off_s``
since the fault was last seen; time without weights never clears a fault. Samples that are
not plain weights are ignored for counting; the level found after the fault is compared with
the one before it, so stock moved while a sensor was unplugged is still counted (as one
change). Meanwhile the count is *stale*: the views show it as unknown (see
:meth:`SlotCounter.count_is_current`), the last count kept apart.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

from gateway.drivers.contracts import ScaleStatus, WeightSample
from gateway.shelves.item_count import decide_count

__all__ = [
    "ChangeKind",
    "CounterOutput",
    "CounterSettings",
    "Fault",
    "FaultChange",
    "SlotActivity",
    "SlotCounter",
    "SlotSnapshot",
    "SlotSpec",
    "StockAmbiguous",
    "StockChange",
    "StockState",
    "StockStateChange",
]


class StockState(StrEnum):
    UNKNOWN = "unknown"  # no trustworthy count yet (start-up, ambiguous change)
    OK = "ok"
    LOW = "low"  # count <= min_count for low_hold_s
    OUT = "out"  # count == 0 for low_hold_s


class Fault(StrEnum):
    NO_DATA = "no_data"  # no sample for no_data_s
    STUCK = "stuck"  # the very same raw value for stuck_s
    OVERLOAD = "overload"
    UNDERLOAD = "underload"  # device says so, or the load is far below the empty tray
    ERROR = "error"  # the device answered with an error / no weight
    DISCONNECTED = "disconnected"  # the slot's driver is not running


class ChangeKind(StrEnum):
    PICK = "pick"
    PUT = "put"
    RECOUNT = "recount"  # the absolute count replaced the running one


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """What a slot holds and how its load cell reads (the effective configuration)."""

    slot: str
    sku: str
    unit_grams: float
    tolerance: float = 0.25
    item_spread: float = 0.02
    tare_grams: float = 0.0  # the reading with the empty tray on (software tare)
    gain: float = 1.0  # software calibration: grams per reading unit
    min_count: int = 0
    max_count: int | None = None

    def __post_init__(self) -> None:
        if not self.unit_grams > 0:
            raise ValueError(f"slot {self.slot}: unit_grams must be > 0, not {self.unit_grams}")
        if not 0 < self.tolerance < 0.5:
            raise ValueError(f"slot {self.slot}: tolerance must be in (0, 0.5)")
        if not 0 <= self.item_spread < 0.5:
            raise ValueError(f"slot {self.slot}: item_spread must be in [0, 0.5)")
        if not self.gain > 0:
            raise ValueError(f"slot {self.slot}: gain must be > 0")


@dataclass(frozen=True, slots=True)
class CounterSettings:
    """Tuning shared by every slot ([shelves] in the configuration)."""

    window_s: float = 0.8
    settle_s: float = 1.0
    rise_hold_s: float = 10.0
    motion_k: float = 4.0
    noise_floor_grams: float = 0.25
    recount_interval_s: float = 60.0
    zero_track_grams_per_h: float = 30.0
    zero_band: float = 0.1
    no_data_s: float = 10.0
    stuck_s: float = 300.0
    fault_on_s: float = 2.0
    fault_off_s: float = 5.0
    low_hold_s: float = 30.0
    clear_hold_s: float = 30.0
    hysteresis_items: int = 1


# --- outputs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StockChange:
    """A counted change. ``before``/``after`` are None while the count is unknown."""

    slot: str
    sku: str
    kind: ChangeKind
    before: int | None
    after: int | None
    delta: int | None
    confidence: float
    grams: float
    at: float


@dataclass(frozen=True, slots=True)
class StockAmbiguous:
    """A change that is not a whole number of items within tolerance: not counted."""

    slot: str
    sku: str
    grams: float
    ratio: float
    candidates: tuple[int, ...]
    count_before: int | None
    at: float


@dataclass(frozen=True, slots=True)
class StockStateChange:
    slot: str
    sku: str
    state: StockState
    previous: StockState
    count: int | None
    min_count: int
    at: float


@dataclass(frozen=True, slots=True)
class FaultChange:
    slot: str
    faults: tuple[Fault, ...]  # every active fault, sorted; empty: healthy again
    at: float


CounterOutput: TypeAlias = StockChange | StockAmbiguous | StockStateChange | FaultChange


@dataclass(slots=True)
class SlotActivity:
    """Picks and put-backs since the last :meth:`SlotCounter.take_activity`."""

    picks: int = 0
    picked_items: int = 0
    puts: int = 0
    put_items: int = 0
    ambiguous: int = 0

    def any(self) -> bool:
        return bool(self.picks or self.puts or self.ambiguous)


@dataclass(frozen=True, slots=True)
class SlotSnapshot:
    """The live view of a slot (``storegw slots``, ``scale read``)."""

    slot: str
    sku: str
    count: int | None
    state: StockState
    faults: tuple[Fault, ...]
    raw: float | None
    load_grams: float | None
    items_grams: float | None
    stable: bool
    noise_grams: float | None
    zero_grams: float
    last_sample_at: float | None
    stale: bool = False  # the count is not backed by current weights (see count_is_current)

    def as_dict(self) -> dict[str, object]:
        """The wire view: a stale count is shown as unknown (``count`` null, ``state``
        "unknown"), never as a silent last value; ``last_count``/``last_state`` keep it."""
        return {
            "slot": self.slot,
            "sku": self.sku,
            "count": None if self.stale else self.count,
            "state": StockState.UNKNOWN.value if self.stale else self.state.value,
            "stale": self.stale,
            "last_count": self.count,
            "last_state": self.state.value,
            "faults": [fault.value for fault in self.faults],
            "raw": _round(self.raw),
            "load_grams": _round(self.load_grams),
            "items_grams": _round(self.items_grams),
            "stable": self.stable,
            "noise_grams": _round(self.noise_grams, 2),
            "zero_grams": round(self.zero_grams, 1) + 0.0,  # never "-0.0"
        }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


_NO_OUTPUT: tuple[CounterOutput, ...] = ()
_MIN_WINDOW_SAMPLES = 3
_NOISE_HISTORY = 300  # one value a second: the last five minutes
_NOISE_MIN_VALUES = 5
_RESUM_EVERY = 10_000  # samples between exact recomputations of the running sums
_STATUS_FAULT = {
    ScaleStatus.OVERLOAD: Fault.OVERLOAD,
    ScaleStatus.UNDERLOAD: Fault.UNDERLOAD,
    ScaleStatus.ERROR: Fault.ERROR,
}


@dataclass(slots=True)
class _FaultTrack:
    first: float
    last: float


@dataclass(slots=True)
class SlotCounter:
    """Stock logic of one slot (see the module docstring)."""

    spec: SlotSpec
    settings: CounterSettings = field(default_factory=CounterSettings)
    created_at: float = 0.0
    # --- state (not constructor arguments in practice) ---
    count: int | None = None
    state: StockState = StockState.UNKNOWN
    zero: float = 0.0
    _window: deque[tuple[float, float]] = field(default_factory=deque)
    _sum: float = 0.0
    _sumsq: float = 0.0
    _since_resum: int = 0
    _stable: bool = False
    _mean: float = 0.0
    _ref: float | None = None
    _cand_level: float | None = None
    _cand_since: float = 0.0
    _last_stable_at: float | None = None
    _noise_values: deque[float] = field(default_factory=lambda: deque(maxlen=_NOISE_HISTORY))
    _noise_next_at: float = 0.0
    _noise_updates: int = 0
    _sigma: float | None = None
    _threshold: float = 0.0
    _last_raw: float | None = None
    _same_since: float = 0.0
    _last_at: float | None = None  # the last sample of any kind
    _last_weight_at: float | None = None  # the last plain weight: what "data" means
    _weights_since: float | None = None  # start of the present run of weights, None: none
    _level_confirmed: bool = False  # a stable level was read since the last interruption
    _next_recount_at: float = 0.0
    _seen: dict[Fault, _FaultTrack] = field(default_factory=dict)
    _faults: frozenset[Fault] = frozenset()
    _pending_state: StockState | None = None
    _pending_since: float = 0.0
    _outputs: list[CounterOutput] = field(default_factory=list)
    activity: SlotActivity = field(default_factory=SlotActivity)

    # --- configuration ------------------------------------------------------------------

    def reconfigure(self, spec: SlotSpec) -> None:
        """Apply a new effective configuration. A new unit weight or SKU makes the count
        unknown until recounted; a new tare or gain re-reads the reference level."""
        old = self.spec
        self.spec = spec
        if (spec.tare_grams, spec.gain) != (old.tare_grams, old.gain):
            self._rebase()
        if (spec.unit_grams, spec.sku) != (old.unit_grams, old.sku):
            self.count = None
            self._next_recount_at = 0.0

    def _rebase(self) -> None:
        self._window.clear()
        self._sum = self._sumsq = 0.0
        self._stable = False
        self._ref = None
        self._cand_level = None
        self._level_confirmed = False  # the count waits for the level read on the new basis
        self.zero = 0.0
        self._next_recount_at = 0.0

    # --- samples ------------------------------------------------------------------------

    def feed(self, sample: WeightSample) -> tuple[CounterOutput, ...]:
        grams = sample.net_grams if sample.net_grams is not None else sample.gross_grams
        return self.observe(sample.monotonic, grams, sample.stable, sample.status)

    def observe(
        self,
        now: float,
        raw: float | None,
        device_stable: bool | None = None,
        status: ScaleStatus = ScaleStatus.OK,
    ) -> tuple[CounterOutput, ...]:
        """One sample at monotonic ``now``; returns the outputs it caused (usually none)."""
        self._last_at = now
        if status is not ScaleStatus.OK or raw is None or not math.isfinite(raw):
            self._see(_STATUS_FAULT.get(status, Fault.ERROR), now)
            self._interrupt()
            return _NO_OUTPUT
        self._last_weight_at = now
        if self._weights_since is None:
            self._weights_since = now
        if raw != self._last_raw:
            self._last_raw = raw
            self._same_since = now
        elif self.settings.stuck_s > 0 and now - self._same_since >= self.settings.stuck_s:
            self._see(Fault.STUCK, now, self._same_since + self.settings.stuck_s)
        spec = self.spec
        load = (raw - spec.tare_grams) * spec.gain
        window = self._window
        window.append((now, load))
        self._sum += load
        self._sumsq += load * load
        horizon = now - self.settings.window_s
        while window[0][0] < horizon:
            _, old = window.popleft()
            self._sum -= old
            self._sumsq -= old * old
        self._since_resum += 1
        if self._since_resum >= _RESUM_EVERY:
            self._resum()
        n = len(window)
        if n < _MIN_WINDOW_SAMPLES or now - window[0][0] < 0.6 * self.settings.window_s:
            self._stable = False
            return _NO_OUTPUT
        mean = self._sum / n
        variance = self._sumsq / n - mean * mean
        spread = math.sqrt(variance) if variance > 0 else 0.0
        if now >= self._noise_next_at:
            self._learn_noise(spread, now)
        if self._sigma is None:
            self._stable = False
            return _NO_OUTPUT
        self._mean = mean
        if spread > self._threshold or device_stable is False:
            self._stable = False
            self._cand_level = None
            return _NO_OUTPUT
        self._stable = True
        self._on_stable(now, mean)
        if self._outputs:
            outputs, self._outputs = tuple(self._outputs), []
            return outputs
        return _NO_OUTPUT

    def _resum(self) -> None:
        self._since_resum = 0
        self._sum = math.fsum(value for _, value in self._window)
        self._sumsq = math.fsum(value * value for _, value in self._window)

    def _interrupt(self) -> None:
        """No weight (a weightless sample, or none for ``no_data_s``): whatever the window
        held is no level any more, and the count waits for a level read afterwards."""
        self._window.clear()
        self._sum = self._sumsq = 0.0
        self._stable = False
        self._cand_level = None
        self._weights_since = None
        self._level_confirmed = False

    def _learn_noise(self, spread: float, now: float) -> None:
        self._noise_next_at = now + 1.0
        values = self._noise_values
        values.append(spread)
        self._noise_updates += 1
        if len(values) < _NOISE_MIN_VALUES or (
            self._sigma is not None and self._noise_updates < 10
        ):
            return
        self._noise_updates = 0
        ordered = sorted(values)
        quiet = ordered[len(ordered) // 4] * 1.2  # sample spread of ~8 values reads low
        cap = max(2.0, 0.03 * self.spec.unit_grams)
        sigma = min(max(quiet, self.settings.noise_floor_grams), cap)
        self._sigma = sigma
        self._threshold = self.settings.motion_k * sigma

    # --- levels -------------------------------------------------------------------------

    def _margin(self) -> float:
        return 3.0 * (self._sigma or 0.0) + 0.5

    def _on_stable(self, now: float, mean: float) -> None:
        spec = self.spec
        ref = self._ref
        last = self._last_stable_at
        self._last_stable_at = now
        band = max(0.1 * spec.unit_grams, 2.0 * self._threshold)
        if ref is not None and abs(mean - ref) <= band:
            # Quiet: follow slow creep, forget any half-formed candidate.
            self._cand_level = None
            self._level_confirmed = True
            if last is not None:
                dt = min(now - last, 1.0)
                step = 0.5 * dt  # grams per second the reference may follow
                self._ref = ref + max(-step, min(step, mean - ref))
                self._track_zero(dt)
            return
        cand = self._cand_level
        if cand is None or abs(mean - cand) > band:
            self._cand_level = mean
            self._cand_since = now
            return
        rising = ref is not None and mean > ref
        hold = self.settings.rise_hold_s if rising else self.settings.settle_s
        if now - self._cand_since >= hold:
            self._commit(now, mean)

    def _track_zero(self, dt: float) -> None:
        count, ref = self.count, self._ref
        if count is None or ref is None:
            return
        spec = self.spec
        residual = ref - self.zero - count * spec.unit_grams
        if abs(residual) > self.settings.zero_band * spec.unit_grams:
            return
        step = self.settings.zero_track_grams_per_h * dt / 3600.0
        self.zero += max(-step, min(step, residual))

    def _commit(self, now: float, level: float) -> None:
        ref = self._ref
        self._ref = level
        self._cand_level = None
        self._level_confirmed = True
        if ref is None:
            self._recount(now)
            return
        spec = self.spec
        grams = level - ref
        decision = decide_count(
            grams,
            unit_grams=spec.unit_grams,
            tolerance=spec.tolerance,
            item_spread=spec.item_spread,
            margin_grams=self._margin(),
        )
        items = decision.items
        if items is None:
            self.activity.ambiguous += 1
            self._outputs.append(
                StockAmbiguous(
                    spec.slot,
                    spec.sku,
                    round(grams, 1),
                    round(decision.ratio, 3),
                    decision.candidates,
                    self.count,
                    now,
                )
            )
            self.count = None
        elif items != 0:
            before = self.count
            after = None if before is None or before + items < 0 else before + items
            if items < 0:
                self.activity.picks += 1
                self.activity.picked_items -= items
            else:
                self.activity.puts += 1
                self.activity.put_items += items
            self.count = after
            self._outputs.append(
                StockChange(
                    spec.slot,
                    spec.sku,
                    ChangeKind.PICK if items < 0 else ChangeKind.PUT,
                    before,
                    after,
                    items,
                    decision.confidence,
                    round(grams, 1),
                    now,
                )
            )
        self._recount(now)
        self._evaluate_state(now)

    def _recount(self, now: float) -> None:
        """Derive the count from the absolute level; replace the running count if they
        disagree and the absolute one is decidable."""
        self._next_recount_at = now + self.settings.recount_interval_s
        ref = self._ref
        if ref is None:
            return
        spec = self.spec
        items_grams = ref - self.zero
        decision = decide_count(
            items_grams,
            unit_grams=spec.unit_grams,
            tolerance=spec.tolerance,
            item_spread=spec.item_spread,
            margin_grams=self._margin(),
        )
        found = decision.items
        if found is None or found < 0 or found == self.count:
            return
        before = self.count
        self.count = found
        self._outputs.append(
            StockChange(
                spec.slot,
                spec.sku,
                ChangeKind.RECOUNT,
                before,
                found,
                None if before is None else found - before,
                decision.confidence,
                round(items_grams, 1),
                now,
            )
        )
        self._evaluate_state(now)

    # --- time ---------------------------------------------------------------------------

    def tick(self, now: float, *, device_up: bool = True) -> tuple[CounterOutput, ...]:
        """Call about once a second: faults, the periodic recount, low/out hold times."""
        settings = self.settings
        last = self._last_weight_at if self._last_weight_at is not None else self.created_at
        if now - last >= settings.no_data_s:
            self._see(Fault.NO_DATA, now, last)  # present since the last weight
            self._interrupt()
        if not device_up:
            self._see(Fault.DISCONNECTED, now, now - settings.fault_on_s)
        ref = self._ref
        if self._stable and ref is not None and ref - self.zero < -self._empty_slack():
            self._see(Fault.UNDERLOAD, now)  # far below the empty tray: tray gone, bad tare
        self._evaluate_faults(now)
        if (
            self._stable
            and self._cand_level is None
            and self._ref is not None
            and now >= self._next_recount_at
        ):
            self._recount(now)
        self._evaluate_state(now)
        if self._outputs:
            outputs, self._outputs = tuple(self._outputs), []
            return outputs
        return _NO_OUTPUT

    def _empty_slack(self) -> float:
        return max(0.5 * self.spec.unit_grams, 50.0)

    def _see(self, fault: Fault, now: float, first: float | None = None) -> None:
        track = self._seen.get(fault)
        if track is None or self._gone(track):
            self._seen[fault] = _FaultTrack(now if first is None else min(first, now), now)
        else:
            track.last = now

    def _gone(self, track: _FaultTrack) -> bool:
        """Weights have been read for ``fault_off_s`` since the fault was last seen: only
        real readings clear a fault, never time alone."""
        since, latest = self._weights_since, self._last_weight_at
        return (
            since is not None
            and latest is not None
            and latest > track.last
            and latest - max(since, track.last) >= self.settings.fault_off_s
        )

    def _present_for(self, track: _FaultTrack, now: float) -> float:
        """How long the fault has been present. One that no weight has contradicted since
        it was last seen (an ERROR sample, then nothing) still is, however sparse its
        sightings."""
        latest = self._last_weight_at
        ongoing = latest is None or latest <= track.last
        return (now if ongoing else track.last) - track.first

    def _evaluate_faults(self, now: float) -> None:
        settings = self.settings
        active = set(self._faults)
        for fault, track in list(self._seen.items()):
            if self._gone(track):
                active.discard(fault)
                del self._seen[fault]
            elif self._present_for(track, now) >= settings.fault_on_s:
                active.add(fault)
        if active != self._faults:
            self._faults = frozenset(active)
            self._outputs.append(FaultChange(self.spec.slot, tuple(sorted(active)), now))

    def _target_state(self, count: int) -> StockState:
        minimum = self.spec.min_count
        if count == 0:
            return StockState.OUT
        if count <= minimum:
            return StockState.LOW
        if (
            self.state in {StockState.LOW, StockState.OUT}
            and count < minimum + self.settings.hysteresis_items
        ):
            return StockState.LOW
        return StockState.OK

    def _evaluate_state(self, now: float) -> None:
        count = self.count
        if count is None:
            self._pending_state = None
            return
        target = self._target_state(count)
        if target is self.state:
            self._pending_state = None
            return
        if target is not self._pending_state:
            self._pending_state = target
            self._pending_since = now
        worse = _SEVERITY[target] > _SEVERITY[self.state]
        hold = self.settings.low_hold_s if worse else self.settings.clear_hold_s
        if self.state is StockState.UNKNOWN or now - self._pending_since >= hold:
            previous, self.state = self.state, target
            self._pending_state = None
            self._outputs.append(
                StockStateChange(
                    self.spec.slot, self.spec.sku, target, previous, count, self.spec.min_count, now
                )
            )

    # --- views --------------------------------------------------------------------------

    @property
    def faults(self) -> tuple[Fault, ...]:
        return tuple(sorted(self._faults))

    @property
    def count_is_current(self) -> bool:
        """Whether :attr:`count` stands on current weights: no active fault, and a stable
        level read since the last sample without weight (or stretch without samples)."""
        return self._level_confirmed and not self._faults

    @property
    def stable_reading(self) -> float | None:
        """The raw reading's stable mean (for tare and calibration), None while moving."""
        if not self._stable or not self._window:
            return None
        spec = self.spec
        return self._mean / spec.gain + spec.tare_grams

    def take_activity(self) -> SlotActivity:
        activity, self.activity = self.activity, SlotActivity()
        return activity

    def snapshot(self) -> SlotSnapshot:
        load = self._mean if self._window else None
        ref = self._ref
        return SlotSnapshot(
            slot=self.spec.slot,
            sku=self.spec.sku,
            count=self.count,
            state=self.state,
            faults=self.faults,
            raw=self._last_raw,
            load_grams=load,
            items_grams=None if ref is None else ref - self.zero,
            stable=self._stable,
            noise_grams=self._sigma,
            zero_grams=self.zero,
            last_sample_at=self._last_at,
            stale=not self.count_is_current,
        )


_SEVERITY = {StockState.UNKNOWN: 0, StockState.OK: 0, StockState.LOW: 1, StockState.OUT: 2}
