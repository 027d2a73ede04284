"""The ``[shelves]`` section: the stock logic's tuning shared by every slot, and the slots
(``[[shelves.slots]]``); :meth:`ShelvesConfig.counter_settings` turns the tuning into the
:class:`~gateway.shelves.slot_counter.CounterSettings` every slot's counter runs with."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from gateway.drivers.config import DEVICE_NAME_PATTERN
from gateway.section import ConfigSection
from gateway.shelves.slot_counter import CounterSettings

__all__ = ["SKU_PATTERN", "SLOT_NAME_PATTERN", "ShelvesConfig", "SlotConfig"]

SLOT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class SlotConfig(ConfigSection):
    """One shelf slot: which load cell weighs it and what it holds."""

    slot: str = Field(pattern=SLOT_NAME_PATTERN, description="Slot id, e.g. aisle3-shelf2-left.")
    device: str = Field(
        pattern=DEVICE_NAME_PATTERN, description="The scale device ([[devices]] name)."
    )
    channel: str = Field(min_length=1, max_length=64, description="The device's channel.")
    sku: str = Field(pattern=SKU_PATTERN)
    unit_grams: float = Field(gt=0, le=1_000_000, description="Weight of one item.")
    tolerance: float = Field(
        0.25, gt=0, lt=0.5, description="How far from a whole number of items a change may be."
    )
    item_spread: float = Field(
        0.02, ge=0, lt=0.5, description="How much single items (and look-alikes) differ."
    )
    tray_tare_grams: float = Field(
        0.0, ge=-1_000_000, le=1_000_000, description="Reading with the empty tray on."
    )
    min_count: int = Field(0, ge=0, le=1_000_000, description="Reorder point (low stock).")
    max_count: int | None = Field(None, ge=1, le=1_000_000, description="Capacity.")
    override: bool = Field(False, description="A local override: HQ cannot change this slot.")

    @model_validator(mode="after")
    def _min_below_max(self) -> Self:
        if self.max_count is not None and self.max_count < self.min_count:
            raise ValueError("max_count must be >= min_count")
        return self


class ShelvesConfig(ConfigSection):
    """Stock logic tuning shared by every slot, and the slots themselves."""

    window_s: float = Field(0.8, gt=0, le=10, description="Moving window of the motion test.")
    settle_s: float = Field(1.0, ge=0, le=60, description="A drop holds this long: a pick.")
    rise_hold_s: float = Field(
        10.0, ge=0, le=600, description="A rise holds this long: a put (outlasts leaning)."
    )
    motion_k: float = Field(4.0, gt=0, le=100, description="Stable: spread <= k x idle noise.")
    noise_floor_grams: float = Field(0.25, gt=0, le=1000)
    recount_interval_s: float = Field(60.0, ge=1, le=86400)
    zero_track_grams_per_h: float = Field(30.0, ge=0, le=10_000)
    zero_band: float = Field(0.1, ge=0, lt=0.5)
    no_data_s: float = Field(10.0, gt=0, le=3600)
    stuck_s: float = Field(300.0, ge=0, le=86400, description="0 disables the stuck check.")
    fault_on_s: float = Field(2.0, ge=0, le=600)
    fault_off_s: float = Field(5.0, ge=0, le=600)
    low_hold_s: float = Field(30.0, ge=0, le=86400)
    clear_hold_s: float = Field(30.0, ge=0, le=86400)
    hysteresis_items: int = Field(1, ge=1, le=1000)
    activity_interval_s: float = Field(
        900.0, ge=1, le=86400, description="Period of the stock.activity counts."
    )
    slots: list[SlotConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        seen: set[str] = set()
        channels: dict[tuple[str, str], str] = {}
        for index, slot in enumerate(self.slots):
            if slot.slot in seen:
                raise ValueError(f"slots.{index}: duplicate slot {slot.slot!r}")
            seen.add(slot.slot)
            where = (slot.device, slot.channel)
            if where in channels:
                raise ValueError(
                    f"slots.{index}: {slot.device}/{slot.channel} already weighs slot "
                    f"{channels[where]!r}"
                )
            channels[where] = slot.slot
        return self

    def counter_settings(self) -> CounterSettings:
        names = CounterSettings.__dataclass_fields__
        return CounterSettings(**{name: getattr(self, name) for name in names})
