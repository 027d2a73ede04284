"""Simulated ESL system: an access point with a sequential radio and labels that check in.

Behaves like the real systems in research/esl.md where it matters to the core: ``push``
only *queues* content (accepted, not shown); the radio delivers one label at a time at
``seconds_per_label``; a newer push for a label replaces its queued content (only the latest is
ever sent); delivery can fail ("xfer timeout"); ``CONFIRMED`` is reported only when the label
itself has the content.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.simulated.faults import FaultOptions, FaultState
from gateway.drivers.contracts import (
    DriverContext,
    Heartbeat,
    LabelContent,
    LabelModel,
    LabelPalette,
    LabelReport,
    LabelReportKind,
    Reading,
)
from gateway.errors import DriverConfigError

__all__ = ["LabelSim", "SimulatedEsl", "SimulatedEslOptions"]

_TICK_S = 0.2
_HEARTBEAT_S = 5.0


class LabelSim(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label_id: str = Field(pattern=r"^[0-9A-F]{16}$", description="16 upper-case hex (MAC).")
    width: int = Field(296, ge=8, le=2000)
    height: int = Field(128, ge=8, le=2000)
    palette: LabelPalette = LabelPalette.BWR
    has_led: bool = True


class SimulatedEslOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    labels: list[LabelSim] = Field(default_factory=list)
    label_count: int = Field(4, ge=0, le=10_000, description="Generated labels when none listed.")
    seconds_per_label: float = Field(3.9, gt=0, le=600, description="Radio time per delivery.")
    failure_rate: float = Field(0.0, ge=0, le=1, description="Share of deliveries that fail.")
    checkin_interval_s: float = Field(40.0, gt=0, le=3600)
    speed: float = Field(1.0, gt=0, le=10_000, description="Divides radio and check-in times.")
    faults: FaultOptions = FaultOptions()

    @model_validator(mode="after")
    def _unique_labels(self) -> SimulatedEslOptions:
        ids = [label.label_id for label in self.labels]
        if len(ids) != len(set(ids)):
            raise ValueError("label ids must be unique")
        return self


@dataclass(slots=True)
class _Label:
    spec: LabelSim
    shown_hash: str | None = None
    battery_mv: int = 2900
    flashes: int = 0

    @property
    def model(self) -> LabelModel:
        return LabelModel(self.spec.width, self.spec.height, self.spec.palette, self.spec.has_led)


class SimulatedEsl:
    """A :class:`~gateway.drivers.contracts.LabelDriver` over a simulated access point."""

    def __init__(self, context: DriverContext, options: SimulatedEslOptions) -> None:
        self._context = context
        self._options = options
        self._rng = random.Random(f"{options.seed}:{context.name}")  # noqa: S311 - simulation
        specs = list(options.labels) or [
            LabelSim(label_id=f"0000{self._rng.getrandbits(48):012X}")
            for _ in range(options.label_count)
        ]
        self._labels = {spec.label_id: _Label(spec) for spec in specs}
        self._queue: OrderedDict[str, LabelContent] = OrderedDict()
        self._reports: list[LabelReport] = []
        self._wake = asyncio.Event()
        self._faults = FaultState(context.name, options.faults, context.clock.monotonic())
        self.superseded = 0

    @property
    def labels_per_minute(self) -> float:
        return 60.0 * self._options.speed / self._options.seconds_per_label

    @property
    def label_ids(self) -> tuple[str, ...]:
        return tuple(self._labels)

    def shown_hash(self, label_id: str) -> str | None:
        return self._label(label_id).shown_hash

    def queued(self) -> tuple[str, ...]:
        return tuple(self._queue)

    async def open(self) -> None:
        await self._faults.on_open()

    async def close(self) -> None:
        return None

    async def push(self, content: LabelContent) -> None:
        self._label(content.label_id)
        if content.label_id in self._queue:
            self.superseded += 1  # only the latest content for a label is ever sent
            del self._queue[content.label_id]
        self._queue[content.label_id] = content
        self._wake.set()

    async def flash(self, label_id: str, *, seconds: float = 10.0) -> None:
        label = self._label(label_id)
        if not label.spec.has_led:
            raise DriverConfigError(f"label {label_id} has no LED", driver=self._context.name)
        label.flashes += 1
        self._report(label, LabelReportKind.SEEN, evidence=f"sim: LED flashed for {seconds:g} s")

    async def readings(self) -> AsyncIterator[Reading]:
        clock = self._context.clock
        self._faults.started = clock.monotonic()
        radio_s = self._options.seconds_per_label / self._options.speed
        checkin_s = self._options.checkin_interval_s / self._options.speed
        # Check-ins are spread over the interval, one label at a time, like real tags.
        checkin_gap = checkin_s / max(1, len(self._labels))
        checkin_order = list(self._labels.values())
        next_checkin = clock.monotonic() + checkin_gap
        checkin_index = 0
        delivering: tuple[LabelContent, float] | None = None
        last_yield = clock.monotonic()
        while True:
            self._wake.clear()
            now = clock.monotonic()
            await self._faults.on_tick(now)
            if delivering is None and self._queue:
                _, content = self._queue.popitem(last=False)
                delivering = (content, now + radio_s)
            if delivering is not None and now >= delivering[1]:
                self._deliver(delivering[0])
                delivering = None
                continue
            if checkin_order and now >= next_checkin:
                label = checkin_order[checkin_index % len(checkin_order)]
                checkin_index += 1
                next_checkin = now + checkin_gap
                label.battery_mv = max(2200, label.battery_mv - self._rng.randrange(0, 2))
                self._report(label, LabelReportKind.SEEN, evidence="sim: check-in")
            while self._reports:
                last_yield = now
                yield self._reports.pop(0)
            if now - last_yield >= _HEARTBEAT_S:
                last_yield = now
                yield Heartbeat(now, f"{len(self._queue)} queued")
            wait = _TICK_S
            if delivering is not None:
                wait = min(wait, max(0.0, delivering[1] - now))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _deliver(self, content: LabelContent) -> None:
        label = self._labels[content.label_id]
        if self._rng.random() < self._options.failure_rate:
            self._report(
                label,
                LabelReportKind.FAILED,
                content_hash=content.content_hash,
                evidence="sim: xfer timeout after 20 attempts",
            )
            return
        label.shown_hash = content.content_hash
        self._report(
            label,
            LabelReportKind.CONFIRMED,
            content_hash=content.content_hash,
            evidence="sim: label reported xfer complete",
        )

    def _report(
        self,
        label: _Label,
        kind: LabelReportKind,
        *,
        content_hash: str | None = None,
        evidence: str = "",
    ) -> None:
        clock = self._context.clock
        self._reports.append(
            LabelReport(
                label_id=label.spec.label_id,
                kind=kind,
                monotonic=clock.monotonic(),
                observed_at=clock.utc_now(),
                content_hash=content_hash if content_hash is not None else label.shown_hash,
                evidence=evidence,
                model=label.model,
                battery_mv=label.battery_mv,
                rssi=-55 - self._rng.randrange(0, 20),
            )
        )
        self._wake.set()

    def _label(self, label_id: str) -> _Label:
        try:
            return self._labels[label_id]
        except KeyError:
            raise DriverConfigError(
                f"unknown label {label_id}", driver=self._context.name
            ) from None
