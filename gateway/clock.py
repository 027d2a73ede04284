"""Time for the whole gateway, injected everywhere so core logic never reads a global clock.

``monotonic()`` measures durations; ``utc_now()`` stamps events (timezone-aware UTC, serialised
with an offset on the wire). Boxes without a real-time clock boot in 1970 or at the last
shutdown time, so the gateway also tracks whether the system clock is *synchronised*: until it
is, events carry ``unsynced: true`` and nothing is scheduled by wall time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Protocol

__all__ = [
    "EARLIEST_PLAUSIBLE_TIME",
    "Clock",
    "ClockSyncSource",
    "FakeClock",
    "SyncProbe",
    "SystemClock",
    "event_stamp",
    "isoformat_utc",
    "probe_kernel_sync",
]

_LOGGER = logging.getLogger(__name__)

#: Any wall time before this is certainly wrong (this release cannot run before it was built).
EARLIEST_PLAUSIBLE_TIME = datetime(2026, 1, 1, tzinfo=UTC)

_TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
_TIME_ERROR = 5  # adjtimex(2): clock not synchronised (STA_UNSYNC set)


class Clock(Protocol):
    """What core logic may know about time."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never jumps. Use for durations and timeouts."""
        ...

    def utc_now(self) -> datetime:
        """The current wall time, timezone-aware UTC."""
        ...

    def is_synchronized(self) -> bool:
        """Whether ``utc_now()`` can be trusted for stamps and wall-time schedules."""
        ...


class ClockSyncSource(StrEnum):
    """How the gateway decides the system clock is synchronised (config ``clock.sync``)."""

    AUTO = "auto"  # systemd-timesyncd flag, else the kernel's NTP status (adjtimex)
    ASSUME = "assume"  # trust the clock (box with a battery-backed RTC and no NTP daemon)


class SyncProbe(Protocol):
    def __call__(self) -> bool: ...


def probe_kernel_sync() -> bool:
    """True when systemd-timesyncd or the kernel's NTP discipline says the clock is synced."""
    if _TIMESYNCD_FLAG.exists():
        return True
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = libc.adjtimex(timex)
    except (OSError, AttributeError):
        return False
    return bool(state >= 0 and state != _TIME_ERROR)


@dataclass(slots=True)
class SystemClock:
    """The real clock. Synchronisation is re-probed at most every ``probe_interval`` seconds."""

    sync: ClockSyncSource = ClockSyncSource.AUTO
    probe: SyncProbe = probe_kernel_sync
    probe_interval: float = 10.0
    _synced: bool = False
    _probed_at: float | None = None

    def monotonic(self) -> float:
        return time.monotonic()

    def utc_now(self) -> datetime:
        return datetime.now(UTC)

    def is_synchronized(self) -> bool:
        if self.utc_now() < EARLIEST_PLAUSIBLE_TIME:
            return False
        if self.sync is ClockSyncSource.ASSUME:
            return True
        now = self.monotonic()
        if self._probed_at is None or now - self._probed_at >= self.probe_interval:
            synced = self.probe()
            if synced != self._synced or self._probed_at is None:
                _LOGGER.info("system clock %s", "synchronised" if synced else "NOT synchronised")
            self._synced = synced
            self._probed_at = now
        return self._synced


@dataclass(slots=True)
class FakeClock:
    """A clock tests drive by hand: ``advance()`` moves both monotonic and wall time."""

    wall: datetime = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    mono: float = 1000.0
    synchronized: bool = True

    def monotonic(self) -> float:
        return self.mono

    def utc_now(self) -> datetime:
        return self.wall

    def is_synchronized(self) -> bool:
        return self.synchronized

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


def isoformat_utc(instant: datetime) -> str:
    """Wire format for instants: UTC with an explicit offset, millisecond precision."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime: the gateway only handles timezone-aware instants")
    return instant.astimezone(UTC).isoformat(timespec="milliseconds")


def event_stamp(clock: Clock) -> dict[str, str | bool]:
    """The time fields every event carries: ``ts``, plus ``unsynced: true`` while the clock is
    not synchronised, so HQ can tell a real time from a box that booted in the past."""
    stamp: dict[str, str | bool] = {"ts": isoformat_utc(clock.utc_now())}
    if not clock.is_synchronized():
        stamp["unsynced"] = True
    return stamp
