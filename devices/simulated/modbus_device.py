"""Simulated Modbus RTU weight transmitters sharing one RS-485 line (pty or ``socket://``).

:class:`ModbusBusSimulator` is the far end of the bus: it reassembles request frames with
pymodbus' own RTU framer (server side, CRC checked), answers for every
:class:`SimulatedTransmitter` on it and stays silent for any other unit id, as a real bus does.
Answers are built with pymodbus' PDU classes and RTU framer, so both ends of a test speak real
Modbus. Timing follows the wire: a request of N bytes is complete N character times after the
master started sending it, the device answers after a 3.5-character silence (plus its own
``reply_delay_s``), and its answer trickles out at the baud rate.

A transmitter serves the registers of its :class:`~devices.scale.modbus_protocol.RegisterMap`
for the load its :class:`~devices.simulated.timeline.WeightTimeline` scripts, minus its own zero
and tare, with overload/underload bits at its capacity. Writes to the command register zero or
tare it; an edge-triggered transmitter ignores a command value written twice in a row.

Faults (:class:`ModbusFault`), injected per transmitter, once or for good: CRC errors,
truncated replies, replies carrying another unit id, no reply (timeout), slow replies. The
whole line can be unplugged and plugged back in (:meth:`ModbusBusSimulator.unplug`/``replug``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Literal

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterResponse,
)

from devices.scale.modbus_protocol import RegisterKind, RegisterMap, encode_weight
from devices.simulated.serial_line import LineTiming, PtyLine, SerialLine, SocketLine
from devices.simulated.timeline import WeightTimeline

__all__ = ["ModbusBusSimulator", "ModbusFault", "SimulatedTransmitter"]

_LOGGER = logging.getLogger(__name__)

_ILLEGAL_FUNCTION = 1
_ILLEGAL_ADDRESS = 2
_REGISTER_SPACE = 1024  # addresses a simulated transmitter answers for


class ModbusFault(StrEnum):
    CRC = "crc"  # the reply's CRC is wrong
    TRUNCATED = "truncated"  # the reply stops short
    WRONG_UNIT = "wrong_unit"  # the reply carries another unit id
    SILENT = "silent"  # no reply at all
    SLOW = "slow"  # the reply comes ``slow_reply_s`` late


@dataclass(slots=True)
class SimulatedTransmitter:
    """One weight transmitter on the simulated bus (see the module docstring)."""

    unit_id: int
    register_map: RegisterMap
    timeline: WeightTimeline = field(default_factory=lambda: WeightTimeline.constant(0.0))
    capacity_grams: float = 30_000.0
    reply_delay_s: float = 0.0
    slow_reply_s: float = 0.5
    holding: dict[int, int] = field(default_factory=dict)
    inputs: dict[int, int] = field(default_factory=dict)
    zero_grams: float = 0.0
    tare_grams: float = 0.0
    commands: list[str] = field(default_factory=list)  # executed zero/tare, for tests
    requests: int = 0
    _faults: collections.deque[ModbusFault] = field(default_factory=collections.deque)
    _fault_forever: ModbusFault | None = None

    def inject(self, fault: ModbusFault, *, times: int | None = 1) -> None:
        """The next ``times`` replies suffer ``fault``; ``times=None``: every reply from now."""
        if times is None:
            self._fault_forever = fault
        else:
            self._faults.extend([fault] * times)

    def heal(self) -> None:
        self._faults.clear()
        self._fault_forever = None

    def next_fault(self) -> ModbusFault | None:
        if self._faults:
            return self._faults.popleft()
        return self._fault_forever

    def weights(self, t: float) -> tuple[float, float, bool]:
        load, stable = self.timeline.at(t)
        gross = load - self.zero_grams
        return gross, gross - self.tare_grams, stable

    def refresh(self, t: float) -> None:
        """Show the weights for scenario time ``t`` in the weight registers."""
        gross, net, stable = self.weights(t)
        values = encode_weight(
            self.register_map,
            gross_grams=gross,
            net_grams=net,
            stable=stable,
            overload=gross > self.capacity_grams,
            underload=gross < -0.2 * self.capacity_grams,
        )
        store = self.inputs if self.register_map.registers is RegisterKind.INPUT else self.holding
        store.update(values)

    def write(self, address: int, value: int, t: float) -> None:
        command = self.register_map.command
        previous = self.holding.get(address, 0)
        self.holding[address] = value
        if command is None or address != command.address:
            return
        if command.edge_triggered and previous == value:
            return  # no edge, no action: the driver forgot to write idle in between
        gross, _net, _stable = self.weights(t)
        if value == command.zero:
            self.zero_grams += gross
            self.tare_grams = 0.0
            self.commands.append("zero")
        elif value == command.tare:
            self.tare_grams = gross
            self.commands.append("tare")


class ModbusBusSimulator:
    """Several :class:`SimulatedTransmitter` on one line; see the module docstring.

    Use as ``async with ModbusBusSimulator(...) as bus:`` and point the driver at ``bus.url``.
    """

    def __init__(
        self,
        transmitters: Sequence[SimulatedTransmitter],
        *,
        line: Literal["pty", "socket"] = "socket",
        link: Path | None = None,
        baudrate: int = 19_200,
        bytesize: int = 8,
        parity: bool = False,
        stopbits: int = 1,
    ) -> None:
        self.transmitters = {transmitter.unit_id: transmitter for transmitter in transmitters}
        timing = LineTiming(baudrate, bytesize, parity, stopbits)
        self.line: SerialLine
        if line == "pty":
            if link is None:
                raise ValueError("a pty line needs `link`, the path the driver opens")
            self.line = PtyLine(link, timing, self._on_receive)
        else:
            self.line = SocketLine(timing, self._on_receive)
        self._framer = FramerRTU(DecodePDU(True))
        self._buffer = b""
        self._data = asyncio.Event()
        self._arrived_at = 0.0
        self._started_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._late: set[asyncio.Task[float]] = set()
        self.frames_in = 0

    @property
    def url(self) -> str:
        return self.line.url

    @property
    def timing(self) -> LineTiming:
        return self.line.timing

    async def __aenter__(self) -> ModbusBusSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._started_at = loop.time()
        await self.line.plug()
        self._task = asyncio.create_task(self._serve(), name="modbus-bus-simulator")

    async def stop(self) -> None:
        task, self._task = self._task, None
        tasks = [*self._late, *([task] if task else [])]
        for pending in tasks:
            pending.cancel()
        for pending in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        await self.line.unplug()

    async def unplug(self) -> None:
        await self.line.unplug()
        self._buffer = b""

    async def replug(self) -> None:
        await self.line.replug()

    def scenario_time(self) -> float:
        return asyncio.get_running_loop().time() - self._started_at

    # --- the bus ---------------------------------------------------------------------------

    def _on_receive(self, data: bytes) -> None:
        if not self._buffer:
            self._arrived_at = asyncio.get_running_loop().time()
        self._buffer += data
        self._data.set()

    async def _serve(self) -> None:
        while True:
            await self._data.wait()
            self._data.clear()
            while self._buffer:
                try:
                    used, request = self._framer.handleFrame(self._buffer, 0, 0)
                except Exception:  # noqa: BLE001 - an undecodable request: a device ignores it too
                    used, request = len(self._buffer), None
                self._buffer = self._buffer[used:]
                if request is None:
                    break
                self.frames_in += 1
                await self._answer(request)

    async def _answer(self, request: ModbusPDU) -> None:
        transmitter = self.transmitters.get(request.dev_id)
        if transmitter is None:
            return  # nobody at that address (or broadcast): silence
        timing = self.timing
        request_chars = len(self._framer.buildFrame(request))
        gap = 3.5 * timing.char_s if timing.baudrate <= 19_200 else 0.00175
        # The master began sending when the first byte arrived, and not before the line was
        # quiet for 3.5 characters after our last reply.
        request_start = max(self._arrived_at, self.line.line_free_at + gap)
        reply_at = request_start + timing.duration(request_chars) + gap
        reply_at += transmitter.reply_delay_s
        transmitter.requests += 1
        t = reply_at - self._started_at
        response = self._respond(transmitter, request, t)
        fault = transmitter.next_fault()
        if fault is ModbusFault.SILENT:
            return
        frame = self._framer.buildFrame(response)
        if fault is ModbusFault.CRC:
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        elif fault is ModbusFault.TRUNCATED:
            frame = frame[: max(3, len(frame) - 3)]
        elif fault is ModbusFault.WRONG_UNIT:
            response.dev_id = transmitter.unit_id % 247 + 1
            frame = self._framer.buildFrame(response)
        if fault is ModbusFault.SLOW:
            late = asyncio.create_task(
                self.line.send(frame, not_before=reply_at + transmitter.slow_reply_s)
            )
            self._late.add(late)
            late.add_done_callback(self._late.discard)
            return
        await self.line.send(frame, not_before=reply_at)

    def _respond(  # noqa: PLR0911 - one return per function code
        self, transmitter: SimulatedTransmitter, request: ModbusPDU, t: float
    ) -> ModbusPDU:
        function = request.function_code
        dev_id = transmitter.unit_id
        if function in (3, 4):
            if request.address + request.count > _REGISTER_SPACE:
                return ExceptionResponse(function, _ILLEGAL_ADDRESS, device_id=dev_id)
            transmitter.refresh(t)
            store = transmitter.holding if function == 3 else transmitter.inputs
            registers = [
                store.get(address, 0)
                for address in range(request.address, request.address + request.count)
            ]
            response_class = (
                ReadHoldingRegistersResponse if function == 3 else ReadInputRegistersResponse
            )
            return response_class(registers=registers, dev_id=dev_id)
        if function == 6:
            if request.address >= _REGISTER_SPACE:
                return ExceptionResponse(function, _ILLEGAL_ADDRESS, device_id=dev_id)
            transmitter.write(request.address, request.registers[0], t)
            return WriteSingleRegisterResponse(
                address=request.address, registers=list(request.registers), dev_id=dev_id
            )
        if function == 16:
            if request.address + request.count > _REGISTER_SPACE:
                return ExceptionResponse(function, _ILLEGAL_ADDRESS, device_id=dev_id)
            for index, value in enumerate(request.registers):
                transmitter.write(request.address + index, value, t)
            return WriteMultipleRegistersResponse(
                address=request.address, count=request.count, dev_id=dev_id
            )
        return ExceptionResponse(function, _ILLEGAL_FUNCTION, device_id=dev_id)
