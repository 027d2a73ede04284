"""``ascii.scale``: one scale head or indicator talking ASCII lines on a serial port.

Three protocols (``protocol``):

- ``mt-sics``: request/response. The driver sends ``SI`` (or ``S``) every ``poll_interval_s``
  and reads the reply; ``Z``/``T`` zero and tare and wait for the scale's acknowledgement.
  Error replies (``ES``, ``ET``, ``EL``, ``S I``) become ERROR samples, ``S +``/``S -``
  OVERLOAD/UNDERLOAD.
- ``ad-stream``: the scale streams lines by itself (A&D style ``ST,+00123.45  g``).
- ``st-gs``: indicators streaming ``[addr]ST,GS,value,unit``; with ``address`` set, lines from
  other indicators on a shared RS-485 line are ignored.

Parsing is tolerant (``devices.scale.ascii_protocol``): the partial first line after opening
is dropped, unit switches are followed (every sample is in grams), 9s overload lines are
OVERLOAD, and noise is skipped and counted (:attr:`AsciiScale.status_detail`), never raised.
Weights beyond ``max_grams`` are reported as ERROR without a weight, not as stock.

A port that fails, or no valid line for ``no_data_timeout_s``, raises DriverUnavailableError:
the supervisor reopens the port with backoff (the driver does not reconnect by itself).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.kit.plugin import driver_plugin
from devices.scale.ascii_protocol import (
    LineSplitter,
    ScaleLine,
    SicsReply,
    parse_ad_stream,
    parse_sics,
    parse_st_gs,
)
from devices.scale.serial_link import SerialLink
from devices.scale.units import is_plausible
from gateway.drivers.contracts import (
    DeviceFamily,
    DriverContext,
    Reading,
    ScaleStatus,
    WeightSample,
)
from gateway.errors import DriverConfigError, DriverUnavailableError

__all__ = ["PLUGIN", "AsciiScale", "AsciiScaleOptions"]

_LOGGER = logging.getLogger(__name__)

Protocol = Literal["mt-sics", "ad-stream", "st-gs"]

_DEFAULT_COMMANDS: dict[str, tuple[str | None, str | None]] = {
    "mt-sics": ("Z", "T"),
    "ad-stream": ("Z", "T"),
    "st-gs": (None, None),  # vendor specific: configure zero_command/tare_command
}
_MAX_QUEUED_LINES = 256


class AsciiScaleOptions(BaseModel):
    """Options of ``ascii.scale``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: str = Field(
        min_length=1, description="Serial device path or pyserial URL (socket://host:port)."
    )
    protocol: Protocol
    channel: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", description="Channel name."
    )
    baudrate: int = Field(9600, ge=300, le=4_000_000)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    address: str | None = Field(
        None, pattern=r"^\d{2}$", description="st-gs: only lines with this 2-digit prefix."
    )
    weigh_command: Literal["SI", "S"] = Field("SI", description="mt-sics: weight request.")
    poll_interval_s: float = Field(0.1, ge=0, le=60, description="mt-sics: between requests.")
    response_timeout_s: float = Field(1.0, gt=0, le=60, description="Reply timeout.")
    no_data_timeout_s: float = Field(
        5.0, gt=0, le=3600, description="No valid line this long: reopen the port."
    )
    zero_command: str | None = Field(None, max_length=16, description="Default per protocol.")
    tare_command: str | None = Field(None, max_length=16, description="Default per protocol.")
    max_grams: float = Field(
        500_000.0, gt=0, le=1e9, description="Weights beyond ± this are faults, not stock."
    )
    max_line_bytes: int = Field(128, ge=16, le=4096, description="Longer runs are noise.")

    @model_validator(mode="after")
    def _coherent(self) -> AsciiScaleOptions:
        if self.address is not None and self.protocol != "st-gs":
            raise ValueError("address applies to protocol 'st-gs' only")
        return self

    def command(self, kind: Literal["zero", "tare"]) -> str | None:
        configured = self.zero_command if kind == "zero" else self.tare_command
        if configured is not None:
            return configured or None
        zero, tare = _DEFAULT_COMMANDS[self.protocol]
        return zero if kind == "zero" else tare


