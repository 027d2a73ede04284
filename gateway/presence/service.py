"""The presence service: advertisements in, zone visits and aggregates out on the ``dwell``
stream, fixed beacons' health as alerts.

Readings arrive synchronously from the hub (:meth:`PresenceService.on_reading`): a fixed
beacon's go to the fleet, everyone else's are reduced to an identity at once — an enrolled
tag's name or a pseudonym (:mod:`.identity`): the raw address goes no further than this method
— and fed to the zone tracker. Once a second the task ticks the tracker and the visit book,
sends what became news, rolls the aggregates and checks the fleet. Enrolled identity keys are
handed to every running beacon driver, again after a driver restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from gateway.alerts import Alerts, Severity
from gateway.clock import Clock, isoformat_utc
from gateway.drivers.contracts import Advertisement, Reading
from gateway.errors import CommandRefusedError, StorageError
from gateway.presence.beacon_fleet import BeaconFleet, FixedBeacon
from gateway.presence.config import PresenceConfig
from gateway.presence.enrolment import EnrolmentBook, decide_enrolment, merged
from gateway.presence.identity import IdentityRules, Pseudonyms
from gateway.presence.visits import VisitBook, VisitEnded, VisitStarted
from gateway.presence.zone_stats import ZoneStats
from gateway.presence.zone_tracker import ZoneChange, ZoneTracker
from gateway.store.budget import Shed
from gateway.store.outbox import Outbox
from gateway.sync.commands import CommandRequest, CommandResult, CommandSpec
from gateway.wire import EventBody, ZoneAggregate, ZoneEntered, ZoneExited

__all__ = ["PresenceService"]

_LOGGER = logging.getLogger(__name__)
_TICK_S = 1.0


class PresenceService:
    def __init__(
        self,
        *,
        outbox: Outbox,
        alerts: Alerts,
        clock: Clock,
        config: PresenceConfig,
        timezone: str,
        beacon_devices: Iterable[str] = (),
        driver: Callable[[str], object | None] = lambda _name: None,
        enrolment: EnrolmentBook | None = None,
    ) -> None:
        self._outbox, self._alerts, self._clock, self.config = outbox, alerts, clock, config
        fixed = [
            FixedBeacon(b.name, b.beacon, b.battery_low_mv, b.missing_after_s)
            for b in config.fixed_beacons
        ]
        self.fleet = BeaconFleet(fixed, clock.monotonic())
        self.identities = IdentityRules(
            {tag.beacon: tag.name for tag in config.tags},
            frozenset(key.name for key in config.identity_keys),
            frozenset(b.beacon for b in config.fixed_beacons),
            Pseudonyms(timezone, size=config.pseudonym_bytes),
            count_anonymous=config.count_anonymous,
        )
        self._enrolled = {tag.name for tag in config.tags} | {k.name for k in config.identity_keys}
        self._keys = {key.name: bytes.fromhex(key.irk) for key in config.identity_keys}
        self.tracker = ZoneTracker(config.zone_specs(), config.settings())
        self.visits = VisitBook(config.rules())
        self.stats = ZoneStats([zone.name for zone in config.zones], config.aggregate_interval_s)
        self._enrolment = enrolment
        self._reload = False
        self._beacon_devices = tuple(beacon_devices)
        self._driver = driver
        # device -> the driver object given the keys (held, so a new object is never mistaken
        # for it: a restart builds a new driver object)
        self._keyed: dict[str, object] = {}
        self._changes: list[ZoneChange] = []
        self._appends: list[asyncio.Future[None]] = []
        self.adverts = 0
        self.visits_reported = 0
        self._receivers_heard: set[str] = set()

    async def load(self) -> None:
        """Merge what HQ enrolled (kept in SQLite) with the file's enrolments."""
        by_hq = await self._enrolment.load() if self._enrolment is not None else {}
        enrolled = merged(self.config, by_hq)
        self.identities.enrol(enrolled.tags, frozenset(enrolled.keys))
        self._enrolled = enrolled.names
        self._keys = dict(enrolled.keys)
        self._keyed.clear()  # every driver gets the new set

    def command(self) -> CommandSpec:
        """``enrol`` {tags, identity_keys, remove}: HQ enrols store tags and devices; signed
        whenever HQ keys are configured. Applied once committed with the command's record."""

        async def enrol(request: CommandRequest) -> CommandResult:
            if self._enrolment is None:
                raise CommandRefusedError("enrol: this store keeps no enrolment")
            update, removed = decide_enrolment(
                request.args, self.config, await self._enrolment.load()
            )
            now = isoformat_utc(self._clock.utc_now())
            self._reload = True
            names = [t.name for t in update.tags] + [k.name for k in update.identity_keys]
            return CommandResult(
                {"enrolled": names, "removed": removed},
                EnrolmentBook.statements(update, removed, now),
            )

        return CommandSpec("enrol", enrol, changes_state=True, help="enrol or remove store tags")

    # --- input (synchronous, from the hub) ----------------------------------------------

    def on_reading(self, _device: str, reading: Reading) -> None:
        if not isinstance(reading, Advertisement):
            return
        self.adverts += 1
        if len(self._receivers_heard) < 1024:
            self._receivers_heard.add(reading.receiver)
        if self.fleet.heard(reading):
            return
        identity = self.identities.identify(reading)  # the address goes no further
        if identity is None:
            return
        self._changes += self.tracker.sight(
            identity.name, reading.receiver, reading.rssi, reading.monotonic
        )

    # --- the task ----------------------------------------------------------------------

    async def run(self) -> None:
        """Task ``presence``: tick once a second; on cancellation, report visits in progress
        as ended at their last sighting."""
        try:
            while True:
                await self.tick()
                await asyncio.sleep(_TICK_S)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.stop())

    async def tick(self) -> None:
        if self._reload:
            self._reload = False
            await self.load()
        now, wall = self._clock.monotonic(), self._clock.utc_now()
        changes, self._changes = self._changes + self.tracker.tick(now), []
        news = [item for change in changes for item in self.visits.apply(change, now)]
        news += self.visits.tick(now, self.tracker.present())
        self._report(news, now, wall)
        occupancy = self.tracker.occupancy()
        self.stats.occupancy(occupancy, wall)
        for interval in self.stats.roll(wall, occupancy):
            self._append(
                ZoneAggregate(
                    zone=interval.zone,
                    start=isoformat_utc(interval.start),
                    end=isoformat_utc(interval.end),
                    visits=interval.visits,
                    dwell_median_s=_seconds(interval.dwell_median_s),
                    dwell_p90_s=_seconds(interval.dwell_p90_s),
                    peak_occupancy=interval.peak_occupancy,
                ),
                Shed.AGGREGATE,
            )
        for alert in self.fleet.check(now):
            if alert.active:
                await self._alerts.raise_(alert.key, Severity.WARNING, alert.message, alert.details)
            else:
                await self._alerts.clear(alert.key, alert.message)
        self._give_identity_keys()
        await self.flush()

    async def stop(self) -> None:
        """End every visit in progress at its last sighting and send it."""
        now, wall = self._clock.monotonic(), self._clock.utc_now()
        news = [item for change in self.tracker.close() for item in self.visits.apply(change, now)]
        news += self.visits.close()
        self._report(news, now, wall)
        await self.flush()

    async def flush(self) -> None:
        appends, self._appends = self._appends, []
        for outcome in await asyncio.gather(*appends, return_exceptions=True):
            if isinstance(outcome, StorageError):
                _LOGGER.error("presence: dwell event not recorded: %s", outcome)
            elif isinstance(outcome, BaseException):
                raise outcome

    def _report(self, news: list[VisitStarted | VisitEnded], now: float, wall: datetime) -> None:
        def at(instant: float) -> str:
            return isoformat_utc(wall - timedelta(seconds=max(0.0, now - instant)))

        for item in news:
            if isinstance(item, VisitStarted):
                if item.identity in self._enrolled:
                    self._append(
                        ZoneEntered(tag=item.identity, zone=item.zone, entered_at=at(item.started)),
                        Shed.DETAIL,
                    )
                continue
            visit = item.visit
            self.visits_reported += 1
            self.stats.visit(visit.zone, visit.dwell_s, wall)
            if visit.identity in self._enrolled:
                self._append(
                    ZoneExited(
                        tag=visit.identity,
                        zone=visit.zone,
                        entered_at=at(visit.started),
                        exited_at=at(visit.ended),
                        dwell_s=round(visit.dwell_s, 2),
                        sightings=visit.sightings,
                    ),
                    Shed.DETAIL,
                )

    def _append(self, event: EventBody, shed: Shed) -> None:
        try:
            self._appends.append(self._outbox.append("dwell", event, shed=shed))
        except StorageError as exc:
            _LOGGER.error("presence: dwell event not recorded: %s", exc)

    def _give_identity_keys(self) -> None:
        """Every running beacon driver object gets the enrolled keys once (a restarted
        driver is a new object)."""
        if not self._keys:
            return
        for device in self._beacon_devices:
            driver = self._driver(device)
            if driver is None or self._keyed.get(device) is driver:
                continue
            give = getattr(driver, "set_identity_keys", None)
            if callable(give):
                try:
                    give(dict(self._keys))
                except Exception:  # one driver's fault stops neither presence nor the others
                    _LOGGER.exception("beacon driver %s refused the identity keys", device)
            self._keyed[device] = driver

    # --- views ---------------------------------------------------------------------------

    def zones_view(self) -> dict[str, Any]:
        now = self._clock.monotonic()
        occupancy = self.tracker.occupancy()
        dwell: dict[str, list[float]] = {zone: [] for zone in occupancy}
        for zone, started, _last in self.tracker.present().values():
            dwell[zone].append(now - started)
        return {
            "zones": [
                {
                    "zone": zone.name,
                    "receivers": list(zone.receivers),
                    # A misspelt receiver name shows here: configured, never heard.
                    "receivers_unheard": [
                        name for name in zone.receivers if name not in self._receivers_heard
                    ],
                    "enter_rssi": zone.enter_rssi,
                    "occupancy": occupancy[zone.name],
                    "longest_dwell_now_s": round(max(dwell[zone.name]), 1)
                    if dwell[zone.name]
                    else None,
                }
                for zone in self.config.zones
            ],
            "tracked": len(self.tracker),
            "adverts": self.adverts,
            "visits_reported": self.visits_reported,
        }

    def beacons_view(self) -> dict[str, Any]:
        return {"beacons": self.fleet.listing(self._clock.monotonic())}


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
