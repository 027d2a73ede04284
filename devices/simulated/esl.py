"""Simulated ESL system: an access point with a sequential radio and labels that check in.

Behaves like the real systems in research/esl.md where it matters to the core: ``push`` only
*queues* content (accepted, not shown); the radio delivers one label at a time, taking
``seconds_per_label``; a newer push for a label replaces its queued content (only the latest is
ever sent); a delivery can fail ("xfer timeout"); ``CONFIRMED`` is reported only once the label
itself has the content. Labels check in (``SEEN``, with battery and signal) spread over
``checkin_interval_s``. Delivery runs inside ``readings()``: no task outlives the iterator, and
content in flight when it is closed goes back to the front of the queue.

Delivery outcomes and check-in values each come from their own seeded stream, so they are
deterministic for a seed and a push order even though real-time pacing interleaves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.simulated.faults import FaultOptions, FaultState, OpenAttempts
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

__all__ = ["LabelModelSim", "LabelSim", "SimulatedEsl", "SimulatedEslOptions"]

CONFIRMED_EVIDENCE = "sim: label reported xfer complete"
FAILED_EVIDENCE = "sim: xfer timeout, label did not answer"


class LabelModelSim(BaseModel):
    """What a simulated label's panel can show."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(296, ge=8, le=2000, description="Panel width in pixels.")
    height: int = Field(128, ge=8, le=2000, description="Panel height in pixels.")
    palette: LabelPalette = Field(LabelPalette.BWR, description="Colours the panel shows.")
    has_led: bool = Field(True, description="Whether the label has an LED to flash.")

    def to_model(self) -> LabelModel:
        return LabelModel(self.width, self.height, self.palette, self.has_led)


class LabelSim(BaseModel):
    """One label; its model defaults to the options' ``default_model``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label_id: str = Field(pattern=r"^[0-9A-F]{16}$", description="16 upper-case hex (MAC).")
    model: LabelModelSim | None = Field(None, description="Panel; None: the default model.")


class SimulatedEslOptions(BaseModel):
    """Options of ``simulated.esl``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, ge=0, le=2**63, description="Scenario seed (mixed with the name).")
    labels: list[LabelSim] = Field(
        default_factory=list, max_length=100_000, description="Labels; empty: label_count."
    )
    label_count: int = Field(
        4, ge=0, le=100_000, description="Labels generated when none are listed."
    )
    default_model: LabelModelSim = Field(
        default_factory=LabelModelSim, description="Model of generated and unmodelled labels."
    )
    seconds_per_label: float = Field(
        3.9, gt=0, le=600, description="Radio time per delivery (sets labels_per_minute)."
    )
    failure_rate: float = Field(0.0, ge=0, le=1, description="Share of deliveries that fail.")
    checkin_interval_s: float = Field(
        40.0, gt=0, le=86_400, description="Each label checks in this often."
    )
    heartbeat_s: float = Field(5.0, gt=0, le=600, description="Heartbeat when nothing happens.")
    speed: float = Field(
        1.0, gt=0, le=100_000, description="Time compression of radio and check-ins."
    )
    faults: FaultOptions = Field(default_factory=FaultOptions, description="Fault injection.")

    @model_validator(mode="after")
    def _unique_labels(self) -> SimulatedEslOptions:
        ids = [label.label_id for label in self.labels]
        if len(ids) != len(set(ids)):
            raise ValueError("label ids must be unique")
        return self


@dataclass(slots=True)
class _Label:
    label_id: str
    model: LabelModel
    battery_mv: int
    rssi: int  # mean signal at the access point
    shown_hash: str | None = None
    flashes: int = 0


