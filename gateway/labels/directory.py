"""Which ESL driver reaches which label (from the labels' own reports), and the LED flash a
technician or HQ uses to find a label on the shelf."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.clock import Clock, isoformat_utc
from gateway.drivers.contracts import LabelDriver, LabelReport, Reading
from gateway.errors import CommandRefusedError, DriverError
from gateway.hub import ReadingHub

__all__ = ["LabelDirectory"]


@dataclass(slots=True)
class _Seen:
    device: str
    at: str
    has_led: bool | None


class LabelDirectory:
    def __init__(self, hub: ReadingHub, clock: Clock) -> None:
        self._clock = clock
        self._seen: dict[str, _Seen] = {}
        self._unsubscribe: Callable[[], None] = hub.subscribe(self._on_reading)

    def _on_reading(self, device: str, reading: Reading) -> None:
        if isinstance(reading, LabelReport):
            model = reading.model
            has_led = model.has_led if model is not None else None
            previous = self._seen.get(reading.label_id)
            if has_led is None and previous is not None:
                has_led = previous.has_led
            self._seen[reading.label_id] = _Seen(
                device, isoformat_utc(self._clock.utc_now()), has_led
            )

    def where(self, label: str) -> str | None:
        seen = self._seen.get(label)
        return seen.device if seen is not None else None

    async def flash(
        self, driver_of: Callable[[str], object | None], label: str, seconds: float
    ) -> dict[str, object]:
        """Flash ``label``'s LED through the driver that last heard from it (``driver_of``:
        a device's live driver, None while it is not running)."""
        if not 0 < seconds <= 300:
            raise CommandRefusedError("seconds must be within (0, 300]")
        seen = self._seen.get(label)
        if seen is None:
            raise CommandRefusedError(f"label {label} has not been heard by any ESL driver")
        if seen.has_led is False:
            raise CommandRefusedError(f"label {label} has no LED")
        driver = driver_of(seen.device)
        if not isinstance(driver, LabelDriver):
            raise CommandRefusedError(f"ESL driver {seen.device} is not running")
        try:
            await driver.flash(label, seconds=seconds)
        except DriverError as exc:
            raise CommandRefusedError(f"flash failed on {seen.device}: {exc}") from exc
        return {"label": label, "device": seen.device, "seconds": seconds, "last_heard": seen.at}

    def close(self) -> None:
        self._unsubscribe()
