"""A simulated indicator streaming the Toledo continuous format on a pty (or ``socket://``).

It weighs what its :class:`~devices.simulated.timeline.WeightTimeline` puts on the platform,
minus its own zero, in ``unit`` with ``decimals``, and streams a frame
(:func:`~devices.scale.toledo_protocol.encode_frame`) ``stream_rate_hz`` times a second: gross
until tared, net after. Above ``capacity`` (or below zero by a fifth of it) the frame says out
of range. It obeys ``Z`` (zero), ``T`` (tare) and ``C`` (clear the tare), each one character,
optionally followed by CR/LF. Every byte goes out at the line's baud rate (``serial_line``).

Fault hooks for tests: ``mute`` stops it talking, :meth:`inject_noise` puts raw bytes on the
line, ``parity`` sets bit 7 as a 7E1 device seen on an 8N1 line would, and :meth:`unplug` /
:meth:`replug` pull and reinsert the cable.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType
from typing import Literal

from devices.scale.toledo_protocol import encode_frame
from devices.scale.units import WeightUnit, to_grams
from devices.simulated.serial_line import LineTiming, PtyLine, SerialLine, SocketLine
from devices.simulated.timeline import WeightTimeline

__all__ = ["ToledoScaleSimulator"]


class ToledoScaleSimulator:
    """One indicator on a line; see the module docstring."""

    def __init__(
        self,
        *,
        timeline: WeightTimeline | None = None,
        line: Literal["pty", "socket"] = "pty",
        link: Path | None = None,
        baudrate: int = 9600,
        unit: WeightUnit = WeightUnit.KG,
        decimals: int = 2,
        capacity_grams: float = 30_000.0,
        stream_rate_hz: float = 10.0,
        tare_field: bool = True,
        with_checksum: bool = True,
        parity: bool = False,
    ) -> None:
        self.timeline = timeline or WeightTimeline.constant(0.0)
        self.unit = unit
        self.decimals = decimals
        self.capacity_grams = capacity_grams
        self.stream_rate_hz = stream_rate_hz
        self.tare_field = tare_field
        self.with_checksum = with_checksum
        self.parity = parity
        self.mute = False
        self.zero_grams = 0.0
        self.tare_grams = 0.0
        self.commands: list[str] = []  # every command the host sent
        timing = LineTiming(baudrate, bytesize=7, parity=True)
        self.line: SerialLine
        if line == "pty":
            if link is None:
                raise ValueError("a pty line needs `link`, the path the driver opens")
            self.line = PtyLine(link, timing, self._on_receive)
        else:
            self.line = SocketLine(timing, self._on_receive)
        self._started_at = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.line.url

    async def __aenter__(self) -> ToledoScaleSimulator:
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
        self._started_at = asyncio.get_running_loop().time()
        await self.line.plug()
        self._task = asyncio.create_task(self._stream(), name="toledo-scale-sim")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.line.unplug()

    async def unplug(self) -> None:
        await self.line.unplug()

    async def replug(self) -> None:
        await self.line.replug()

    def inject_noise(self, data: bytes) -> None:
        """Raw bytes on the line now (noise, a torn frame, a burst at the wrong baud rate)."""
        self.line.write_unpaced(data)

    def weights(self) -> tuple[float, float, bool]:
        """Gross and net grams on the platform now, and whether it is still."""
        load, stable = self.timeline.at(asyncio.get_running_loop().time() - self._started_at)
        gross = load - self.zero_grams
        return gross, gross - self.tare_grams, stable

    def frame(self) -> bytes:
        gross, net, stable = self.weights()
        per_unit = to_grams(1.0, self.unit)
        tared = self.tare_grams != 0.0
        shown = net if tared else gross
        return encode_frame(
            shown / per_unit,
            tare=self.tare_grams / per_unit,
            net=tared,
            stable=stable,
            out_of_range=gross > self.capacity_grams or gross < -0.2 * self.capacity_grams,
            unit=self.unit,
            decimals=self.decimals,
            tare_field=self.tare_field,
            with_checksum=self.with_checksum,
            parity=self.parity,
        )

    def _on_receive(self, data: bytes) -> None:
        for command in data.decode("ascii", errors="replace").upper():
            if command in "\r\n":
                continue
            self.commands.append(command)
            gross, _net, _stable = self.weights()
            if command == "Z":
                self.zero_grams += gross
                self.tare_grams = 0.0
            elif command == "T":
                self.tare_grams = max(0.0, gross)
            elif command == "C":
                self.tare_grams = 0.0

    async def _stream(self) -> None:
        period = 1.0 / self.stream_rate_hz
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            if not self.mute:
                await self.line.send(self.frame())
            next_at = max(next_at + period, loop.time())
            await asyncio.sleep(next_at - loop.time())
