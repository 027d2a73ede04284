"""Simulated smart shelf: load cells under slots, with shoppers who pick, put back and restock.

Each channel is a slot with a tray and items of ``unit_grams``. A shopper visit disturbs the
weight for a moment (``stable`` false, oscillating) before it settles at the new level, like
a real plate when an item is lifted; staff restock a slot some time after it runs low.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.simulated.faults import FaultOptions, FaultState
from gateway.drivers.contracts import DriverContext, Reading, ScaleStatus, WeightSample
from gateway.errors import DriverConfigError

__all__ = ["ChannelSim", "SimulatedScale", "SimulatedScaleOptions"]

_SETTLE_S = 1.5  # scenario seconds a plate needs to settle after a touch


class ChannelSim(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str = Field(min_length=1, max_length=64)
    unit_grams: float = Field(gt=0, le=100_000, description="Weight of one item.")
    tray_grams: float = Field(50.0, ge=0, le=100_000, description="Empty tray/plate weight.")
    initial_count: int = Field(10, ge=0, le=10_000)
    capacity: int = Field(12, ge=1, le=10_000)
    pick_interval_s: float = Field(30.0, gt=0, description="Mean time between shopper visits.")
    put_back_ratio: float = Field(0.15, ge=0, le=1, description="Share of visits that put back.")
    restock_below: int = Field(2, ge=0, description="Staff restock once count is at or below.")
    restock_delay_s: float = Field(60.0, ge=0, description="Time until staff restock.")

    @model_validator(mode="after")
    def _fits(self) -> ChannelSim:
        if self.initial_count > self.capacity:
            raise ValueError("initial_count exceeds capacity")
        return self


def _default_channels() -> list[ChannelSim]:
    return [
        ChannelSim(channel="slot-1", unit_grams=330.0, initial_count=10, capacity=12),
        ChannelSim(channel="slot-2", unit_grams=125.0, initial_count=6, capacity=8),
    ]


class SimulatedScaleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, description="Scenario seed (mixed with the instance name).")
    sample_rate_hz: float = Field(5.0, gt=0, le=100)
    noise_grams: float = Field(0.8, ge=0, le=100, description="Std-dev of sensor noise.")
    speed: float = Field(1.0, gt=0, le=10_000, description="Scenario time compression.")
    channels: list[ChannelSim] = Field(default_factory=_default_channels, min_length=1)
    faults: FaultOptions = FaultOptions()

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
    settle_until: float = -math.inf
    restock_at: float | None = None
    tare_grams: float = 0.0
    zero_grams: float = 0.0


class SimulatedScale:
    """A :class:`~gateway.drivers.contracts.ScaleDriver` over a scripted shelf."""

    def __init__(self, context: DriverContext, options: SimulatedScaleOptions) -> None:
        self._context = context
        self._options = options
        self._rng = random.Random(f"{options.seed}:{context.name}")  # noqa: S311 - simulation
        self._scenario_s = 0.0
        self._slots = {
            spec.channel: _Slot(
                spec, spec.initial_count, self._visit_gap(spec), tare_grams=spec.tray_grams
            )
            for spec in options.channels
        }
        self._faults = FaultState(context.name, options.faults, context.clock.monotonic())

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self._slots)

    def true_counts(self) -> dict[str, int]:
        """What is really on each slot (the answer the stock logic should arrive at)."""
        return {name: slot.count for name, slot in self._slots.items()}

    async def open(self) -> None:
        await self._faults.on_open()

    async def close(self) -> None:
        return None

    async def zero(self, channel: str) -> None:
        slot = self._slot(channel)
        slot.zero_grams = self._raw_grams(slot)

    async def tare(self, channel: str) -> None:
        slot = self._slot(channel)
        slot.tare_grams = self._raw_grams(slot) - slot.zero_grams

    async def readings(self) -> AsyncIterator[Reading]:
        clock = self._context.clock
        period = 1.0 / self._options.sample_rate_hz
        self._faults.started = clock.monotonic()
        while True:
            await asyncio.sleep(period)
            await self._faults.on_tick(clock.monotonic())
            self._advance(period * self._options.speed)
            now_mono, now_wall = clock.monotonic(), clock.utc_now()
            for name, slot in self._slots.items():
                gross = self._raw_grams(slot) - slot.zero_grams
                settling = self._scenario_s < slot.settle_until
                if settling:  # an item being lifted or placed: the plate rocks
                    gross += slot.spec.unit_grams * 0.6 * math.sin(self._scenario_s * 9.0)
                gross += self._rng.gauss(0.0, self._options.noise_grams)
                yield WeightSample(
                    channel=name,
                    gross_grams=round(gross, 1),
                    net_grams=round(gross - slot.tare_grams, 1),
                    stable=not settling,
                    status=ScaleStatus.OK,
                    monotonic=now_mono,
                    observed_at=now_wall,
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

    @staticmethod
    def _raw_grams(slot: _Slot) -> float:
        return slot.spec.tray_grams + slot.count * slot.spec.unit_grams

    def _visit_gap(self, spec: ChannelSim) -> float:
        return self._rng.expovariate(1.0 / spec.pick_interval_s)

    def _advance(self, seconds: float) -> None:
        self._scenario_s += seconds
        now = self._scenario_s
        for slot in self._slots.values():
            spec = slot.spec
            if slot.restock_at is not None and now >= slot.restock_at:
                slot.count = spec.capacity
                slot.restock_at = None
                slot.settle_until = now + _SETTLE_S * 2
            if now >= slot.next_visit:
                slot.next_visit = now + self._visit_gap(spec)
                if self._rng.random() < spec.put_back_ratio and slot.count < spec.capacity:
                    slot.count += 1
                elif slot.count > 0:
                    slot.count -= min(slot.count, 1 + (self._rng.random() < 0.2))
                else:
                    continue
                slot.settle_until = now + _SETTLE_S
            if slot.count <= spec.restock_below and slot.restock_at is None:
                slot.restock_at = now + spec.restock_delay_s
