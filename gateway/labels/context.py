"""What every stage of the label pipeline is given: the job store, what labels show, the
clock and the *policy instant*, the configuration, the ESL drivers, the alerts, the wake-ups
by which one stage starts the next, and the retry jitter's randomness.

Wall-time decisions use the policy instant (:class:`PolicyClock`): the clock's time while it
is synchronised, else the last synchronised instant — so while unsynced, what is in force stays
in force and no scheduled flip happens.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from gateway.alerts import Alerts
from gateway.clock import Clock
from gateway.drivers.contracts import LabelDriver
from gateway.labels.config import LabelsConfig
from gateway.labels.job_store import LabelJobStore
from gateway.labels.shown import ShownLabels

__all__ = ["DriverMap", "PolicyClock", "StageContext", "Wakeups", "sole_device"]

#: Every configured ESL device → its running driver (None while it is not running).
DriverMap = Callable[[], Mapping[str, LabelDriver | None]]


def sole_device(drivers: Mapping[str, LabelDriver | None]) -> str | None:
    """The device that reaches labels no driver has reported: the only ESL device, if only
    one is configured."""
    return next(iter(drivers)) if len(drivers) == 1 else None


@dataclass(frozen=True, slots=True)
class Wakeups:
    """One event per stage, set by the stage that feeds it (and by the hooks)."""

    plan: asyncio.Event = field(default_factory=asyncio.Event)
    render: asyncio.Event = field(default_factory=asyncio.Event)
    dispatch: asyncio.Event = field(default_factory=asyncio.Event)
    reports: asyncio.Event = field(default_factory=asyncio.Event)
    schedule: asyncio.Event = field(default_factory=asyncio.Event)
    receipts: asyncio.Event = field(default_factory=asyncio.Event)


class PolicyClock:
    """The instant wall-time rules use; the last synchronised one is persisted by the
    scheduler and restored at start."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.last: datetime | None = None  # the last synchronised instant seen

    def instant(self) -> tuple[datetime, bool]:
        """(the instant wall-time rules use, whether the clock is synchronised)."""
        if self._clock.is_synchronized():
            self.last = self._clock.utc_now()
            return self.last, True
        if self.last is None:  # never synced: the best there is, but nothing scheduled
            return self._clock.utc_now(), False
        return self.last, False


@dataclass(frozen=True, slots=True)
class StageContext:
    """The collaborators every stage shares (one per pipeline)."""

    store: LabelJobStore
    shown: ShownLabels
    clock: Clock
    policy: PolicyClock
    config: LabelsConfig
    drivers: DriverMap
    alerts: Alerts | None
    wake: Wakeups
    rng: random.Random