class AsciiScale:
    """A :class:`~gateway.drivers.contracts.ScaleDriver` for one ASCII scale head."""

    def __init__(self, context: DriverContext, options: AsciiScaleOptions) -> None:
        self._context = context
        self._options = options
        self._splitter = LineSplitter(max_line=options.max_line_bytes, drop_first=True)
        self._lines: collections.deque[str] = collections.deque(maxlen=_MAX_QUEUED_LINES)
        self._arrived = asyncio.Event()
        self._error: Exception | None = None
        self._link: SerialLink | None = None
        self._transaction = asyncio.Lock()  # mt-sics: one request in flight
        self._parse: Callable[[str], ScaleLine | None] = {
            "ad-stream": parse_ad_stream,
            "st-gs": parse_st_gs,
            "mt-sics": lambda _line: None,
        }[options.protocol]
        self.noise_lines = 0  # lines that were not the protocol's
        self.other_address_lines = 0
        self.error_replies = 0
        self.implausible = 0

    @property
    def channels(self) -> tuple[str, ...]:
        return (self._options.channel,)

    @property
    def status_detail(self) -> str:
        return (
            f"{self._splitter.lines} lines, {self._splitter.dropped + self.noise_lines} noise, "
            f"{self.error_replies} error replies, {self.implausible} implausible"
            + (f", {self.other_address_lines} for other addresses" if self._options.address else "")
        )

    async def open(self) -> None:
        options = self._options
        link = SerialLink(
            options.port,
            baudrate=options.baudrate,
            bytesize=options.bytesize,
            parity=options.parity,
            stopbits=options.stopbits,
            on_data=self._on_data,
            on_error=self._on_error,
            driver=self._context.name,
        )
        await link.open()
        self._link = link
        # A request/response scale only talks when asked: nothing partial to drop.
        self._splitter.reset(drop_first=options.protocol != "mt-sics")

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    async def zero(self, channel: str) -> None:
        await self._command(channel, "zero")

    async def tare(self, channel: str) -> None:
        await self._command(channel, "tare")

    async def readings(self) -> AsyncIterator[Reading]:
        if self._options.protocol == "mt-sics":
            async for sample in self._poll_sics():
                yield sample
            return
        loop = asyncio.get_running_loop()
        last_valid = loop.time()
        while True:
            remaining = last_valid + self._options.no_data_timeout_s - loop.time()
            line = await self._next_line(remaining)
            if line is None:
                raise self._silent()
            parsed = self._parse(line)
            if parsed is None:
                self.noise_lines += 1
                continue
            if self._options.address is not None and parsed.address != self._options.address:
                self.other_address_lines += 1
                continue
            last_valid = loop.time()
            yield self._sample(parsed)

    # --- MT-SICS ----------------------------------------------------------------------------

    async def _poll_sics(self) -> AsyncIterator[WeightSample]:
        loop = asyncio.get_running_loop()
        last_valid = loop.time()
        command = self._options.weigh_command
        while True:
            async with self._transaction:
                reply = await self._request(command, {"S"})
            if reply is None:
                if loop.time() - last_valid >= self._options.no_data_timeout_s:
                    raise self._silent()
                yield self._sample(ScaleLine(ScaleStatus.ERROR, None))
                continue
            last_valid = loop.time()
            if reply.is_error or reply.line is None:
                self.error_replies += 1
                yield self._sample(ScaleLine(ScaleStatus.ERROR, None))
            else:
                if reply.line.status is ScaleStatus.ERROR:
                    self.error_replies += 1
                yield self._sample(reply.line)
            await asyncio.sleep(self._options.poll_interval_s)

    async def _request(self, command: str, answers: set[str]) -> SicsReply | None:
        """Send ``command``; the reply to it (or an error reply), None on timeout."""
        self._lines.clear()
        self._write(command)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._options.response_timeout_s
        while True:
            line = await self._next_line(deadline - loop.time())
            if line is None:
                return None
            reply = parse_sics(line)
            if reply is None:
                self.noise_lines += 1
                continue
            if reply.is_error or reply.command in answers:
                return reply
            # a late reply to an earlier request: not ours

    # --- commands -------------------------------------------------------------------------

    async def _command(self, channel: str, kind: Literal["zero", "tare"]) -> None:
        if channel != self._options.channel:
            raise DriverConfigError(
                f"unknown channel {channel!r}; channel: {self._options.channel}",
                driver=self._context.name,
            )
        command = self._options.command(kind)
        if command is None:
            raise DriverConfigError(
                f"no {kind} command for protocol {self._options.protocol}: set {kind}_command",
                driver=self._context.name,
            )
        if self._options.protocol != "mt-sics":
            self._write(command)  # streaming scales do not acknowledge
            return
        async with self._transaction:
            reply = await self._request(command, {command})
        if reply is None:
            raise DriverUnavailableError(
                f"no reply to {command!r} within {self._options.response_timeout_s:g} s",
                driver=self._context.name,
            )
        if reply.is_error or reply.status not in {"A", "S"}:
            reason = {
                "I": "not executable now (motion, or busy)",
                "+": "above the range allowed for it",
                "-": "below the range allowed for it",
            }.get(reply.status, f"error reply {reply.command} {reply.status}".strip())
            raise DriverUnavailableError(
                f"scale refused {kind}: {reason}", driver=self._context.name
            )
        _LOGGER.info("%s: %s done", self._context.name, kind)

    # --- plumbing -------------------------------------------------------------------------

    def _write(self, command: str) -> None:
        link = self._link
        if link is None:
            raise DriverUnavailableError("the port is not open", driver=self._context.name)
        link.write(command.encode("ascii") + b"\r\n")

    def _on_data(self, data: bytes) -> None:
        if self._options.bytesize == 7:
            data = bytes(byte & 0x7F for byte in data)
        lines = self._splitter.feed(data)
        if lines:
            self._lines.extend(lines)
            self._arrived.set()

    def _on_error(self, error: Exception) -> None:
        self._error = error
        self._arrived.set()

    async def _next_line(self, within_s: float) -> str | None:
        """The next clean line, None after ``within_s``; raises if the port failed."""
        try:
            async with asyncio.timeout(max(0.0, within_s)):
                while not self._lines:
                    self._raise_if_failed()
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            self._raise_if_failed()
            return None
        return self._lines.popleft()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise DriverUnavailableError(
                f"serial port {self._options.port} failed: {self._error}",
                driver=self._context.name,
            ) from self._error

    def _silent(self) -> DriverUnavailableError:
        return DriverUnavailableError(
            f"no valid line from {self._options.port} for "
            f"{self._options.no_data_timeout_s:g} s (cable, baud/parity, or protocol wrong?)",
            driver=self._context.name,
        )

    def _sample(self, line: ScaleLine) -> WeightSample:
        status, gross, net = line.status, line.gross_grams, line.net_grams
        limit = self._options.max_grams
        if not (is_plausible(gross, limit) and is_plausible(net, limit)):
            self.implausible += 1
            status, gross, net = ScaleStatus.ERROR, None, None
        clock = self._context.clock
        return WeightSample(
            channel=self._options.channel,
            gross_grams=gross,
            net_grams=net,
            stable=line.stable,
            status=status,
            monotonic=clock.monotonic(),
            observed_at=clock.utc_now(),
        )


PLUGIN = driver_plugin(
    AsciiScale,
    family=DeviceFamily.SCALE,
    options=AsciiScaleOptions,
    description="ASCII scale head on a serial line (MT-SICS, A&D stream, ST,GS indicators)",
)
