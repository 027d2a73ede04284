"""``modbus.rtu``: weight transmitters on one RS-485 bus, polled over Modbus RTU with pymodbus.

One driver instance owns one serial port (a device path or a pyserial URL such as
``socket://host:port``) and polls every configured channel once per cycle, at ``poll_rate_hz``
(or back to back when the bus cannot go that fast). A channel is one weight of one unit id:
a single-channel transmitter is one channel, a multi-channel one is listed once per channel
with a ``register_offset``.

A dead or slow unit must not stall the bus. Each transaction has its own timeout (per unit),
pymodbus' own retries are off, and every unit keeps failure counters: after
``failures_before_backoff`` consecutive failures the unit is skipped for a number of cycles
that doubles on each further failure (capped at ``max_backoff_cycles``), then tried again. A
failed poll yields a sample with status ERROR and no weights for that unit's channels only;
skipped cycles yield nothing for it. :attr:`ModbusRtuScale.status_detail` names every unit
that is not answering and why (timeout, CRC error, truncated reply, another unit answering).

When the port itself fails (unplugged USB adapter, closed socket) the driver raises
DriverUnavailableError and the supervisor reopens it with backoff: the driver does not
reconnect by itself, so there is one reconnect policy for every driver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException

from devices.kit.plugin import driver_plugin
from devices.scale.modbus_protocol import (
    BUILTIN_MODELS,
    RegisterKind,
    RegisterMap,
    WordOrder,
    decode_weight,
    diagnose_reply,
    read_response_size,
)
from devices.scale.units import WeightUnit, is_plausible
from gateway.drivers.contracts import (
    DeviceFamily,
    DriverContext,
    Heartbeat,
    Reading,
    ScaleStatus,
    WeightSample,
)
from gateway.errors import DriverConfigError, DriverUnavailableError

__all__ = ["PLUGIN", "ModbusChannelOptions", "ModbusRtuOptions", "ModbusRtuScale", "UnitHealth"]

_LOGGER = logging.getLogger(__name__)

_CHANNEL_PATTERN = r"^[A-Za-z0-9_.:-]+$"


class ModbusChannelOptions(BaseModel):
    """One weight channel: which unit, which register map, and per-device settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str = Field(
        min_length=1, max_length=64, pattern=_CHANNEL_PATTERN, description="Channel name."
    )
    unit_id: int = Field(ge=1, le=247, description="Modbus device address on the bus.")
    model: str = Field(min_length=1, description="Built-in model or a key of `models`.")
    register_offset: int = Field(
        0, ge=0, le=0xFFFF, description="Added to every address (sub-channels of one unit)."
    )
    word_order: WordOrder | None = Field(None, description="Overrides the model's word order.")
    decimals: int | None = Field(None, ge=0, le=6, description="Overrides the model's decimals.")
    unit: WeightUnit | None = Field(None, description="Overrides the model's weight unit.")
    timeout_s: float | None = Field(
        None, gt=0, le=10, description="Reply timeout for this unit (default: `timeout_s`)."
    )
    max_grams: float | None = Field(
        None, gt=0, le=1e9, description="Plausibility bound (default: `max_grams`)."
    )


