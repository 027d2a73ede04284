"""A simulated ASCII scale head on a pty (or ``socket://``) line: MT-SICS, A&D stream, ST,GS.

The scale weighs what its :class:`~devices.simulated.timeline.WeightTimeline` puts on the
plate, minus its own zero and tare, in its current display unit (:attr:`AsciiScaleSimulator.unit`,
switchable at run time), and prints 9s with an ``OL`` header above ``capacity_grams``.

- ``mt-sics``: answers ``SI`` (``S S``/``S D``), ``S`` (``S S`` when stable, ``S I`` while in
  motion), ``Z`` (``Z A``), ``T`` (``T S <tare>``), anything else ``ES``; ``S +``/``S -`` out
  of range.
- ``ad-stream``: streams ``ST,+00123.45  g`` lines at ``stream_rate_hz``; accepts ``Z``/``T``.
- ``st-gs``: streams ``[addr]ST,GS,   123.4,g`` (or ``NT`` with ``net=True``).

Every byte goes out at the line's baud rate (see ``serial_line``). Fault hooks for tests:
:meth:`AsciiScaleSimulator.inject_noise` puts raw bytes on the line, ``mute`` stops it talking,
:meth:`~AsciiScaleSimulator.unplug` / :meth:`~AsciiScaleSimulator.replug` pull and reinsert
the cable.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType
from typing import Literal

from devices.scale.units import WeightUnit, to_grams
from devices.simulated.serial_line import LineTiming, PtyLine, SerialLine, SocketLine
from devices.simulated.timeline import WeightTimeline

__all__ = ["AsciiScaleSimulator"]

AsciiProtocol = Literal["mt-sics", "ad-stream", "st-gs"]

_UNIT_TEXT = {
    WeightUnit.G: "g",
    WeightUnit.KG: "kg",
    WeightUnit.LB: "lb",
    WeightUnit.OZ: "oz",
    WeightUnit.MG: "mg",
    WeightUnit.CT: "ct",
    WeightUnit.T: "t",
}


class AsciiScaleSimulator:
    """One ASCII scale on a line; see the module docstring."""

    def __init__(
        self,
        protocol: AsciiProtocol,
        *,
        timeline: WeightTimeline | None = None,
        line: Literal["pty", "socket"] = "pty",
        link: Path | None = None,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: bool = False,
        stopbits: int = 1,
        unit: WeightUnit = WeightUnit.G,
        decimals: int = 2,
        capacity_grams: float = 30_000.0,
        stream_rate_hz: float = 10.0,
        address: str | None = None,
        net: bool = False,
    ) -> None:
        self.protocol = protocol
        self.timeline = timeline or WeightTimeline.constant(0.0)
        self.unit = unit
        self.decimals = decimals
        self.capacity_grams = capacity_grams
        self.stream_rate_hz = stream_rate_hz
        self.address = address
        self.net = net
        self.mute = False
        self.zero_grams = 0.0
        self.tare_grams = 0.0
        self.commands: list[str] = []  # every line the host sent
        timing = LineTiming(baudrate, bytesize, parity, stopbits)
        self.line: SerialLine
        if line == "pty":
            if link is None:
                raise ValueError("a pty line needs `link`, the path the driver opens")
            self.line = PtyLine(link, timing, self._on_receive)
        else:
            self.line = SocketLine(timing, self._on_receive)
        self._inbox = b""
        self._started_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._requests: asyncio.Queue[str] = asyncio.Queue()

    @property
    def url(self) -> str:
        return self.line.url

    async def __aenter__(self) -> AsciiScaleSimulator:
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
        self._tasks.append(asyncio.create_task(self._answer(), name="ascii-scale-sim"))
        if self.protocol != "mt-sics":
            self._tasks.append(asyncio.create_task(self._stream(), name="ascii-scale-stream"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.line.unplug()

    async def unplug(self) -> None:
        await self.line.unplug()
        self._inbox = b""

    async def replug(self) -> None:
        await self.line.replug()

    def inject_noise(self, data: bytes) -> None:
        """Raw bytes on the line now (binary noise, a half line, a burst at the wrong baud)."""
        self.line.write_unpaced(data)

    async def send_line(self, text: str) -> None:
        """Any line, paced like the scale's own output (for malformed-line tests)."""
        await self.line.send(text.encode("ascii") + b"\r\n")

    # --- the scale ------------------------------------------------------------------------

    def weights(self) -> tuple[float, float, bool]:
        t = asyncio.get_running_loop().time() - self._started_at
        load, stable = self.timeline.at(t)
        gross = load - self.zero_grams
        return gross, gross - self.tare_grams, stable

    def _shown(self, grams: float) -> str:
        value = grams / to_grams(1.0, self.unit)
        return f"{value:.{self.decimals}f}"

    def _on_receive(self, data: bytes) -> None:
        self._inbox += data
        while b"\n" in self._inbox or b"\r" in self._inbox:
            cut = min(i for i in (self._inbox.find(b"\r"), self._inbox.find(b"\n")) if i >= 0)
            line, self._inbox = self._inbox[:cut], self._inbox[cut + 1 :]
            text = line.decode("ascii", errors="replace").strip()
            if text:
                self.commands.append(text)
                self._requests.put_nowait(text)

    async def _answer(self) -> None:
        while True:
            command = await self._requests.get()
            reply = self._execute(command)
            if reply is not None and not self.mute:
                await self.line.send(reply.encode("ascii") + b"\r\n")

    def _execute(self, command: str) -> str | None:  # noqa: PLR0911 - one reply per case
        gross, net, stable = self.weights()
        if command == "Z":
            self.zero_grams += gross
            self.tare_grams = 0.0
            return "Z A" if self.protocol == "mt-sics" else None
        if command == "T":
            self.tare_grams = gross
            if self.protocol != "mt-sics":
                return None
            return f"T S {self._shown(gross):>10} {_UNIT_TEXT[self.unit]}"
        if self.protocol != "mt-sics":
            return None
        if command not in {"S", "SI"}:
            return "ES"
        if gross > self.capacity_grams:
            return "S +"
        if gross < -0.2 * self.capacity_grams:
            return "S -"
        if command == "S" and not stable:
            return "S I"
        return f"S {'S' if stable else 'D'} {self._shown(net):>10} {_UNIT_TEXT[self.unit]}"

    async def _stream(self) -> None:
        period = 1.0 / self.stream_rate_hz
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            if not self.mute:
                await self.line.send(self._stream_line().encode("ascii") + b"\r\n")
            next_at = max(next_at + period, loop.time())
            await asyncio.sleep(next_at - loop.time())

    def _stream_line(self) -> str:
        gross, net, stable = self.weights()
        unit = _UNIT_TEXT[self.unit]
        if self.protocol == "ad-stream":
            if gross > self.capacity_grams:
                return f"OL,+{'9' * (8 - self.decimals)}.{'9' * self.decimals}{unit:>3}"
            value = self._shown(net)
            sign = "-" if value.startswith("-") else "+"
            digits = value.lstrip("-").rjust(8, "0")
            return f"{'ST' if stable else 'US'},{sign}{digits}{unit:>3}"
        prefix = self.address or ""
        kind = "NT" if self.net else "GS"
        if gross > self.capacity_grams:
            return f"{prefix}OL,{kind},{'9' * 7}.9,{unit}"
        value = self._shown(net if self.net else gross)
        return f"{prefix}{'ST' if stable else 'US'},{kind},{value:>8},{unit}"
