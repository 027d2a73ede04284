"""How often the tags of one OpenEPaperLink access point check in, and the flip window that
shortens it (the ``esl.oepl`` driver's side of :class:`~gateway.drivers.contracts.PreparesFlips`).

An idle tag sleeps up to the AP's ``maxsleep`` minutes (``/get_ap_config``; the firmware's
default 10) and gets new content only when it wakes, so ahead of a scheduled flip the driver
lowers ``maxsleep`` (``/save_apcfg`` with only that field) to ``flip_maxsleep_min`` and puts the
AP's own value back after the window. The value to put back is kept in the instance's memory
*before* the AP is changed, so neither a lost answer nor a driver restarted within the window
can make the lowered value the one put back. A process restarted within a window has no memory:
an AP found at exactly ``flip_maxsleep_min`` with nothing remembered is taken for such a window
and gets the firmware's default back.
"""

from __future__ import annotations

import logging
from datetime import datetime

from devices.esl.oepl_http import ApClient
from devices.esl.oepl_state import ApMemory, OeplOptions
from devices.esl.protocol import DEFAULT_MAXSLEEP_MIN
from gateway.clock import Clock
from gateway.errors import DriverUnavailableError

__all__ = ["CheckinWindow"]

_LOGGER = logging.getLogger(__name__)


class CheckinWindow:
    def __init__(
        self, ap: ApClient, memory: ApMemory, options: OeplOptions, clock: Clock, name: str
    ) -> None:
        self._ap = ap
        self._memory = memory
        self._lowered = options.flip_maxsleep_min
        self._clock = clock
        self._name = name

    @property
    def interval_s(self) -> float:
        """The longest an idle tag sleeps now."""
        return (self._memory.maxsleep_min or DEFAULT_MAXSLEEP_MIN) * 60.0

    async def check(self) -> None:
        """At open: the AP's ``maxsleep``; a window that ended meanwhile (or one a previous
        process left) is closed. An AP that cannot say is no reason not to run."""
        memory = self._memory
        try:
            memory.maxsleep_min = await self._ap.maxsleep()
        except DriverUnavailableError as exc:
            _LOGGER.info("%s: maxsleep unknown (%s)", self._name, exc)
            return
        if memory.saved_maxsleep_min is None and memory.maxsleep_min == self._lowered:
            _LOGGER.warning(
                "%s: maxsleep is %d min, the flip value, with no window remembered: "
                "putting back the firmware's default %d min",
                self._name,
                self._lowered,
                DEFAULT_MAXSLEEP_MIN,
            )
            memory.saved_maxsleep_min = DEFAULT_MAXSLEEP_MIN
            memory.flip_until = self._clock.utc_now()
        if memory.flip_until is not None and self._clock.utc_now() >= memory.flip_until:
            try:
                await self.restore()
            except DriverUnavailableError as exc:
                _LOGGER.warning("%s: maxsleep not put back yet: %s", self._name, exc)

    async def prepare(self, window_start: datetime, window_end: datetime) -> None:
        memory = self._memory
        if memory.saved_maxsleep_min is None:
            current = await self._ap.maxsleep()
            memory.maxsleep_min = current
            if current > self._lowered:
                memory.saved_maxsleep_min = current  # before the change: never lose it
                await self._ap.save_maxsleep(self._lowered)
                memory.maxsleep_min = self._lowered
                _LOGGER.info(
                    "%s: maxsleep %d -> %d min for the flip at %s",
                    self._name,
                    current,
                    self._lowered,
                    window_start.isoformat(),
                )
        elif memory.maxsleep_min != self._lowered:  # an earlier attempt did not land
            await self._ap.save_maxsleep(self._lowered)
            memory.maxsleep_min = self._lowered
        if memory.flip_until is None or window_end > memory.flip_until:
            memory.flip_until = window_end

    async def restore(self) -> None:
        memory = self._memory
        saved = memory.saved_maxsleep_min
        if saved is not None:
            await self._ap.save_maxsleep(saved)
            memory.maxsleep_min = saved
            _LOGGER.info("%s: maxsleep back to %d min", self._name, saved)
        memory.saved_maxsleep_min = None
        memory.flip_until = None
