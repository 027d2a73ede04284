"""``ble.bluez``: a local Bluetooth adapter scanning continuously through bleak on BlueZ.

research/ble.md, "bleak 3.x on Linux": one ``BleakScanner`` per adapter, started once and kept
running for days — never a start/stop loop (BlueZ answers those with ``InProgress`` and drops
adverts). Active scanning with BlueZ's ``DuplicateData`` filter on and an RSSI threshold, so
every advert is reported, not one per device every ~10 s; passive scanning needs
``or_patterns`` (BlueZ's advertisement monitor). Start-up recovers from BlueZ refusing
discovery: ``InProgress`` → force a StopDiscovery and retry, ``NotReady`` → power the adapter
on, repeated failures → power-cycle the adapter, with backoff between attempts; after that the
driver is unavailable with the reason and the supervisor retries later. No D-Bus system bus,
no BlueZ on it, or no such adapter: unavailable with a clear reason, never a crash.

bleak's detection callback only stamps the advert and enqueues it (bounded; drops counted);
decoding (:mod:`.beacon_fields`) and identity resolution run in :meth:`BlueZScanner.readings`.
A silence watchdog restarts the scan once when nothing at all was heard for
``silence_restart_s`` (an adapter that stalled, or vanished: then the restart fails and the
supervisor takes over). Only public bleak API is used; the recovery's D-Bus calls go through
dbus-fast directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.ble.address_resolution import IdentityResolver
from devices.ble.beacon_fields import beacon_fields
from devices.kit.plugin import driver_plugin
from gateway.drivers.contracts import (
    Advertisement,
    DeviceFamily,
    DriverContext,
    Heartbeat,
    Reading,
)
from gateway.errors import DriverConfigError, DriverUnavailableError

if TYPE_CHECKING:
    from bleak import BleakScanner
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

__all__ = ["PLUGIN", "BlueZScanner", "BlueZScannerOptions", "OrPattern"]

_LOGGER = logging.getLogger(__name__)
_BLUEZ = "org.bluez"
_Stamped = tuple[
    float,
    datetime,
    str,
    int,
    dict[int, bytes],
    dict[str, bytes],
    tuple[str, ...],
    int | None,
    str | None,
]


class OrPattern(BaseModel):
    """One passive-scan pattern: ``content`` at ``start`` of an AD structure of ``ad_type``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: int = Field(0, ge=0, le=30, description="Offset in the AD structure's data.")
    ad_type: int = Field(0xFF, ge=0, le=0xFF, description="AD type (0xFF: manufacturer data).")
    content: str = Field(pattern=r"^([0-9A-Fa-f]{2}){1,31}$", description="Bytes, as hex.")


