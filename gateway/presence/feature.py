"""The presence feature at its edges: section ``[presence]`` (:mod:`gateway.presence.config`),
the :class:`~gateway.presence.service.PresenceService` fed from the reading hub, the control
commands ``zones`` and ``beacons``, HQ's ``enrol``, the task ``presence`` and the status block
``presence``. Without zones or fixed beacons configured it is off: no task, and advertisements
only reach the live view."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.control.server import Handler
from gateway.drivers.contracts import DeviceFamily
from gateway.feature import FeatureServices, TaskFactory
from gateway.presence.config import PresenceConfig
from gateway.presence.enrolment import EnrolmentBook
from gateway.presence.service import PresenceService
from gateway.sync.commands import CommandSpec

__all__ = ["PresenceFeature"]


class PresenceFeature:
    """Build with :meth:`start`."""

    section = "presence"

    def __init__(self, service: PresenceService | None) -> None:
        self.service = service

    @classmethod
    async def start(
        cls, services: FeatureServices, config: PresenceConfig, *, timezone: str
    ) -> PresenceFeature:
        if not config.enabled:
            return cls(None)
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
        return cls(service)

    def control_handlers(self) -> Mapping[str, Handler]:
        return {"zones": self._zones_command, "beacons": self._beacons_command}

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
