"""Simulated smart shelf: load cells under slots, with shoppers who pick, put back and restock.

Each channel is a slot holding a tray and items of ``unit_grams``. A shopper visit disturbs the
plate for one to two seconds (``stable`` false, the weight swinging around the new level) and
then it settles at the new level; staff restock a slot to capacity some time after it runs low.
The channel starts tared on its empty tray (net = items only), as an installer would leave it.

The scenario advances by a fixed step per sample (``speed`` / ``sample_rate_hz`` seconds), so
the values depend only on the seed, the instance name and the number of samples taken, never on
how promptly the consumer reads them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.kit.simulated import SimulatedDriver, SimulatedOptions
from gateway.drivers.contracts import DriverContext, Reading, ScaleStatus, WeightSample
from gateway.errors import DriverConfigError

__all__ = ["ChannelSim", "SimulatedScale", "SimulatedScaleOptions"]

_MIN_UNSTABLE_SAMPLES = 2  # even at high speed the core must see a visit as motion
_SWING_HZ = 2.5  # how fast a touched plate rocks


class ChannelSim(BaseModel):
    """One slot: its load cell, what lies on it and how shoppers and staff treat it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str = Field(min_length=1, max_length=64, description="Load cell channel name.")
    unit_grams: float = Field(gt=0, le=100_000, description="Weight of one item.")
    tray_grams: float = Field(50.0, ge=0, le=100_000, description="Empty tray/plate weight.")
    initial_count: int = Field(10, ge=0, le=10_000, description="Items on the slot at start.")
    capacity: int = Field(12, ge=1, le=10_000, description="Items a full slot holds.")
    pick_interval_s: float = Field(
        30.0, gt=0, le=31_536_000, description="Mean time between shopper visits (exponential)."
    )
    put_back_ratio: float = Field(
        0.15, ge=0, le=1, description="Share of visits that put an item back instead."
    )
    restock_below: int = Field(
        2, ge=0, le=10_000, description="Staff restock once the count is at or below this."
    )
    restock_delay_s: float = Field(
        60.0, ge=0, le=86_400, description="Time from running low until the slot is refilled."
    )

    @model_validator(mode="after")
    def _fits(self) -> ChannelSim:
        if self.initial_count > self.capacity:
            raise ValueError("initial_count exceeds capacity")
        if self.restock_below >= self.capacity:
            raise ValueError("restock_below must be below capacity")
        return self


def _default_channels() -> list[ChannelSim]:
    return [
        ChannelSim(channel="slot-1", unit_grams=330.0, initial_count=10, capacity=12),
        ChannelSim(channel="slot-2", unit_grams=125.0, initial_count=6, capacity=8),
    ]


class SimulatedScaleOptions(SimulatedOptions):
    """Options of ``simulated.scale``."""

    sample_rate_hz: float = Field(5.0, gt=0, le=200, description="Samples per channel per s.")
    noise_grams: float = Field(0.8, ge=0, le=1_000, description="Std-dev of sensor noise.")
    speed: float = Field(
        1.0, gt=0, le=100_000, description="Scenario time compression (shoppers come faster)."
    )
    channels: list[ChannelSim] = Field(
        default_factory=_default_channels, min_length=1, max_length=64, description="The slots."
    )

    @model_validator(mode="after")
    def _unique_channels(self) -> SimulatedScaleOptions:
        names = [channel.channel for channel in self.channels]
        if len(names) != len(set(names)):
            raise ValueError("channel names must be unique")
        return self


@dataclass(slots=True)
class _Slot:
    spec: ChannelSim
    count: int
    next_visit: float
    tare_grams: float
    zero_grams: float = 0.0
    restock_at: float | None = None
    touched_at: float = -math.inf  # scenario time of the last disturbance
    settle_until: float = -math.inf
    swing_grams: float = 0.0  # how far the plate swings at the start of the disturbance

    @property
    def load_grams(self) -> float:
        return self.spec.tray_grams + self.count * self.spec.unit_grams


