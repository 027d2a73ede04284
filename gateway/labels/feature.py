"""The labels feature at its edges: section ``[labels]`` (:mod:`gateway.labels.config`), the
bindings, the label directory (flash), the label pipeline hooked to the price downlink, the
bindings and the readings; the control commands ``label.bind``, ``label.unbind``,
``label.seed``, ``label.flash``, ``label.preview``, ``labels`` and ``label.show``; HQ's
``bind``, ``unbind`` and ``flash`` (:mod:`gateway.labels.commands`); the task ``labels``; the
status block ``labels``.

Without its fonts the pipeline is disabled (logged): bindings, flash and their commands go on,
the pipeline's commands answer that it is not running and its status block is null.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.alerts import Alerts, Severity
from gateway.clock import Clock, SystemClock
from gateway.control.args import number_arg, optional_text_arg, text_arg
from gateway.control.server import Handler
from gateway.drivers.contracts import DeviceFamily, LabelDriver
from gateway.errors import CommandRefusedError, InvalidArgsError
from gateway.feature import FeatureServices, LiveDevices, TaskFactory
from gateway.labels.bindings import LabelBindings, check_binding_rows
from gateway.labels.commands import binding_commands, flash_command
from gateway.labels.config import LabelsConfig
from gateway.labels.directory import LabelDirectory
from gateway.labels.health import FleetHealth, alert_changes
from gateway.labels.pipeline import LabelPipeline
from gateway.labels.preview import preview_label
from gateway.prices.feature import PricesFeature
from gateway.sync.commands import CommandSpec

__all__ = ["LabelsFeature"]

_LOGGER = logging.getLogger(__name__)

_PREVIEW_MODEL = "296x128:bwr"
_HEALTH_EVERY_S = 60.0  # fleet-health alerts are assessed this often


class LabelsFeature:
    """Build with :meth:`start`."""

    section = "labels"

    def __init__(
        self,
        *,
        bindings: LabelBindings,
        directory: LabelDirectory,
        pipeline: LabelPipeline | None,
        devices: LiveDevices,
        health: FleetHealth | None = None,
        alerts: Alerts | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.bindings = bindings
        self.directory = directory
        self.pipeline = pipeline
        self._devices = devices
        self.health = health or FleetHealth()
        self._alerts = alerts
        self._clock = clock or SystemClock()

    @classmethod
    async def start(
        cls,
        services: FeatureServices,
        config: LabelsConfig,
        *,
        prices: PricesFeature,
        timezone: str,
        locale: str,
    ) -> LabelsFeature:
        """The bindings and the directory, and the pipeline loaded and hooked to the price
        downlink, the bindings and the readings (None without its fonts)."""
        bindings = LabelBindings(services.database, services.outbox, services.clock)
        directory = LabelDirectory(services.hub, services.clock)
        devices = services.devices

        def label_drivers() -> dict[str, LabelDriver | None]:
            """Every configured ESL device → its live driver (None while it is not running)."""
            drivers: dict[str, LabelDriver | None] = {}
            for name in devices.configured(DeviceFamily.ESL):
                driver = devices.driver(name)
                drivers[name] = driver if isinstance(driver, LabelDriver) else None
            return drivers

        try:
            pipeline: LabelPipeline | None = LabelPipeline(
                database=services.database,
                outbox=services.outbox,
                alerts=services.alerts,
                clock=services.clock,
                config=config,
                drivers=label_drivers,
                timezone=timezone,
                locale=locale,
                was_price=prices.book.was_price,
                book=prices.book,
            )
        except FileNotFoundError as exc:
            _LOGGER.error("label pipeline disabled: %s", exc)
            pipeline = None
        if pipeline is not None:
            await pipeline.load()
            prices.downlink.on_applied = pipeline.on_prices_applied
            bindings.on_change = lambda label: pipeline.on_bindings_changed([label])
            services.hub.subscribe(pipeline.on_reading)
        health = FleetHealth()
        services.hub.subscribe(health.on_reading)
        return cls(
            bindings=bindings,
            directory=directory,
            pipeline=pipeline,
            devices=devices,
            health=health,
            alerts=services.alerts,
            clock=services.clock,
        )

    # --- edges ------------------------------------------------------------------------------

    def control_handlers(self) -> Mapping[str, Handler]:
        return {
            "label.preview": self._preview_command,
            "label.bind": self._bind_command,
            "label.unbind": self._unbind_command,
            "label.flash": self._flash_command,
            "label.seed": self._seed_command,
            "labels": self._labels_command,
            "label.show": self._show_command,
        }

    def hq_commands(self) -> Sequence[CommandSpec]:
        return [
            *binding_commands(self.bindings),
            flash_command(self.directory, self._devices.driver),
        ]

    def tasks(self) -> Mapping[str, TaskFactory]:
        tasks: dict[str, TaskFactory] = {"labels-health": self._watch_health}
        if self.pipeline is not None:
            tasks["labels"] = self.pipeline.run
        return tasks

    async def sync_health_alerts(self) -> None:
        """Raise or clear the fleet-health alerts (battery, timed out, signal) as assessed now."""
        if self._alerts is None:
            return
        for key, message, details in alert_changes(self.health.assess(self._clock.utc_now())):
            if message is None:
                await self._alerts.clear(key, "no label has this problem any more")
            else:
                await self._alerts.raise_(key, Severity.WARNING, message, details)

    async def _watch_health(self) -> None:
        while True:
            await self.sync_health_alerts()
            await asyncio.sleep(_HEALTH_EVERY_S)

    async def status(self) -> Mapping[str, object]:
        return {"labels": await self.pipeline.summary() if self.pipeline is not None else None}

    # --- control commands -------------------------------------------------------------------

    def _require_pipeline(self) -> LabelPipeline:
        if self.pipeline is None:
            raise InvalidArgsError("the label pipeline is not running")
        return self.pipeline

    async def _bind_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        label, sku = text_arg(args, "label"), text_arg(args, "sku")
        try:
            binding = await self.bindings.bind(label, sku, "local")
        except CommandRefusedError as exc:
            raise InvalidArgsError(str(exc)) from exc
        reply = binding.as_dict()
        if self.pipeline is not None:  # a failed job for this SKU is tried again now
            reply["job_state"] = await self.pipeline.retry_failed(
                binding.label, binding.sku, "retried by a technician (storegw label bind)"
            )
        return reply

    async def _unbind_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        removed = await self.bindings.unbind(text_arg(args, "label"), "local")
        return {"removed": removed.as_dict() if removed is not None else None}

    async def _seed_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        rows = args.get("rows")
        if not isinstance(rows, list) or not all(
            isinstance(row, list) and len(row) == 2 for row in rows
        ):
            raise InvalidArgsError("rows: a list of [label, sku] pairs")
        try:  # the daemon checks again: the socket is not only the CLI's
            checked = check_binding_rows([{"label": label, "sku": sku} for label, sku in rows])
        except ValueError as exc:
            raise InvalidArgsError(f"invalid seed rows: {exc}") from exc
        return (await self.bindings.seed(checked)).as_dict()

    async def _flash_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        label, seconds = text_arg(args, "label"), number_arg(args, "seconds", 10.0)
        try:
            return dict(await self.directory.flash(self._devices.driver, label, seconds))
        except CommandRefusedError as exc:
            raise InvalidArgsError(str(exc)) from exc

    async def _labels_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        state = optional_text_arg(args, "state")
        try:
            listing = await self._require_pipeline().listing(state)
        except ValueError as exc:
            raise InvalidArgsError(str(exc)) from exc
        if args.get("health"):  # unbound labels (offered for binding) are in the listing
            listing = {**listing, "health": self.health.summary(self._clock.utc_now())}
        return listing

    async def _show_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        label = text_arg(args, "label")
        try:
            shown = await self._require_pipeline().show(label)
        except ValueError as exc:
            raise InvalidArgsError(str(exc)) from exc
        return {**shown, "health": self.health.detail(label, self._clock.utc_now())}

    async def _preview_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Render what a label for ``sku`` shows now (PNG, base64) on ``model`` (WxH:palette):
        the pipeline's face and renderer at its policy instant, as the shelf gets it."""
        sku, model = text_arg(args, "sku"), optional_text_arg(args, "model") or _PREVIEW_MODEL
        pipeline = self._require_pipeline()
        at, _synced = pipeline.policy_instant()
        try:
            return await preview_label(pipeline.book, pipeline, sku=sku, model=model, at=at)
        except ValueError as exc:
            raise InvalidArgsError(str(exc)) from exc