class ModbusRtuOptions(BaseModel):
    """Options of ``modbus.rtu``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: str = Field(
        min_length=1, description="Serial device path or pyserial URL (socket://host:port)."
    )
    baudrate: int = Field(19_200, ge=300, le=4_000_000)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    poll_rate_hz: float = Field(10.0, gt=0, le=1000, description="Polling cycles per second.")
    timeout_s: float = Field(0.2, gt=0, le=10, description="Default reply timeout per unit.")
    failures_before_backoff: int = Field(
        3, ge=1, le=1000, description="Consecutive failures before a unit is skipped."
    )
    max_backoff_cycles: int = Field(
        64, ge=1, le=100_000, description="Longest a failing unit is skipped, in cycles."
    )
    turnaround_guard_s: float = Field(
        0.02, ge=0, le=5, description="Bus kept quiet after a failed transaction."
    )
    max_grams: float = Field(
        500_000.0, gt=0, le=1e9, description="Weights beyond ± this are faults, not stock."
    )
    models: dict[str, RegisterMap] = Field(
        default_factory=dict, description="Custom register maps by model name."
    )
    devices: list[ModbusChannelOptions] = Field(
        min_length=1, max_length=1024, description="The channels on this bus."
    )

    @model_validator(mode="after")
    def _coherent(self) -> ModbusRtuOptions:
        shadowed = sorted(self.models.keys() & BUILTIN_MODELS.keys())
        if shadowed:
            raise ValueError(f"custom models must not reuse built-in names: {shadowed}")
        known = sorted(BUILTIN_MODELS.keys() | self.models.keys())
        channels: set[str] = set()
        places: set[tuple[int, int]] = set()
        for device in self.devices:
            if device.model not in known:
                raise ValueError(
                    f"channel {device.channel!r}: unknown model {device.model!r}; "
                    f"built-in and configured models: {', '.join(known)}"
                )
            if device.channel in channels:
                raise ValueError(f"duplicate channel name {device.channel!r}")
            channels.add(device.channel)
            place = (device.unit_id, device.register_offset)
            if place in places:
                raise ValueError(
                    f"channel {device.channel!r}: unit {device.unit_id} with register_offset "
                    f"{device.register_offset} is already another channel"
                )
            places.add(place)
            self.register_map(device)  # overrides must still give a valid map
        return self

    def register_map(self, device: ModbusChannelOptions) -> RegisterMap:
        base = self.models.get(device.model) or BUILTIN_MODELS[device.model]
        try:
            return base.adjusted(
                offset=device.register_offset,
                word_order=device.word_order,
                decimals=device.decimals,
                unit=device.unit,
            )
        except ValueError as exc:
            raise ValueError(f"channel {device.channel!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class UnitHealth:
    """How one unit id on the bus is doing (for ``status_detail`` and diagnostics)."""

    unit_id: int
    channels: tuple[str, ...]
    online: bool
    consecutive_failures: int
    failures: int
    polls: int
    skip_cycles: int
    last_error: str | None


@dataclass(slots=True)
class _Channel:
    name: str
    register_map: RegisterMap
    max_grams: float


@dataclass(slots=True)
class _Unit:
    unit_id: int
    timeout_s: float
    channels: list[_Channel] = field(default_factory=list)
    consecutive_failures: int = 0
    failures: int = 0
    polls: int = 0
    skip_cycles: int = 0
    backoff_cycles: int = 0
    last_error: str | None = None
    online: bool = True

    def health(self) -> UnitHealth:
        return UnitHealth(
            unit_id=self.unit_id,
            channels=tuple(channel.name for channel in self.channels),
            online=self.online,
            consecutive_failures=self.consecutive_failures,
            failures=self.failures,
            polls=self.polls,
            skip_cycles=self.skip_cycles,
            last_error=self.last_error,
        )


class _TransactionFailedError(Exception):
    """One unit did not answer usefully; the bus itself is fine."""


class ModbusRtuScale:
    """A :class:`~gateway.drivers.contracts.ScaleDriver` for a Modbus RTU bus."""

    def __init__(self, context: DriverContext, options: ModbusRtuOptions) -> None:
        self._context = context
        self._options = options
        self._units: dict[int, _Unit] = {}
        self._channels: dict[str, tuple[_Unit, _Channel]] = {}
        for device in options.devices:
            unit = self._units.get(device.unit_id)
            if unit is None:
                unit = _Unit(device.unit_id, device.timeout_s or options.timeout_s)
                self._units[device.unit_id] = unit
            elif device.timeout_s is not None:
                unit.timeout_s = max(unit.timeout_s, device.timeout_s)
            channel = _Channel(
                device.channel, options.register_map(device), device.max_grams or options.max_grams
            )
            unit.channels.append(channel)
            self._channels[device.channel] = (unit, channel)
        self._client: AsyncModbusSerialClient | None = None
        self._bus = asyncio.Lock()  # one transaction at a time: polls and commands
        self._received = b""  # raw bytes seen since the last request (for diagnosis)

    # --- contract -------------------------------------------------------------------------

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self._channels)

    @property
    def status_detail(self) -> str:
        """One line for ``storegw status``: units answering, and those that are not."""
        units = list(self._units.values())
        offline = [unit for unit in units if not unit.online]
        if not offline:
            return f"{len(units)} unit(s) answering"
        parts = [
            f"unit {unit.unit_id} ({', '.join(c.name for c in unit.channels)}): "
            f"{unit.last_error}, {unit.consecutive_failures} failures in a row"
            + (f", next try in {unit.skip_cycles} cycles" if unit.skip_cycles else "")
            for unit in offline
        ]
        return f"{len(units) - len(offline)}/{len(units)} units answering; " + "; ".join(parts)

    def unit_health(self) -> tuple[UnitHealth, ...]:
        return tuple(unit.health() for unit in self._units.values())

    async def open(self) -> None:
        options = self._options
        port = options.port
        if "://" not in port and not Path(port).exists():  # noqa: ASYNC240 - a stat
            raise DriverUnavailableError(
                f"serial port {port} does not exist (unplugged?)", driver=self._context.name
            )
        longest = max(unit.timeout_s for unit in self._units.values())
        client = AsyncModbusSerialClient(
            port,
            baudrate=options.baudrate,
            bytesize=options.bytesize,
            parity=options.parity,
            stopbits=options.stopbits,
            name=self._context.name,
            reconnect_delay=0,  # the supervisor reopens the port; no second reconnect policy
            timeout=longest + 1.0,  # our per-unit timeouts fire first
            retries=0,  # a retry would keep the whole bus waiting on a dead unit
            trace_packet=self._trace,
        )
        try:
            connected = await client.connect()
        except Exception as exc:  # pyserial raises many types for a bad URL
            client.close()
            raise DriverUnavailableError(
                f"cannot open {port}: {exc}", driver=self._context.name
            ) from exc
        # pymodbus connects through asyncio.wait_for, which on Python 3.11 swallows a
        # cancellation that arrives as the connection completes: ours must still win, or a
        # supervisor stopping this driver waits out its whole budget.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            client.close()
            raise asyncio.CancelledError
        if not connected:
            client.close()
            raise DriverUnavailableError(f"cannot open {port}", driver=self._context.name)
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def zero(self, channel: str) -> None:
        await self._command(channel, "zero")

    async def tare(self, channel: str) -> None:
        await self._command(channel, "tare")

    async def readings(self) -> AsyncIterator[Reading]:
        loop = asyncio.get_running_loop()
        period = 1.0 / self._options.poll_rate_hz
        next_at = loop.time()
        while True:
            reported = False
            for unit in self._units.values():
                if unit.skip_cycles > 0:
                    unit.skip_cycles -= 1
                    continue
                for channel in unit.channels:
                    try:
                        sample = await self._poll(unit, channel)
                    except _TransactionFailedError as exc:
                        self._unit_failed(unit, str(exc))
                        for failed in unit.channels:
                            yield self._error_sample(failed.name)
                        reported = True
                        break
                    self._unit_answered(unit)
                    yield sample
                    reported = True
            if not reported:
                yield Heartbeat(self._context.clock.monotonic(), "every unit is backing off")
            next_at += period
            now = loop.time()
            next_at = max(next_at, now)  # the bus cannot keep the rate: no catch-up burst
            await asyncio.sleep(next_at - now)

    # --- transactions ---------------------------------------------------------------------

    def _trace(self, sending: bool, data: bytes) -> bytes:
        # pymodbus hands over its whole receive buffer each time bytes arrive
        self._received = b"" if sending else data
        return data

    def _connected_client(self) -> AsyncModbusSerialClient:
        client = self._client
        if client is None or not client.connected:
            raise DriverUnavailableError(
                f"serial port {self._options.port} closed (unplugged or connection lost)",
                driver=self._context.name,
            )
        return client

    async def _poll(self, unit: _Unit, channel: _Channel) -> WeightSample:
        register_map = channel.register_map
        first, count = register_map.block()
        async with self._bus:
            client = self._connected_client()
            self._received = b""
            read = (
                client.read_input_registers
                if register_map.registers is RegisterKind.INPUT
                else client.read_holding_registers
            )
            try:
                async with asyncio.timeout(unit.timeout_s):
                    response = await read(first, count=count, device_id=unit.unit_id)
            except TimeoutError:
                raise await self._failed(unit, read_response_size(count)) from None
            except ConnectionException as exc:
                raise DriverUnavailableError(
                    f"serial port {self._options.port} failed: {exc}", driver=self._context.name
                ) from exc
            except ModbusException as exc:
                await self._quiet()
                raise _TransactionFailedError(f"modbus error: {exc}") from exc
            unit.polls += 1
            if response.isError():
                raise _TransactionFailedError(
                    f"exception reply, code {response.exception_code} (register map wrong?)"
                )
            if len(response.registers) != count:
                raise _TransactionFailedError(
                    f"{len(response.registers)} registers instead of {count}"
                )
        decoded = decode_weight(register_map, response.registers)
        clock = self._context.clock
        status, gross, net = decoded.status, decoded.gross_grams, decoded.net_grams
        if not (is_plausible(gross, channel.max_grams) and is_plausible(net, channel.max_grams)):
            status, gross, net = ScaleStatus.ERROR, None, None
        return WeightSample(
            channel=channel.name,
            gross_grams=gross,
            net_grams=net,
            stable=decoded.stable,
            status=status,
            monotonic=clock.monotonic(),
            observed_at=clock.utc_now(),
        )

    async def _failed(self, unit: _Unit, expected_size: int) -> _TransactionFailedError:
        """The reply did not come (in time, or valid): say why, and let the bus settle."""
        unit.polls += 1
        reason = diagnose_reply(unit.unit_id, expected_size, self._received)
        await self._quiet()
        return _TransactionFailedError(reason)

    async def _quiet(self) -> None:
        # A late reply still on the wire would corrupt the next unit's transaction.
        if self._options.turnaround_guard_s:
            await asyncio.sleep(self._options.turnaround_guard_s)

    async def _write(self, unit: _Unit, address: int, value: int, function: int) -> None:
        async with self._bus:
            client = self._connected_client()
            self._received = b""
            try:
                async with asyncio.timeout(unit.timeout_s):
                    if function == 16:
                        response = await client.write_registers(
                            address, [value], device_id=unit.unit_id
                        )
                    else:
                        response = await client.write_register(
                            address, value, device_id=unit.unit_id
                        )
            except TimeoutError:
                raise await self._failed(unit, 8) from None
            except ConnectionException as exc:
                raise DriverUnavailableError(
                    f"serial port {self._options.port} failed: {exc}", driver=self._context.name
                ) from exc
            except ModbusException as exc:
                await self._quiet()
                raise _TransactionFailedError(f"modbus error: {exc}") from exc
            if response.isError():
                raise _TransactionFailedError(
                    f"exception reply, code {response.exception_code} (command register wrong?)"
                )

    async def _command(self, channel_name: str, kind: Literal["zero", "tare"]) -> None:
        try:
            unit, channel = self._channels[channel_name]
        except KeyError:
            raise DriverConfigError(
                f"unknown channel {channel_name!r}; channels: {', '.join(self._channels)}",
                driver=self._context.name,
            ) from None
        command = channel.register_map.command
        value = None if command is None else getattr(command, kind)
        if command is None or value is None:
            raise DriverConfigError(
                f"channel {channel_name!r}: its register map has no {kind} command",
                driver=self._context.name,
            )
        try:
            await self._write(unit, command.address, value, command.function)
            if command.edge_triggered:
                await asyncio.sleep(command.hold_s)
                await self._write(unit, command.address, command.idle, command.function)
        except _TransactionFailedError as exc:
            raise DriverUnavailableError(
                f"unit {unit.unit_id} did not take the {kind} command: {exc}",
                driver=self._context.name,
            ) from exc
        _LOGGER.info(
            "%s: %s sent to unit %d (%s)", self._context.name, kind, unit.unit_id, channel_name
        )

    # --- health ---------------------------------------------------------------------------

    def _unit_answered(self, unit: _Unit) -> None:
        if not unit.online:
            _LOGGER.info(
                "%s: unit %d answers again after %d failures",
                self._context.name,
                unit.unit_id,
                unit.consecutive_failures,
            )
        unit.online = True
        unit.consecutive_failures = 0
        unit.backoff_cycles = 0
        unit.last_error = None

    def _unit_failed(self, unit: _Unit, reason: str) -> None:
        unit.failures += 1
        unit.consecutive_failures += 1
        unit.last_error = reason
        if unit.consecutive_failures < self._options.failures_before_backoff:
            return
        if unit.online:
            unit.online = False
            _LOGGER.warning(
                "%s: unit %d not answering (%s); backing off",
                self._context.name,
                unit.unit_id,
                reason,
            )
        unit.backoff_cycles = min(max(1, unit.backoff_cycles * 2), self._options.max_backoff_cycles)
        unit.skip_cycles = unit.backoff_cycles

    def _error_sample(self, channel: str) -> WeightSample:
        clock = self._context.clock
        return WeightSample(
            channel=channel,
            gross_grams=None,
            net_grams=None,
            stable=None,
            status=ScaleStatus.ERROR,
            monotonic=clock.monotonic(),
            observed_at=clock.utc_now(),
        )


PLUGIN = driver_plugin(
    ModbusRtuScale,
    family=DeviceFamily.SCALE,
    options=ModbusRtuOptions,
    description="Modbus RTU weight transmitters on one RS-485 bus (pymodbus)",
)
