"""Simulated ESL system: an access point with a sequential radio and labels that check in.

Behaves like the real systems in research/esl.md where it matters to the core: ``push`` only
*queues* content (accepted, not shown); the radio delivers one label at a time, taking
``seconds_per_label`` (± ``radio_jitter``); a newer push for a label replaces its queued content
(only the latest is ever sent); a delivery can fail ("xfer timeout"); ``CONFIRMED`` is reported
only once the label itself shows the content, ``confirmation_latency_s`` later, and some
confirmations never arrive at all (``lost_confirmation_rate``): the label shows the content
anyway and its next check-in (``SEEN``, which always carries the hash the label really shows)
tells the truth. Labels reboot now and then (``reboot_rate_per_hour``, or :meth:`reboot` in
tests) and fall back to the content they showed before their last delivery. Labels check in
(``SEEN``, with battery, signal and their panel's model) spread over ``checkin_interval_s``;
with ``announce_labels`` the access point lists every label (``SEEN``) as soon as it is read,
as a real one's tag database does. ``push`` refuses content drawn for another panel size
(:class:`~gateway.errors.LabelPanelMismatchError`, naming the label's panel);
:meth:`SimulatedEsl.swap_panel` puts another panel behind a label.

Reports about one label never overtake each other: a confirmation still on its way is released
before any later report of the same label, as a real access point forwards its frames in order.

Delivery runs inside ``readings()``: no task outlives the iterator, and content in flight when it
is closed goes back to the front of the queue. With ``image_dir`` every label's shown content is
drawn into a folder (:mod:`devices.simulated.shelf_folder`) the moment the label shows it, and a
new *process* reloads it from there on open: labels are physical, a gateway crash does not blank
them (within one process the instance's :class:`LabelMemory` keeps them). With ``push_log``
every ``push()`` call appends a line ``<label_id> <content_hash>``, so a test can count the
sends per label across gateway processes, SIGKILL included.

Radio times, delivery outcomes, check-in values and reboots each come from their own seeded
stream, so each is deterministic for a seed and a push order even though real-time pacing
interleaves them. ``speed`` compresses every duration (radio, latency, check-ins, reboots).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from devices.kit.simulated import SimulatedDriver, SimulatedOptions
from devices.simulated.shelf_folder import ShelfEntry, ShelfFolder
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
from gateway.errors import (
    DriverConfigError,
    DriverError,
    DriverUnavailableError,
    LabelPanelMismatchError,
)

__all__ = ["LabelMemory", "LabelModelSim", "LabelSim", "SimulatedEsl", "SimulatedEslOptions"]

_LOGGER = logging.getLogger(__name__)

CONFIRMED_EVIDENCE = "sim: label reported xfer complete"
FAILED_EVIDENCE = "sim: xfer timeout, label did not answer"
REBOOTED_EVIDENCE = "sim: label rebooted"
CHECKIN_EVIDENCE = "sim: check-in"
PANEL_SWAPPED_EVIDENCE = "sim: new panel"
ANNOUNCED_EVIDENCE = "sim: listed by the access point"

# The folder's index (shelf.json, index.html) grows with the shelf: rewrite it at most this
# often (real seconds), and for big shelves (10 000 labels take ~0.2 s to index) so rarely
# that the rewrites take at most 1/_INDEX_SHARE of the event loop. Label images and the
# journal are written the moment a label shows them, so a late index loses nothing.
_INDEX_INTERVAL_S = 0.5
_INDEX_SHARE = 10
# A battery reading that changed is no news worth a rewrite of its own: it waits this long
# (or rides along with the next content change).
_INDEX_BATTERY_S = 60.0


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


class SimulatedEslOptions(SimulatedOptions):
    """Options of ``simulated.esl``. Durations are simulated seconds, divided by ``speed``."""

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
        3.9, gt=0, le=600, description="Mean radio time per delivery (sets labels_per_minute)."
    )
    radio_jitter: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Each delivery takes seconds_per_label times 1 ± up to this fraction "
        "(uniform, seeded); the mean and labels_per_minute stay.",
    )
    failure_rate: float = Field(0.0, ge=0, le=1, description="Share of deliveries that fail.")
    confirmation_latency_s: float = Field(
        0.0,
        ge=0,
        le=3600,
        description="Delay from the label showing new content to its CONFIRMED report.",
    )
    lost_confirmation_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of successful deliveries whose CONFIRMED report never arrives (the "
        "label shows the content; its next check-in carries the hash).",
    )
    reboot_rate_per_hour: float = Field(
        0.0,
        ge=0,
        le=3600,
        description="Reboots per label per hour (seeded); a rebooted label falls back to what "
        "it showed before its last delivery (blank if nothing) and reports SEEN.",
    )
    checkin_interval_s: float = Field(
        40.0, gt=0, le=86_400, description="Each label checks in this often."
    )
    announce_labels: bool = Field(
        False,
        description="When readings start, report every label (SEEN with its model and what "
        "it shows), as an access point's tag database lists them (OEPL /get_db); False: a "
        "label is first heard at its first check-in.",
    )
    heartbeat_s: float = Field(5.0, gt=0, le=600, description="Heartbeat when nothing happens.")
    speed: float = Field(
        1.0,
        gt=0,
        le=100_000,
        description="Time compression of radio, confirmations, check-ins and reboots.",
    )
    image_dir: Path | None = Field(
        None,
        description="Folder (created if missing; one per instance) where every label's shown "
        "content is written as <label_id>.png, with shelf.json and index.html; None: no files.",
    )
    push_log: Path | None = Field(
        None,
        description="File (created with its folder if missing) to which every push() call "
        "appends '<label_id> <content_hash>' as one line, for tests counting sends; None: none.",
    )

    @field_validator("image_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("image_dir must name a directory (leave it out for no images)")
        return value

    @field_validator("push_log", mode="before")
    @classmethod
    def _log_not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("push_log must name a file (leave it out for no log)")
        return value

    @field_validator("push_log")
    @classmethod
    def _log_not_a_directory(cls, value: Path | None) -> Path | None:
        if value is not None and value.is_dir():
            raise ValueError(f"push_log {value} is a directory, not a file")
        return value

    @field_validator("image_dir")
    @classmethod
    def _not_a_file(cls, value: Path | None) -> Path | None:
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError(f"image_dir {value} exists and is not a directory")
        return value

    @model_validator(mode="after")
    def _unique_labels(self) -> SimulatedEslOptions:
        ids = [label.label_id for label in self.labels]
        if len(ids) != len(set(ids)):
            raise ValueError("label ids must be unique")
        return self


@dataclass(frozen=True, slots=True)
class _Shown:
    """Content on a panel. ``png`` is kept only when the images are drawn into a folder."""

    content_hash: str
    png: bytes | None


@dataclass(slots=True)
class _Label:
    label_id: str
    model: LabelModel
    battery_mv: int
    rssi: int  # mean signal at the access point
    shown: _Shown | None = None  # None: blank
    previous: _Shown | None = None  # shown before the last change: what a reboot brings back
    shown_at: datetime | None = None  # when it began showing ``shown``
    flashes: int = 0


class LabelMemory:
    """What the simulated labels of one driver instance show, across its driver objects.

    The supervisor builds a new driver object on every restart, but real labels keep their
    picture (and battery) while the access point is away: after a restart each label still
    shows what it showed, and only content queued at the access point is gone. A label whose
    panel changed in the configuration starts blank. Kept in the instance's
    :class:`~gateway.drivers.contracts.InstanceMemory`; it also remembers whether the labels
    were reloaded from the image folder (once per process: after that, the memory is newer
    than the folder).
    """

    def __init__(self) -> None:
        self._labels: dict[str, _Label] = {}
        self.restored = False

    def labels(self, configured: dict[str, _Label]) -> dict[str, _Label]:
        """The configured labels, each as remembered unless its panel changed."""
        known = self._labels
        kept = {
            label_id: known[label_id]
            if label_id in known and known[label_id].model == label.model
            else label
            for label_id, label in configured.items()
        }
        self._labels = kept
        return kept


@dataclass(frozen=True, slots=True)
class _Confirmation:
    """A CONFIRMED report on its way to the gateway."""

    due: float  # loop time
    label_id: str
    content_hash: str


@dataclass(slots=True)
class _Timers:
    """When the next timed events of one ``readings()`` run fall due (loop time)."""

    next_checkin: float
    next_reboot: float
    next_index: float
    checkins: int = 0
    delivering: tuple[LabelContent, float] | None = None  # content, done at


class SimulatedEsl(SimulatedDriver[SimulatedEslOptions]):
    """A :class:`~gateway.drivers.contracts.LabelDriver` over a simulated access point."""

    def __init__(self, context: DriverContext, options: SimulatedEslOptions) -> None:
        super().__init__(context, options)
        rng = self._random()
        self._delivery_rng = self._random("deliveries")
        self._checkin_rng = self._random("check-ins")
        self._radio_rng = self._random("radio")
        self._reboot_rng = self._random("reboots")
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
        self._memory = context.memory.keep(LabelMemory)  # the labels outlive this object
        self._labels = self._memory.labels(self._labels)
        self._queue: OrderedDict[str, LabelContent] = OrderedDict()
        self._reports: list[LabelReport] = []
        self._confirmations: deque[_Confirmation] = deque()
        self._wake = asyncio.Event()
        self._order = list(self._labels.values())  # check-in order
        self._folder: ShelfFolder | None = None
        if options.image_dir is not None:
            self._folder = ShelfFolder(options.image_dir, driver=context.name)
        self._folder_ready = False
        self._index_stale = True
        self._battery_stale = False
        self._index_cost = 0.0  # real seconds the last index rewrite took
        self.superseded = 0  # queued contents replaced by a newer push before delivery
        self.failed_deliveries = 0
        self.lost_confirmations = 0  # deliveries the label showed but never confirmed
        self.reboots = 0

    # --- for tests and the demo -----------------------------------------------------------

    @property
    def label_ids(self) -> tuple[str, ...]:
        return tuple(self._labels)

    def shown_hash(self, label_id: str) -> str | None:
        """The content the label really shows (None: blank)."""
        shown = self._label(label_id).shown
        return None if shown is None else shown.content_hash

    def image_path(self, label_id: str) -> Path | None:
        """Where the label's image is drawn (None: no ``image_dir``); absent while blank."""
        self._label(label_id)
        return None if self._folder is None else self._folder.image_path(label_id)

    def flashes(self, label_id: str) -> int:
        return self._label(label_id).flashes

    def queued(self) -> tuple[str, ...]:
        """Labels with content waiting for the radio, in delivery order."""
        return tuple(self._queue)

    def pending_confirmations(self) -> tuple[str, ...]:
        """Labels whose CONFIRMED report is still on its way, oldest first."""
        return tuple(confirmation.label_id for confirmation in self._confirmations)

    def reboot(self, label_id: str) -> None:
        """Reboot one label now: it falls back to the content it showed before its last
        delivery (blank if none) and reports ``SEEN`` with that hash. Raises DriverError when
        the image folder cannot be written."""
        self._reboot(self._label(label_id))
        if self._folder is not None:
            self._write_index()

    def swap_panel(self, label_id: str, model: LabelModel) -> None:
        """A technician puts another panel behind the label's id (same address, new
        hardware): it starts blank and checks in at once with its new model. Raises
        DriverError when the image folder cannot be written."""
        label = self._label(label_id)
        self._queue.pop(label_id, None)  # what the access point held was for the old panel
        label.model = model
        label.previous = None
        self._show(label, None)
        self._report(label, LabelReportKind.SEEN, evidence=PANEL_SWAPPED_EVIDENCE)
        if self._folder is not None:
            self._write_index()

    # --- the contract -----------------------------------------------------------------------

    @property
    def labels_per_minute(self) -> float:
        return 60.0 * self._options.speed / self._options.seconds_per_label

    async def open(self) -> None:
        await super().open()
        self._prepare_folder()

    async def push(self, content: LabelContent) -> None:
        label = self._label(content.label_id)
        if (content.model.width, content.model.height) != (label.model.width, label.model.height):
            raise LabelPanelMismatchError(
                f"content for label {label.label_id} is {content.model.width}x"
                f"{content.model.height}, the panel is {label.model.width}x{label.model.height}",
                label=label.label_id,
                panel=label.model,
                driver=self._context.name,
            )
        if self._options.push_log is not None:
            self._log_push(self._options.push_log, content)
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
        heartbeat_s = self._options.heartbeat_s
        self._prepare_folder()  # open() does it; tests may read without opening
        self.faults.start()
        start = loop.time()
        timers = _Timers(
            next_checkin=start + self._checkin_gap(),
            next_reboot=start + self._reboot_gap(),
            next_index=start,
        )
        last_yield = start
        if self._options.announce_labels:
            for label in self._order:
                self._report(label, LabelReportKind.SEEN, evidence=ANNOUNCED_EVIDENCE)
        try:
            while True:
                self._wake.clear()  # before looking: a push from here on wakes the wait
                now = loop.time()
                deadline = self._advance(timers, now)
                while self._reports:
                    await self.faults.check()
                    last_yield = loop.time()
                    yield self._reports.pop(0)
                if now - last_yield >= heartbeat_s:
                    await self.faults.check()
                    last_yield = now
                    yield Heartbeat(self._context.clock.monotonic(), f"{len(self._queue)} queued")
                await self._wait(min(deadline, last_yield + heartbeat_s))
        finally:
            delivering = timers.delivering
            if delivering is not None and delivering[0].label_id not in self._queue:
                # Cut off mid-delivery: the access point still holds the content.
                self._queue[delivering[0].label_id] = delivering[0]
                self._queue.move_to_end(delivering[0].label_id, last=False)
            if self._index_stale and self._folder is not None and self._folder_ready:
                try:
                    self._write_index()
                except DriverError as exc:  # the loop raised it already if it persisted
                    _LOGGER.warning("%s", exc)

    # --- internals --------------------------------------------------------------------------

    async def _wait(self, deadline: float) -> None:
        """Until ``deadline`` (loop time), a push or flash, or a fault falling due."""
        loop = asyncio.get_running_loop()
        if not self._reports:
            wake_at = min(deadline, loop.time() + self.faults.seconds_left())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(wake_at):
                    await self._wake.wait()
        await self.faults.check()

    def _advance(self, timers: _Timers, now: float) -> float:
        """Do whatever has fallen due by ``now``; return the loop time of the next event."""
        while True:
            if timers.delivering is None and self._queue:
                _, content = self._queue.popitem(last=False)
                timers.delivering = (content, now + self._radio_time())
            if timers.delivering is None or now < timers.delivering[1]:
                break
            self._deliver(timers.delivering[0], now)
            timers.delivering = None  # and start the next delivery at once
        while self._confirmations and now >= self._confirmations[0].due:
            self._confirm(self._confirmations.popleft())
        order = self._order
        if order and now >= timers.next_reboot:
            self._reboot(order[self._reboot_rng.randrange(len(order))])
            timers.next_reboot = max(timers.next_reboot + self._reboot_gap(), now)
        if order and now >= timers.next_checkin:
            # Check-ins are spread over the interval, one label at a time, like real tags.
            self._check_in(order[timers.checkins % len(order)])
            timers.checkins += 1
            timers.next_checkin += self._checkin_gap()
            timers.next_checkin = max(timers.next_checkin, now)  # no burst after a slow reader
        if self._battery_stale and now >= timers.next_index + _INDEX_BATTERY_S:
            self._index_stale = True  # batteries drained since the last write: time to show it
        if self._index_stale and self._folder is not None and now >= timers.next_index:
            self._write_index()
            timers.next_index = now + max(_INDEX_INTERVAL_S, _INDEX_SHARE * self._index_cost)
        due = [timers.next_reboot, timers.next_checkin if order else float("inf")]
        if timers.delivering is not None:
            due.append(timers.delivering[1])
        if self._confirmations:
            due.append(self._confirmations[0].due)
        if self._index_stale and self._folder is not None:
            due.append(timers.next_index)
        return min(due)

    def _checkin_gap(self) -> float:
        options = self._options
        return options.checkin_interval_s / options.speed / max(1, len(self._order))

    def _radio_time(self) -> float:
        jitter = self._options.radio_jitter
        factor = 1.0 + jitter * self._radio_rng.uniform(-1.0, 1.0) if jitter else 1.0
        return self._options.seconds_per_label * factor / self._options.speed

    def _reboot_gap(self) -> float:
        """Real seconds to the next reboot of any label (reboots form a Poisson process)."""
        per_second = (
            self._options.reboot_rate_per_hour * len(self._labels) * self._options.speed / 3600
        )
        return self._reboot_rng.expovariate(per_second) if per_second > 0 else float("inf")

    def _deliver(self, content: LabelContent, now: float) -> None:
        label = self._labels[content.label_id]
        # Both draws on every delivery: one rate never shifts the other's outcomes.
        failed = self._delivery_rng.random() < self._options.failure_rate
        lost = self._delivery_rng.random() < self._options.lost_confirmation_rate
        if failed:
            self.failed_deliveries += 1
            self._report(
                label,
                LabelReportKind.FAILED,
                content_hash=content.content_hash,
                evidence=FAILED_EVIDENCE,
            )
            return
        before = label.shown
        png = content.image_png if self._folder is not None else None
        self._show(label, _Shown(content.content_hash, png))
        if before is None or before.content_hash != content.content_hash:
            label.previous = before  # the same content again keeps the older fallback
        latency = self._options.confirmation_latency_s / self._options.speed
        if lost:
            self.lost_confirmations += 1
        elif latency > 0:
            self._confirmations.append(
                _Confirmation(now + latency, label.label_id, content.content_hash)
            )
        else:
            self._confirm(_Confirmation(now, label.label_id, content.content_hash))

    def _confirm(self, confirmation: _Confirmation) -> None:
        self._append_report(
            self._labels[confirmation.label_id],
            LabelReportKind.CONFIRMED,
            content_hash=confirmation.content_hash,
            evidence=CONFIRMED_EVIDENCE,
        )

    def _reboot(self, label: _Label) -> None:
        self._show(label, label.previous)
        self.reboots += 1
        self._report(label, LabelReportKind.SEEN, evidence=REBOOTED_EVIDENCE)

    def _show(self, label: _Label, shown: _Shown | None) -> None:
        """The label now shows ``shown``: drawn into the folder (and its journal) first, so a
        failed write leaves the label's state as it was."""
        now = self._context.clock.utc_now()
        if self._folder is not None:
            self._prepare_folder()
            self._folder.show(label.label_id, None if shown is None else shown.png)
            self._folder.journal(
                ShelfEntry(
                    label.label_id,
                    label.model,
                    None if shown is None else shown.content_hash,
                    now,
                    label.battery_mv,
                )
            )
            self._index_stale = True
        label.shown = shown
        label.shown_at = now

    def _log_push(self, path: Path, content: LabelContent) -> None:
        """One ``write`` per line on an ``O_APPEND`` file: whole lines survive a SIGKILL."""
        line = f"{content.label_id} {content.content_hash}\n".encode()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            raise DriverUnavailableError(
                f"push_log {path}: cannot append: {exc.strerror or type(exc).__name__}",
                driver=self._context.name,
            ) from exc

    def _restore(self) -> None:
        """Labels as an earlier gateway process left them in the folder (once per process).

        Entries for labels not configured here, or for another panel, are ignored; an entry
        whose image is gone leaves its label blank; a missing or corrupt index leaves every
        label blank (with a warning). Never raises for what it reads."""
        if self._memory.restored:
            return
        assert self._folder is not None
        records = self._folder.load()
        restored = 0
        for label_id, record in records.items():
            label = self._labels.get(label_id)
            if label is None or label.shown is not None or _record_model(record) != label.model:
                continue
            content_hash = record.get("content_hash")
            if not isinstance(content_hash, str) or not content_hash:
                continue
            try:
                png = self._folder.image_path(label_id).read_bytes()
            except OSError:
                _LOGGER.warning(
                    "%s: label %s showed %s but its image is gone: it starts blank",
                    self._context.name,
                    label_id,
                    content_hash[:12],
                )
                continue
            label.shown = _Shown(content_hash, png)
            label.shown_at = _instant(record.get("shown_at"))
            battery = record.get("battery_mv")
            if isinstance(battery, int) and 2200 <= battery <= 3100:
                label.battery_mv = battery
            restored += 1
        if restored:
            _LOGGER.info(
                "%s: %d label(s) still show what they showed before the restart",
                self._context.name,
                restored,
            )
        self._memory.restored = True

    def _check_in(self, label: _Label) -> None:
        rng = self._checkin_rng
        battery = max(2200, label.battery_mv - rng.randrange(0, 2))
        if battery != label.battery_mv and not self._index_stale:
            self._battery_stale = True
        label.battery_mv = battery
        self._report(
            label,
            LabelReportKind.SEEN,
            evidence=CHECKIN_EVIDENCE,
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
        """Queue news about ``label``, after any confirmation of it still on its way."""
        if any(c.label_id == label.label_id for c in self._confirmations):
            waiting = self._confirmations
            self._confirmations = deque(c for c in waiting if c.label_id != label.label_id)
            for confirmation in waiting:
                if confirmation.label_id == label.label_id:
                    self._confirm(confirmation)
        self._append_report(label, kind, evidence=evidence, content_hash=content_hash, rssi=rssi)

    def _append_report(
        self,
        label: _Label,
        kind: LabelReportKind,
        *,
        evidence: str,
        content_hash: str | None = None,
        rssi: int | None = None,
    ) -> None:
        clock = self._context.clock
        if content_hash is None and label.shown is not None:
            content_hash = label.shown.content_hash  # SEEN: what the label really shows
        self._reports.append(
            LabelReport(
                label_id=label.label_id,
                kind=kind,
                monotonic=clock.monotonic(),
                observed_at=clock.utc_now(),
                content_hash=content_hash,
                evidence=evidence,
                model=label.model,
                battery_mv=label.battery_mv,
                rssi=label.rssi if rssi is None else rssi,
            )
        )
        self._wake.set()

    def _prepare_folder(self) -> None:
        """Create the image folder and draw the labels' current state into it (once)."""
        if self._folder is None or self._folder_ready:
            return
        self._restore()
        labels = self._labels.values()
        self._folder.prepare(
            (label.label_id, None if label.shown is None else label.shown.png) for label in labels
        )
        self._folder_ready = True
        self._write_index()

    def _write_index(self) -> None:
        assert self._folder is not None
        started = time.perf_counter()
        self._folder.write_index(
            (
                ShelfEntry(
                    label.label_id,
                    label.model,
                    None if label.shown is None else label.shown.content_hash,
                    label.shown_at,
                    label.battery_mv,
                )
                for label in self._labels.values()
            ),
            updated_at=self._context.clock.utc_now(),
        )
        self._index_cost = time.perf_counter() - started
        self._index_stale = self._battery_stale = False

    def _label(self, label_id: str) -> _Label:
        try:
            return self._labels[label_id]
        except KeyError:
            raise DriverConfigError(
                f"unknown label {label_id}", driver=self._context.name
            ) from None


def _record_model(record: dict[str, Any]) -> LabelModel | None:
    """The panel a ``shelf.json`` record names (None: not a valid one)."""
    model = record.get("model")
    if not isinstance(model, dict):
        return None
    width, height = model.get("width"), model.get("height")
    palette, has_led = model.get("palette"), model.get("has_led")
    if not (
        isinstance(width, int)
        and isinstance(height, int)
        and isinstance(palette, str)
        and isinstance(has_led, bool)
    ):
        return None
    try:
        return LabelModel(width, height, LabelPalette(palette), has_led)
    except ValueError:
        return None


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return None
    return instant if instant.tzinfo is not None else None