class SimulatedScale(SimulatedDriver[SimulatedScaleOptions]):
    """A :class:`~gateway.drivers.contracts.ScaleDriver` over a scripted shelf."""

    def __init__(self, context: DriverContext, options: SimulatedScaleOptions) -> None:
        super().__init__(context, options)
        self._rng = self._random()
        self._step_s = options.speed / options.sample_rate_hz  # scenario seconds per sample
        self._scenario_s = 0.0
        self._slots = {
            spec.channel: _Slot(
                spec, spec.initial_count, self._visit_gap(spec), tare_grams=spec.tray_grams
            )
            for spec in options.channels
        }
        for slot in self._slots.values():
            self._maybe_schedule_restock(slot)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self._slots)

    def true_counts(self) -> Mapping[str, int]:
        """What really lies on each slot: the answer the stock logic should arrive at."""
        return MappingProxyType({name: slot.count for name, slot in self._slots.items()})

    async def zero(self, channel: str) -> None:
        """Gross reads 0 at the current load (what a zero key does on a scale head)."""
        slot = self._slot(channel)
        slot.zero_grams = slot.load_grams
        slot.tare_grams = 0.0

    async def tare(self, channel: str) -> None:
        """Net reads 0 at the current load; gross is unchanged."""
        slot = self._slot(channel)
        slot.tare_grams = slot.load_grams - slot.zero_grams

    async def readings(self) -> AsyncIterator[Reading]:
        loop = asyncio.get_running_loop()
        clock = self._context.clock
        period = 1.0 / self._options.sample_rate_hz
        self.faults.start()
        next_at = loop.time()
        while True:
            next_at += period
            now = loop.time()
            if next_at < now - period:  # the consumer fell behind: skip, do not burst
                next_at = now
            await self.faults.sleep_until(next_at)
            self._advance(self._step_s)
            monotonic, observed_at = clock.monotonic(), clock.utc_now()
            for name, slot in self._slots.items():
                gross = slot.load_grams - slot.zero_grams + self._swing(slot)
                gross += self._rng.gauss(0.0, self._options.noise_grams)
                yield WeightSample(
                    channel=name,
                    gross_grams=round(gross, 1),
                    net_grams=round(gross - slot.tare_grams, 1),
                    stable=self._scenario_s >= slot.settle_until,
                    status=ScaleStatus.OK,
                    monotonic=monotonic,
                    observed_at=observed_at,
                )

    # --- scenario -----------------------------------------------------------------------

    def _slot(self, channel: str) -> _Slot:
        try:
            return self._slots[channel]
        except KeyError:
            raise DriverConfigError(
                f"unknown channel {channel!r}; channels: {', '.join(self._slots)}",
                driver=self._context.name,
            ) from None

    def _visit_gap(self, spec: ChannelSim) -> float:
        return self._rng.expovariate(1.0 / spec.pick_interval_s)

    def _swing(self, slot: _Slot) -> float:
        """A touched plate swings around its new level, dying out as it settles."""
        if self._scenario_s >= slot.settle_until:
            return 0.0
        since = self._scenario_s - slot.touched_at
        decay = math.exp(-3.0 * since / (slot.settle_until - slot.touched_at))
        return slot.swing_grams * decay * math.cos(2 * math.pi * _SWING_HZ * since)

    def _disturb(self, slot: _Slot, before_grams: float) -> None:
        now = self._scenario_s
        settle_s = max(self._rng.uniform(1.0, 2.0), _MIN_UNSTABLE_SAMPLES * self._step_s)
        slot.touched_at = now
        slot.settle_until = now + settle_s
        # The hand's push or pull, at least a fraction of an item even when nothing changed.
        slot.swing_grams = (before_grams - slot.load_grams) or 0.3 * slot.spec.unit_grams

    def _maybe_schedule_restock(self, slot: _Slot) -> None:
        if slot.count <= slot.spec.restock_below and slot.restock_at is None:
            slot.restock_at = self._scenario_s + slot.spec.restock_delay_s

    def _advance(self, seconds: float) -> None:
        self._scenario_s += seconds
        now = self._scenario_s
        for slot in self._slots.values():
            spec = slot.spec
            before = slot.load_grams
            if slot.restock_at is not None and now >= slot.restock_at:
                slot.restock_at = None
                slot.count = spec.capacity
                self._disturb(slot, before)
            if now >= slot.next_visit:
                slot.next_visit = now + self._visit_gap(spec)
                if self._rng.random() < spec.put_back_ratio:
                    slot.count = min(spec.capacity, slot.count + 1)
                else:  # most shoppers take one item, some two
                    slot.count -= min(slot.count, 2 if self._rng.random() < 0.2 else 1)
                self._disturb(slot, before)
            self._maybe_schedule_restock(slot)
