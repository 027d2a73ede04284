"""The shelves service: slot counters fed from the reading hub, their news sent on.

Wiring around the sans-IO :class:`~gateway.shelves.slot_counter.SlotCounter`: every weight sample
of a configured ``(device, channel)`` goes to its slot's counter (synchronously, from the hub);
the task ``shelves`` ticks the counters once a second and carries what they report:

- ``stock.changed`` / ``stock.ambiguous`` → the ``stock`` outbox stream;
- low / out of stock → alerts ``stock.low:{slot}`` / ``stock.out:{slot}`` (one or the other);
- sensor faults → alert ``sensor.fault:{slot}`` with the active faults in its details;
- every ``activity_interval_s`` → one ``stock.activity`` event with each busy slot's picks and
  put-backs.

It also serves the technician: the live view (``storegw slots``, ``scale read``), the software
tare and calibration (stored in SQLite, see :mod:`gateway.shelves.slots`), the device's own
tare only when asked for explicitly, and HQ's ``slots`` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from gateway import wire
from gateway.alerts import Alerts, Severity
from gateway.clock import Clock, isoformat_utc
from gateway.drivers.contracts import Reading, ScaleDriver, WeightSample
from gateway.errors import GatewayError, ShelfError, StorageError
from gateway.shelves.config import ShelvesConfig, SlotConfig
from gateway.shelves.slot_counter import (
    CounterOutput,
    FaultChange,
    SlotCounter,
    StockAmbiguous,
    StockChange,
    StockState,
    StockStateChange,
)
from gateway.shelves.slots import Calibration, SlotBook, SlotRecord
from gateway.store.database import Database
from gateway.store.outbox import Outbox
from gateway.sync.commands import CommandRequest, CommandResult, CommandSpec

__all__ = ["ShelfService", "stock_ambiguous", "stock_changed"]

_LOGGER = logging.getLogger(__name__)

_TICK_S = 1.0
_FOLLOW_QUEUE = 64


def stock_changed(change: StockChange) -> wire.StockChanged:
    """A counted change as its ``stock.changed`` event: built trusted (its values come typed
    from the counter, slot and SKU from the checked config; tests/shelves/test_wire_events.py
    checks every event the counter can make against the schema)."""
    return wire.StockChanged.trusted(
        {
            "slot": change.slot,
            "sku": change.sku,
            "kind": change.kind.value,
            "before": change.before,
            "after": change.after,
            "delta": change.delta,
            "confidence": change.confidence,
            "grams": change.grams,
        }
    )


def stock_ambiguous(change: StockAmbiguous) -> wire.StockAmbiguous:
    """An uncounted change as its ``stock.ambiguous`` event (trusted, as :func:`stock_changed`)."""
    return wire.StockAmbiguous.trusted(
        {
            "slot": change.slot,
            "sku": change.sku,
            "grams": change.grams,
            "ratio": change.ratio,
            "candidates": list(change.candidates),
            "count_before": change.count_before,
        }
    )


@dataclass(slots=True)
class _Slot:
    record: SlotRecord
    calibration: Calibration
    counter: SlotCounter

    @property
    def config(self) -> SlotConfig:
        return self.record.config


class ShelfService:
    """Counts stock on every configured slot (see the module docstring)."""

    def __init__(
        self,
        *,
        database: Database,
        outbox: Outbox,
        alerts: Alerts,
        clock: Clock,
        config: ShelvesConfig,
        scale_devices: Collection[str],
        device_up: Callable[[str], bool] = lambda _name: True,
        driver: Callable[[str], object | None] = lambda _name: None,
    ) -> None:
        self._outbox = outbox
        self._alerts = alerts
        self._clock = clock
        self._config = config
        self._settings = config.counter_settings()
        self._devices = frozenset(scale_devices)
        self._device_up = device_up
        self._driver = driver
        self.book = SlotBook(database, clock)
        self._slots: dict[str, _Slot] = {}
        self._by_channel: dict[tuple[str, str], _Slot] = {}
        self._pending: list[CounterOutput] = []
        self._appends: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._reload = False
        self._followers: dict[str, list[asyncio.Queue[dict[str, Any]]]] = {}
        self._activity_from = clock.utc_now()
        self._activity_due = clock.monotonic() + config.activity_interval_s
        self.events = 0

    # --- set-up -------------------------------------------------------------------------

    async def load(self) -> None:
        """Bring the file's slots into SQLite and build a counter per effective slot."""
        records = await self.book.apply_config(self._config.slots)
        await self._build(records)

    async def _build(self, records: Mapping[str, SlotRecord]) -> None:
        calibrations = await self.book.calibrations()
        now = self._clock.monotonic()
        slots: dict[str, _Slot] = {}
        for name, record in records.items():
            if record.config.device not in self._devices:
                _LOGGER.warning(
                    "slot %s: device %s is not a configured scale; not counted",
                    name,
                    record.config.device,
                )
                continue
            calibration = calibrations.get(name, Calibration())
            spec = calibration.spec(record.config)
            existing = self._slots.get(name)
            if existing is not None and (existing.config.device, existing.config.channel) == (
                record.config.device,
                record.config.channel,
            ):
                existing.counter.reconfigure(spec)
                existing.record, existing.calibration = record, calibration
                slots[name] = existing
            else:
                slots[name] = _Slot(record, calibration, SlotCounter(spec, self._settings, now))
        self._slots = slots
        self._by_channel = {(s.config.device, s.config.channel): s for s in slots.values()}
        _LOGGER.info("shelves: counting %d slot(s)", len(slots))

    # --- readings -----------------------------------------------------------------------

    def on_reading(self, device: str, reading: Reading) -> None:
        """Hub listener: feed a weight sample to its slot's counter."""
        if not isinstance(reading, WeightSample):
            return
        slot = self._by_channel.get((device, reading.channel))
        if slot is None:
            return
        outputs = slot.counter.feed(reading)
        if outputs:
            self._pending.extend(outputs)
            self._wake.set()
        followers = self._followers.get(slot.config.slot)
        if followers:
            view = slot.counter.snapshot().as_dict()
            for queue in followers:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(view)

    # --- the task -----------------------------------------------------------------------

    async def run(self) -> None:
        """Task ``shelves``: tick the counters, send what they report."""
        next_tick = self._clock.monotonic() + _TICK_S
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_tick - self._clock.monotonic())):
                    await self._wake.wait()
            self._wake.clear()
            now = self._clock.monotonic()
            if now >= next_tick:
                next_tick = now + _TICK_S
                await self.tick(now)
            await self.flush()

    async def tick(self, now: float) -> None:
        if self._reload:
            self._reload = False
            await self._build(await self.book.records())
        health: dict[str, bool] = {}
        for slot in self._slots.values():
            device = slot.config.device
            if device not in health:
                health[device] = self._device_up(device)
            self._pending.extend(slot.counter.tick(now, device_up=health[device]))
        if now >= self._activity_due:
            self._activity_due = now + self._config.activity_interval_s
            self._send_activity()

    async def flush(self) -> None:
        """Carry the counters' outputs to the outbox and the alerts, in order."""
        pending, self._pending = self._pending, []
        for output in pending:
            try:
                await self._carry(output)
            except StorageError as exc:  # full disk, outbox budget: the count itself stands
                _LOGGER.error("shelves: %s not recorded: %s", type(output).__name__, exc)
        appends, self._appends = self._appends, []
        for outcome in await asyncio.gather(*appends, return_exceptions=True):
            if isinstance(outcome, StorageError):
                _LOGGER.error("shelves: stock event not recorded: %s", outcome)
            elif isinstance(outcome, BaseException):
                raise outcome

    def _append(self, event: wire.EventBody) -> None:
        self._appends.append(self._outbox.append("stock", event))

    async def _carry(self, output: CounterOutput) -> None:
        match output:
            case StockChange():
                self.events += 1
                _LOGGER.info(
                    "slot %s: %s %s -> %s (%+d)",
                    output.slot,
                    output.kind.value,
                    output.before,
                    output.after,
                    output.delta or 0,
                )
                self._append(stock_changed(output))
            case StockAmbiguous():
                self.events += 1
                _LOGGER.warning(
                    "slot %s: ambiguous change of %.1f g (%.2f items): count unknown",
                    output.slot,
                    output.grams,
                    output.ratio,
                )
                self._append(stock_ambiguous(output))
            case StockStateChange():
                await self._stock_alerts(output)
            case FaultChange():
                await self._fault_alert(output)

    async def _stock_alerts(self, change: StockStateChange) -> None:
        low, out = f"stock.low:{change.slot}", f"stock.out:{change.slot}"
        details = {"sku": change.sku, "count": change.count, "min_count": change.min_count}
        if change.state is StockState.OUT:
            await self._alerts.clear(low, "out of stock")
            await self._alerts.raise_(
                out, Severity.CRITICAL, f"slot {change.slot} ({change.sku}) is empty", details
            )
        elif change.state is StockState.LOW:
            await self._alerts.clear(out, f"restocked to {change.count}")
            await self._alerts.raise_(
                low,
                Severity.WARNING,
                f"slot {change.slot} ({change.sku}) low: {change.count} left "
                f"(min {change.min_count})",
                details,
            )
        elif change.state is StockState.OK:
            await self._alerts.clear(out, f"restocked to {change.count}")
            await self._alerts.clear(low, f"restocked to {change.count}")

    async def _fault_alert(self, change: FaultChange) -> None:
        key = f"sensor.fault:{change.slot}"
        if not change.faults:
            await self._alerts.clear(key, "readings are plausible again")
            return
        names = [fault.value for fault in change.faults]
        slot = self._slots.get(change.slot)
        details: dict[str, Any] = {"faults": names}
        if slot is not None:
            details |= {"device": slot.config.device, "channel": slot.config.channel}
        message = f"slot {change.slot}: {', '.join(names)}; its count is not updated"
        if not await self._alerts.raise_(key, Severity.WARNING, message, details):
            await self._alerts.update_details(key, details)

    def _send_activity(self) -> None:
        end = self._clock.utc_now()
        start, self._activity_from = self._activity_from, end
        busy = []
        for slot in self._slots.values():
            activity = slot.counter.take_activity()
            if activity.any():
                busy.append(
                    wire.SlotActivity(
                        slot=slot.config.slot,
                        sku=slot.config.sku,
                        picks=activity.picks,
                        picked_items=activity.picked_items,
                        puts=activity.puts,
                        put_items=activity.put_items,
                        ambiguous=activity.ambiguous,
                    )
                )
        if busy:
            self._append(
                wire.StockActivity(start=isoformat_utc(start), end=isoformat_utc(end), slots=busy)
            )

    # --- the technician -----------------------------------------------------------------

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None:
            known = ", ".join(sorted(self._slots)) or "none"
            raise ShelfError(f"no slot {name!r} (slots: {known})")
        return slot

    def listing(self) -> list[dict[str, Any]]:
        """``storegw slots``: every slot's live count, state and health."""
        rows = []
        for name in sorted(self._slots):
            slot = self._slots[name]
            view = slot.counter.snapshot().as_dict()
            view |= {
                "device": slot.config.device,
                "channel": slot.config.channel,
                "unit_grams": slot.config.unit_grams,
                "min_count": slot.config.min_count,
                "max_count": slot.config.max_count,
                "source": slot.record.source,
                "tare_grams": slot.counter.spec.tare_grams,
                "gain": slot.counter.spec.gain,
            }
            rows.append(view)
        return rows

    def reading(self, name: str) -> dict[str, Any]:
        return self._slot(name).counter.snapshot().as_dict()

    async def follow(self, name: str) -> AsyncIterator[dict[str, Any]]:
        """Every sample's view of slot ``name`` until the reader stops."""
        self._slot(name)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_FOLLOW_QUEUE)
        self._followers.setdefault(name, []).append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._followers[name].remove(queue)

    def _still(self, slot: _Slot) -> float:
        reading = slot.counter.stable_reading
        if reading is None:
            raise ShelfError(
                f"slot {slot.config.slot} is moving (or has no reading): keep hands off and "
                "try again in a few seconds"
            )
        return reading

    async def tare(self, name: str, *, device: bool = False, force: bool = False) -> dict[str, Any]:
        """Software tare: the present reading becomes the slot's empty-tray reading. With
        ``device`` the scale's own tare instead (EEPROM on many devices), and the software
        tare goes to 0. A tare is for the empty tray: refused while the slot holds items (or
        may), unless ``force`` (the tray is empty and the count is what is wrong)."""
        slot = self._slot(name)
        if not force:
            _refuse_tare_unless_empty(slot)
        if device:
            driver = self._driver(slot.config.device)
            if not isinstance(driver, ScaleDriver):
                raise ShelfError(f"device {slot.config.device} is not running as a scale")
            try:
                await driver.tare(slot.config.channel)
            except GatewayError as exc:
                raise ShelfError(f"device {slot.config.device} did not tare: {exc}") from exc
            tare = 0.0
        else:
            tare = round(self._still(slot), 1)
        calibration = Calibration(tare, slot.calibration.gain)
        await self._calibrate(slot, calibration)
        _LOGGER.info("slot %s tared at %.1f (device: %s, forced: %s)", name, tare, device, force)
        return {"slot": name, "tare_grams": tare, "device": device}

    async def calibrate(self, name: str, known_grams: float) -> dict[str, Any]:
        """Span calibration with a known weight on the tared slot."""
        if not known_grams > 0:
            raise ShelfError("--known-grams must be > 0")
        slot = self._slot(name)
        tare = slot.counter.spec.tare_grams
        span = self._still(slot) - tare
        if span <= 0:
            raise ShelfError(f"the reading is not above the tare ({tare:.1f}): weight on it?")
        gain = known_grams / span
        if not 0.5 <= gain <= 2.0:
            raise ShelfError(
                f"gain {gain:.3f} is implausible (reading {span:.1f} for {known_grams:g} g): "
                "check the tare and the weight"
            )
        await self._calibrate(slot, Calibration(tare, round(gain, 6)))
        _LOGGER.info("slot %s calibrated: gain %.6f", name, gain)
        return {"slot": name, "gain": round(gain, 6), "tare_grams": tare}

    async def _calibrate(self, slot: _Slot, calibration: Calibration) -> None:
        await self.book.save_calibration(slot.config.slot, calibration)
        slot.calibration = calibration
        slot.counter.reconfigure(calibration.spec(slot.config))

    # --- HQ -----------------------------------------------------------------------------

    def command(self) -> CommandSpec:
        """``slots`` {slots: [...], remove: [...]}: HQ sets slots; signed when keys exist."""

        async def slots(request: CommandRequest) -> CommandResult:
            statements, result = await self.book.hq_update(request.args, self._devices)
            self._reload = True  # applied once committed with the command's record
            self._wake.set()
            return CommandResult(result, statements)

        return CommandSpec("slots", slots, changes_state=True, help="set or remove shelf slots")


