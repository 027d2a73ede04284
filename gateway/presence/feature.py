"""The presence feature at its edges: section ``[presence]`` (:mod:`gateway.presence.config`), the
:class:`~gateway.presence.service.PresenceService` fed from the reading hub, the control
commands ``zones``, ``beacons`` and ``ble.scan``, HQ's ``enrol``, the task ``presence`` and the
status block ``presence``. Without zones or fixed beacons configured it is off: no task, and
advertisements only reach the live view."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.control.args import number_arg
from gateway.control.server import Handler
from gateway.drivers.contracts import DeviceFamily
from gateway.errors import InvalidArgsError
from gateway.feature import FeatureServices, TaskFactory
from gateway.hub import ReadingHub
from gateway.presence.config import PresenceConfig
from gateway.presence.enrolment import EnrolmentBook
from gateway.presence.identity import Pseudonyms
from gateway.presence.scan import MAX_SCAN_S, ScanSession, scan
from gateway.presence.service import PresenceService
from gateway.sync.commands import CommandSpec

__all__ = ["PresenceFeature"]


class PresenceFeature:
    """Build with :meth:`start`."""

    section = "presence"

    def __init__(
        self,
        service: PresenceService | None,
        *,
        hub: ReadingHub,
        config: PresenceConfig,
        timezone: str,
    ) -> None:
        self.service = service
        self._hub, self._config, self._timezone = hub, config, timezone

    @classmethod
    async def start(
        cls, services: FeatureServices, config: PresenceConfig, *, timezone: str
    ) -> PresenceFeature:
        if not config.enabled:
            return cls(None, hub=services.hub, config=config, timezone=timezone)
        devices = services.devices
        service = PresenceService(
            outbox=services.outbox,
            alerts=services.alerts,
            clock=services.clock,
            config=config,
            timezone=timezone,
            beacon_devices=devices.configured(DeviceFamily.BEACON),
            driver=devices.driver,
            enrolment=EnrolmentBook(services.database),
        )
        await service.load()
        services.hub.subscribe(service.on_reading)
        return cls(service, hub=services.hub, config=config, timezone=timezone)

    def control_handlers(self) -> Mapping[str, Handler]:
        return {
            "zones": self._zones_command,
            "beacons": self._beacons_command,
            "ble.scan": self._scan_command,
        }

    def hq_commands(self) -> Sequence[CommandSpec]:
        return [self.service.command()] if self.service is not None else []

    def tasks(self) -> Mapping[str, TaskFactory]:
        return {"presence": self.service.run} if self.service is not None else {}

    async def status(self) -> Mapping[str, object]:
        if self.service is None:
            return {"presence": {"enabled": False}}
        view = self.service.zones_view()
        return {
            "presence": {
                "enabled": True,
                "occupancy": {zone["zone"]: zone["occupancy"] for zone in view["zones"]},
                "tracked": view["tracked"],
                "adverts": view["adverts"],
                "visits_reported": view["visits_reported"],
            }
        }

    async def _zones_command(self, _args: Mapping[str, Any]) -> dict[str, Any]:
        if self.service is None:
            return {"enabled": False, "zones": []}
        return {"enabled": True, **self.service.zones_view()}

    async def _beacons_command(self, _args: Mapping[str, Any]) -> dict[str, Any]:
        if self.service is None:
            return {"enabled": False, "beacons": []}
        return {"enabled": True, **self.service.beacons_view()}

    async def _scan_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """What the receivers hear for ``seconds`` (default 5, at most 60), presence on or
        off; addresses pseudonymised as at ingestion."""
        seconds = number_arg(args, "seconds", 5.0)
        if not 0 < seconds <= MAX_SCAN_S:
            raise InvalidArgsError(f"seconds must be in (0, {MAX_SCAN_S:g}], not {seconds:g}")
        if self.service is not None:
            identities = self.service.identities
            tags, keys = identities.tags, identities.key_names
            pseudonyms = identities.pseudonyms
        else:
            tags = {tag.beacon: tag.name for tag in self._config.tags}
            keys = frozenset(key.name for key in self._config.identity_keys)
            pseudonyms = Pseudonyms(self._timezone, size=self._config.pseudonym_bytes)
        session = ScanSession(
            tags=dict(tags),
            fixed={b.beacon: b.name for b in self._config.fixed_beacons},
            key_names=keys,
            pseudonyms=pseudonyms,
        )
        return await scan(self._hub, session, seconds)