class SimulatedEsl:
    """A :class:`~gateway.drivers.contracts.LabelDriver` over a simulated access point."""

    def __init__(
        self,
        context: DriverContext,
        options: SimulatedEslOptions,
        *,
        open_attempts: OpenAttempts | None = None,
    ) -> None:
        self._context = context
        self._options = options
        self._faults = FaultState(context.name, options.faults, open_attempts or OpenAttempts())
        seed = f"{options.seed}:{context.name}"
        rng = random.Random(seed)  # noqa: S311 - simulation
        self._delivery_rng = random.Random(f"{seed}:deliveries")  # noqa: S311
        self._checkin_rng = random.Random(f"{seed}:check-ins")  # noqa: S311
        specs = options.labels or [
            LabelSim(label_id=f"0000{rng.getrandbits(48):012X}") for _ in range(options.label_count)
        ]
        self._labels = {
            spec.label_id: _Label(
                spec.label_id,
                (spec.model or options.default_model).to_model(),
                battery_mv=rng.randrange(2600, 3100),
                rssi=rng.randrange(-85, -50),
            )
            for spec in specs
        }
        self._queue: OrderedDict[str, LabelContent] = OrderedDict()
        self._reports: list[LabelReport] = []
        self._wake = asyncio.Event()
        self.superseded = 0  # queued contents replaced by a newer push before delivery

    # --- for tests and the demo -----------------------------------------------------------

    @property
    def label_ids(self) -> tuple[str, ...]:
        return tuple(self._labels)

    def shown_hash(self, label_id: str) -> str | None:
        """The content the label really shows (None: nothing delivered yet)."""
        return self._label(label_id).shown_hash

    def flashes(self, label_id: str) -> int:
        return self._label(label_id).flashes

    def queued(self) -> tuple[str, ...]:
        """Labels with content waiting for the radio, in delivery order."""
        return tuple(self._queue)

    # --- the contract -----------------------------------------------------------------------

    @property
    def labels_per_minute(self) -> float:
        return 60.0 * self._options.speed / self._options.seconds_per_label

    async def open(self) -> None:
        await self._faults.on_open()

    async def close(self) -> None:
        return None

    async def push(self, content: LabelContent) -> None:
        label = self._label(content.label_id)
        if (content.model.width, content.model.height) != (label.model.width, label.model.height):
            raise DriverConfigError(
                f"content for label {label.label_id} is {content.model.width}x"
                f"{content.model.height}, the panel is {label.model.width}x{label.model.height}",
                driver=self._context.name,
            )
        if content.label_id in self._queue:
            self.superseded += 1  # replaced in place: only the latest content is ever sent
        self._queue[content.label_id] = content
        self._wake.set()

    async def flash(self, label_id: str, *, seconds: float = 10.0) -> None:
        label = self._label(label_id)
        if not label.model.has_led:
            raise DriverConfigError(f"label {label_id} has no LED", driver=self._context.name)
        label.flashes += 1
        self._report(label, LabelReportKind.SEEN, evidence=f"sim: LED flashed for {seconds:g} s")

    async def readings(self) -> AsyncIterator[Reading]:
        loop = asyncio.get_running_loop()
        options = self._options
        radio_s = options.seconds_per_label / options.speed
        # Check-ins are spread over the interval, one label at a time, like real tags.
        order = list(self._labels.values())
        checkin_gap = options.checkin_interval_s / options.speed / max(1, len(order))
        checkins = 0
        self._faults.start()
        start = loop.time()
        next_checkin = start + checkin_gap
        last_yield = start
        delivering: tuple[LabelContent, float] | None = None  # content, done at
        try:
            while True:
                self._wake.clear()  # before looking: a push from here on wakes the wait
                now = loop.time()
                if delivering is None and self._queue:
                    _, content = self._queue.popitem(last=False)
                    delivering = (content, now + radio_s)
                if delivering is not None and now >= delivering[1]:
                    self._deliver(delivering[0])
                    delivering = None
                    continue  # start the next delivery before yielding
                if order and now >= next_checkin:
                    self._check_in(order[checkins % len(order)])
                    checkins += 1
                    next_checkin += checkin_gap
                    next_checkin = max(next_checkin, now)  # no burst after a slow consumer
                while self._reports:
                    await self._faults.check()
                    last_yield = loop.time()
                    yield self._reports.pop(0)
                if now - last_yield >= options.heartbeat_s:
                    await self._faults.check()
                    last_yield = now
                    yield Heartbeat(self._context.clock.monotonic(), f"{len(self._queue)} queued")
                deadline = last_yield + options.heartbeat_s
                if order:
                    deadline = min(deadline, next_checkin)
                if delivering is not None:
                    deadline = min(deadline, delivering[1])
                await self._wait(deadline)
        finally:
            if delivering is not None and delivering[0].label_id not in self._queue:
                # Cut off mid-delivery: the access point still holds the content.
                self._queue[delivering[0].label_id] = delivering[0]
                self._queue.move_to_end(delivering[0].label_id, last=False)

    # --- internals --------------------------------------------------------------------------

    async def _wait(self, deadline: float) -> None:
        """Until ``deadline`` (loop time), a push or flash, or a fault falling due."""
        loop = asyncio.get_running_loop()
        if not self._reports:
            wake_at = min(deadline, loop.time() + self._faults.seconds_left())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(wake_at):
                    await self._wake.wait()
        await self._faults.check()

    def _deliver(self, content: LabelContent) -> None:
        label = self._labels[content.label_id]
        if self._delivery_rng.random() < self._options.failure_rate:
            kind, evidence = LabelReportKind.FAILED, FAILED_EVIDENCE
        else:
            label.shown_hash = content.content_hash
            kind, evidence = LabelReportKind.CONFIRMED, CONFIRMED_EVIDENCE
        self._report(label, kind, content_hash=content.content_hash, evidence=evidence)

    def _check_in(self, label: _Label) -> None:
        rng = self._checkin_rng
        label.battery_mv = max(2200, label.battery_mv - rng.randrange(0, 2))
        self._report(
            label,
            LabelReportKind.SEEN,
            evidence="sim: check-in",
            rssi=max(-100, min(-30, round(label.rssi + rng.gauss(0.0, 2.0)))),
        )

    def _report(
        self,
        label: _Label,
        kind: LabelReportKind,
        *,
        evidence: str,
        content_hash: str | None = None,
        rssi: int | None = None,
    ) -> None:
        clock = self._context.clock
        self._reports.append(
            LabelReport(
                label_id=label.label_id,
                kind=kind,
                monotonic=clock.monotonic(),
                observed_at=clock.utc_now(),
                content_hash=content_hash if content_hash is not None else label.shown_hash,
                evidence=evidence,
                model=label.model,
                battery_mv=label.battery_mv,
                rssi=label.rssi if rssi is None else rssi,
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