def _refuse_tare_unless_empty(slot: _Slot) -> None:
    """A tare makes the present load the empty tray: on a slot holding items it would turn
    them into tray and the count into 0. Refuse it while the count says items are there, or
    while the weight on the tray now (the count follows a put-back only after rise_hold_s) or,
    with the count unknown, its last level is more than a touch above the tare."""
    name = slot.config.slot
    view = slot.counter.snapshot()
    spec = slot.counter.spec
    escape = (
        "take them off and tare again, or pass --force if the tray is empty and the count "
        "is what is wrong"
    )
    if view.count is not None and view.count > 0:
        items = "1 item" if view.count == 1 else f"{view.count} items"
        fresh = "" if not view.stale else " (last count: the sensor has no current weight)"
        raise ShelfError(
            f"slot {name} holds {items}{fresh}: a tare is for the empty tray; {escape}"
        )
    # What lies on the tray now: the count follows a put-back only after rise_hold_s.
    on_tray = None if view.load_grams is None else view.load_grams - view.zero_grams
    if view.count == 0:
        if on_tray is not None and on_tray >= spec.tolerance * spec.unit_grams:
            raise ShelfError(
                f"slot {name} counts 0 items but {on_tray:.0f} g lie on it now (about "
                f"{on_tray / spec.unit_grams:.1f} items of {spec.unit_grams:g} g, not counted "
                f"yet): a tare is for the empty tray; {escape}"
            )
        return
    grams = view.items_grams
    if on_tray is not None:
        grams = on_tray if grams is None else max(grams, on_tray)
    if grams is None:
        raise ShelfError(
            f"slot {name} has no count and no weight level yet, so it cannot be told empty: "
            "wait for a stable reading, or pass --force if the tray is empty"
        )
    if grams >= spec.tolerance * spec.unit_grams:
        raise ShelfError(
            f"slot {name}: count unknown, {grams:.0f} g above its tare (about "
            f"{grams / spec.unit_grams:.1f} items of {spec.unit_grams:g} g): a tare is for "
            f"the empty tray; {escape}"
        )
