"""How often the tags of one OpenEPaperLink access point check in, and the flip window that
shortens it (the ``esl.oepl`` driver's side of :class:`~gateway.drivers.contracts.PreparesFlips`).

An idle tag sleeps up to the AP's ``maxsleep`` minutes (``/get_ap_config``; the firmware's
default 10) and gets new content only when it wakes, so ahead of a scheduled flip the driver
lowers ``maxsleep`` (``/save_apcfg`` with only that field) to ``flip_maxsleep_min`` and puts the
AP's own value back after the window. The AP's own value is kept in the instance's memory
*before* the AP is changed (neither a lost answer nor a driver restarted within the window can
make the lowered value the one put back) and returned as the restore token
``{"maxsleep_min": n}``, which the core keeps in its database: a process restarted within the
window gets it back with ``restore_checkins(token)``. The driver never guesses: an AP found at
``flip_maxsleep_min`` is left alone until the core says what to put back.
"""

from __future__ import annotations

import logging
from datetime import datetime

from devices.esl.oepl_http import ApClient
from devices.esl.oepl_state import ApMemory, OeplOptions
from devices.esl.protocol import DEFAULT_MAXSLEEP_MIN
from gateway.drivers.contracts import FlipRestoreToken
from gateway.errors import DriverUnavailableError

__all__ = ["CheckinWindow", "maxsleep_of_token"]

_LOGGER = logging.getLogger(__name__)
_OWN_MAXSLEEP = "maxsleep_min"


def maxsleep_of_token(token: FlipRestoreToken) -> int | None:
    """The AP's own ``maxsleep`` a restore token names (1-254 minutes); None: unreadable."""
    value = token.get(_OWN_MAXSLEEP)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 255:
        return None
    return value


class CheckinWindow:
    def __init__(self, ap: ApClient, memory: ApMemory, options: OeplOptions, name: str) -> None:
        self._ap = ap
        self._memory = memory
        self._lowered = options.flip_maxsleep_min
        self._name = name

    @property
    def interval_s(self) -> float:
        """The longest an idle tag sleeps now."""
        return (self._memory.maxsleep_min or DEFAULT_MAXSLEEP_MIN) * 60.0

    async def check(self) -> None:
        """At open: the AP's ``maxsleep``. An AP that cannot say is no reason not to run."""
        try:
            self._memory.maxsleep_min = await self._ap.maxsleep()
        except DriverUnavailableError as exc:
            _LOGGER.info("%s: maxsleep unknown (%s)", self._name, exc)

    async def prepare(self, window_start: datetime, window_end: datetime) -> FlipRestoreToken:
        memory = self._memory
        if memory.saved_maxsleep_min is None:
            current = await self._ap.maxsleep()
            memory.maxsleep_min = current
            if current <= self._lowered:
                # Already as short: nothing to change. Its own value, unless a window of an
                # earlier process lowered it: then the core holds that window's token.
                return {_OWN_MAXSLEEP: current}
            memory.saved_maxsleep_min = current  # before the change: never lose it
            await self._ap.save_maxsleep(self._lowered)
            memory.maxsleep_min = self._lowered
            _LOGGER.info(
                "%s: maxsleep %d -> %d min for the flip window %s - %s",
                self._name,
                current,
                self._lowered,
                window_start.isoformat(),
                window_end.isoformat(),
            )
        elif memory.maxsleep_min != self._lowered:  # an earlier attempt did not land
            await self._ap.save_maxsleep(self._lowered)
            memory.maxsleep_min = self._lowered
        return {_OWN_MAXSLEEP: memory.saved_maxsleep_min}

    async def restore(self, token: FlipRestoreToken | None) -> str | None:
        """Put back the token's ``maxsleep`` (no token: the one kept in memory, if any); an
        unreadable token puts back the firmware's default and says so."""
        memory = self._memory
        instead = None
        if token is None:
            value = memory.saved_maxsleep_min
            if value is None:
                return None  # nothing prepared
        elif (own := maxsleep_of_token(token)) is not None:
            value = own
        else:
            value = DEFAULT_MAXSLEEP_MIN
            instead = (
                f"maxsleep set to the firmware's default {value} min: the AP's own value "
                f"could not be read from the restore token {token!r}"
            )
        await self._ap.save_maxsleep(value)
        memory.maxsleep_min = value
        memory.saved_maxsleep_min = None
        if instead is None:
            _LOGGER.info("%s: maxsleep back to %d min", self._name, value)
        else:
            _LOGGER.warning("%s: %s", self._name, instead)
        return instead
