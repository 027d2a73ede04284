"""The shelves feature at its edges: section ``[shelves]`` (:mod:`gateway.shelves.config`), the
:class:`~gateway.shelves.service.ShelfService` fed from the reading hub, the control commands
``slots``, ``scale.read`` (streaming with ``follow``), ``scale.tare`` and ``scale.calibrate``,
HQ's ``slots``, the task ``shelves`` and the status block ``slots``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.control.args import flag_arg, number_arg, text_arg
from gateway.control.server import Handler
from gateway.drivers.contracts import DeviceFamily
from gateway.errors import InvalidArgsError, ShelfError
from gateway.feature import FeatureServices, TaskFactory
from gateway.shelves.config import ShelvesConfig
from gateway.shelves.service import ShelfService
from gateway.sync.commands import CommandSpec

__all__ = ["ShelvesFeature"]


class ShelvesFeature:
    """Build with :meth:`start`."""

    section = "shelves"

    def __init__(self, service: ShelfService) -> None:
        self.service = service

    @classmethod
    async def start(cls, services: FeatureServices, config: ShelvesConfig) -> ShelvesFeature:
        """The service with the configured slots loaded, listening to the readings."""
        devices = services.devices
        service = ShelfService(
            database=services.database,
            outbox=services.outbox,
            alerts=services.alerts,
            clock=services.clock,
            config=config,
            scale_devices=devices.configured(DeviceFamily.SCALE),
            device_up=lambda name: devices.driver(name) is not None,
            driver=devices.driver,
        )
        await service.load()
        services.hub.subscribe(service.on_reading)
        return cls(service)

    # --- edges ------------------------------------------------------------------------------

    def control_handlers(self) -> Mapping[str, Handler]:
        return {
            "slots": self._slots_command,
            "scale.read": self._read_command,
            "scale.tare": self._tare_command,
            "scale.calibrate": self._calibrate_command,
        }

    def hq_commands(self) -> Sequence[CommandSpec]:
        return [self.service.command()]

    def tasks(self) -> Mapping[str, TaskFactory]:
        return {"shelves": self.service.run}

    async def status(self) -> Mapping[str, object]:
        return {"slots": self.service.listing()}

    # --- control commands -------------------------------------------------------------------

    async def _slots_command(self, _args: Mapping[str, Any]) -> dict[str, Any]:
        return {"slots": self.service.listing()}

    async def _read_command(self, args: Mapping[str, Any]) -> object:
        """One view of the slot, or (``follow``) every sample's view until the client stops."""
        slot, follow = text_arg(args, "slot"), flag_arg(args, "follow")
        try:
            current = self.service.reading(slot)
        except ShelfError as exc:
            raise InvalidArgsError(str(exc)) from exc
        return self.service.follow(slot) if follow else current

    async def _tare_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        slot, device, force = (
            text_arg(args, "slot"),
            flag_arg(args, "device"),
            flag_arg(args, "force"),
        )
        try:
            return await self.service.tare(slot, device=device, force=force)
        except ShelfError as exc:
            raise InvalidArgsError(str(exc)) from exc

    async def _calibrate_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        slot, known = text_arg(args, "slot"), number_arg(args, "known_grams")
        try:
            return await self.service.calibrate(slot, known)
        except ShelfError as exc:
            raise InvalidArgsError(str(exc)) from exc