class BlueZScannerOptions(BaseModel):
    """Options of ``ble.bluez``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    adapter: str = Field("hci0", pattern=r"^hci[0-9]{1,3}$", description="Local adapter.")
    mode: Literal["active", "passive"] = Field("active", description="Scanning mode.")
    rssi_threshold: int = Field(-100, ge=-127, le=20, description="BlueZ drops weaker adverts.")
    or_patterns: list[OrPattern] = Field(
        default_factory=list, max_length=16, description="Passive mode's patterns (required)."
    )
    queue_size: int = Field(10_000, ge=10, le=1_000_000, description="Adverts waiting at most.")
    start_attempts: int = Field(5, ge=1, le=50, description="Starts tried before giving up.")
    retry_initial_s: float = Field(0.5, gt=0, le=60, description="First wait between starts.")
    retry_max_s: float = Field(10.0, gt=0, le=600, description="Longest wait between starts.")
    power_cycle_after: int = Field(
        3, ge=1, le=50, description="Failed starts in a row before the adapter is power-cycled."
    )
    silence_restart_s: float = Field(
        60.0, ge=1, le=3600, description="Nothing heard this long: restart the scan once."
    )
    heartbeat_s: float = Field(5.0, gt=0, le=60, description="Heartbeat while nothing is heard.")

    @model_validator(mode="after")
    def _passive_needs_patterns(self) -> BlueZScannerOptions:
        if self.mode == "passive" and not self.or_patterns:
            raise ValueError("passive mode needs or_patterns (BlueZ's advertisement monitor)")
        return self


class BlueZScanner:
    """A :class:`~gateway.drivers.contracts.BeaconReceiver` on one local adapter."""

    def __init__(self, context: DriverContext, options: BlueZScannerOptions) -> None:
        self._context, self._options = context, options
        self._resolver = IdentityResolver()
        self._queue: asyncio.Queue[_Stamped] | None = None
        self._scanner: BleakScanner | None = None
        self.dropped = 0
        self.restarts = 0
        self.power_cycles = 0
        self._detail = ""

    # --- the contract ------------------------------------------------------------------------

    def set_identity_keys(self, keys: Mapping[str, bytes]) -> None:
        self._resolver.replace(keys)

    @property
    def status_detail(self) -> str:
        parts = [f"{self._options.adapter} {self._options.mode}"]
        if self._detail:
            parts.append(self._detail)
        if self.dropped:
            parts.append(f"{self.dropped} adverts dropped (queue full)")
        return "; ".join(parts)

    async def open(self) -> None:
        from bleak import BleakScanner

        options = self._options
        self._queue = asyncio.Queue(options.queue_size)
        bluez: dict[str, Any] = {"adapter": options.adapter}
        if options.mode == "active":
            bluez["filters"] = {"DuplicateData": True, "RSSI": options.rssi_threshold}
        else:
            from bleak.args.bluez import OrPattern as BleakOrPattern
            from bleak.assigned_numbers import AdvertisementDataType

            try:
                patterns = [
                    BleakOrPattern(
                        p.start, AdvertisementDataType(p.ad_type), bytes.fromhex(p.content)
                    )
                    for p in options.or_patterns
                ]
            except ValueError as exc:  # an AD type bleak does not know
                raise DriverConfigError(f"or_patterns: {exc}") from exc
            bluez["or_patterns"] = patterns
        self._scanner = BleakScanner(self._detected, scanning_mode=options.mode, bluez=bluez)  # type: ignore[arg-type]
        await self._start()

    async def close(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            with contextlib.suppress(Exception):
                await scanner.stop()

    async def readings(self) -> AsyncIterator[Reading]:
        assert self._queue is not None, "open() first"
        queue, options = self._queue, self._options
        loop = asyncio.get_running_loop()
        clock = self._context.clock
        last_heard = loop.time()
        while True:
            try:
                async with asyncio.timeout(options.heartbeat_s):
                    stamped = await queue.get()
            except TimeoutError:
                if loop.time() - last_heard >= options.silence_restart_s:
                    await self._restart("nothing heard for %.0f s" % (loop.time() - last_heard))
                    last_heard = loop.time()
                yield Heartbeat(clock.monotonic(), "no advertisement heard")
                continue
            last_heard = loop.time()
            yield self._advertisement(stamped)

    # --- bleak's callback: stamp and enqueue, nothing else ------------------------------------

    def _detected(self, device: BLEDevice, data: AdvertisementData) -> None:
        clock = self._context.clock
        stamped: _Stamped = (
            clock.monotonic(),
            clock.utc_now(),
            device.address,
            data.rssi,
            dict(data.manufacturer_data),
            dict(data.service_data),
            tuple(data.service_uuids),
            data.tx_power,
            data.local_name,
        )
        assert self._queue is not None
        try:
            self._queue.put_nowait(stamped)
        except asyncio.QueueFull:
            self.dropped += 1

    def _advertisement(self, stamped: _Stamped) -> Advertisement:
        monotonic, at, address, rssi, manufacturer, service, uuids, tx_power, name = stamped
        fields = beacon_fields(manufacturer, service)
        return Advertisement(
            receiver=self._options.adapter,
            address=address.upper(),
            rssi=max(-127, min(0, rssi)),
            monotonic=monotonic,
            observed_at=at,
            manufacturer_data=manufacturer,
            service_data=service,
            service_uuids=uuids,
            tx_power=tx_power,
            local_name=name,
            beacon=fields.beacon,
            measured_power=fields.measured_power,
            telemetry=fields.telemetry,
            enrolled_key=self._resolver.resolve(address),
        )

    # --- start-up and recovery ----------------------------------------------------------------

    async def _start(self) -> None:
        from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError, BleakError

        options, adapter = self._options, self._options.adapter
        assert self._scanner is not None
        delay, failures = options.retry_initial_s, 0
        last = ""
        for attempt in range(1, options.start_attempts + 1):
            try:
                await self._scanner.start()
            except BleakDBusError as exc:
                last = exc.dbus_error
                failures += 1
                _LOGGER.warning(
                    "%s: BlueZ refused discovery (%s), attempt %d", adapter, last, attempt
                )
                if last.endswith(".InProgress"):
                    await self._adapter_call("StopDiscovery")  # a discovery we did not stop
                elif last.endswith(".NotReady"):
                    await self._set_powered(True)
                if failures >= options.power_cycle_after:
                    await self._power_cycle()
                    failures = 0
            except BleakBluetoothNotAvailableError as exc:
                raise DriverUnavailableError(f"{adapter}: Bluetooth not available: {exc}") from exc
            except BleakError as exc:  # no such adapter, BlueZ not on the bus...
                raise DriverUnavailableError(f"{adapter}: {exc}") from exc
            except OSError as exc:  # no system bus socket at all
                raise DriverUnavailableError(
                    f"{adapter}: no D-Bus system bus ({exc}); is dbus running and BlueZ "
                    "installed (systemctl status dbus bluetooth)?"
                ) from exc
            else:
                self._detail = (
                    f"scanning (started after {attempt} attempt(s))" if attempt > 1 else "scanning"
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, options.retry_max_s)
        self._detail = f"BlueZ refuses discovery: {last}"
        raise DriverUnavailableError(
            f"{adapter}: BlueZ refused discovery {options.start_attempts} times ({last}); "
            "check `bluetoothctl show`, `rfkill list`"
        )

    async def _restart(self, why: str) -> None:
        """The silence watchdog: stop and start the scan once; a failure ends the driver."""
        self.restarts += 1
        _LOGGER.warning("%s: %s: restarting the scan", self._options.adapter, why)
        assert self._scanner is not None
        with contextlib.suppress(Exception):
            await self._scanner.stop()
        await self._start()

    async def _power_cycle(self) -> None:
        self.power_cycles += 1
        _LOGGER.warning(
            "%s: power-cycling the adapter after repeated failures", self._options.adapter
        )
        await self._set_powered(False)
        await self._set_powered(True)

    async def _set_powered(self, on: bool) -> None:
        from dbus_fast import Variant

        await self._call(
            "org.freedesktop.DBus.Properties",
            "Set",
            "ssv",
            ["org.bluez.Adapter1", "Powered", Variant("b", on)],
        )

    async def _adapter_call(self, member: str) -> None:
        await self._call("org.bluez.Adapter1", member, "", [])

    async def _call(self, interface: str, member: str, signature: str, body: list[Any]) -> None:
        """One D-Bus call to the adapter on our own short connection; failures are logged
        (the next start attempt tells whether it helped)."""
        from dbus_fast import BusType, Message
        from dbus_fast.aio import MessageBus

        path = f"/org/bluez/{self._options.adapter}"
        try:
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except OSError as exc:
            _LOGGER.warning("%s: no D-Bus for %s: %s", self._options.adapter, member, exc)
            return
        try:
            reply = await bus.call(
                Message(
                    destination=_BLUEZ,
                    path=path,
                    interface=interface,
                    member=member,
                    signature=signature,
                    body=body,
                )
            )
            if reply is not None and reply.error_name:
                _LOGGER.info("%s: %s: %s", self._options.adapter, member, reply.error_name)
        finally:
            bus.disconnect()


PLUGIN = driver_plugin(
    BlueZScanner,
    family=DeviceFamily.BEACON,
    options=BlueZScannerOptions,
    description="a local Bluetooth adapter scanning continuously (bleak on BlueZ)",
)
