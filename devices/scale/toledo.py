"""``toledo.continuous``: a weighing indicator streaming the Toledo continuous output format.

The driver kit's worked example (docs/drivers.md, "Add a driver"): the pure protocol lives in
:mod:`devices.scale.toledo_protocol`, this module does the I/O only. One indicator is one
channel on one serial port (a device path or a pyserial URL such as ``socket://host:port``),
read through :class:`~devices.scale.serial_link.SerialLink` from the event loop.

Each frame becomes one :class:`~gateway.drivers.contracts.WeightSample` in grams, with the
indicator's motion flag as ``stable``; out of range is OVERLOAD/UNDERLOAD, a unit this driver
does not read or an absurd weight ERROR, all without weights. Garbage on the line is skipped
and counted (``status_detail``). No valid frame for ``no_data_timeout_s``, or a port error,
raises DriverUnavailableError and the supervisor reopens the port. Zero and tare send the
indicator's one-letter commands (``Z``, ``T``), which continuous mode does not acknowledge.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from devices.kit.plugin import driver_plugin
from devices.scale.serial_link import SerialLink
from devices.scale.toledo_protocol import FrameSplitter, ToledoFrame, sample_fields
from devices.scale.units import is_plausible
from gateway.drivers.contracts import (
    DeviceFamily,
    DriverContext,
    Reading,
    ScaleStatus,
    WeightSample,
)
from gateway.errors import DriverConfigError, DriverUnavailableError

__all__ = ["PLUGIN", "ToledoOptions", "ToledoScale"]

_MAX_QUEUED_FRAMES = 64  # a slow consumer gets the newest weights, not a backlog


class ToledoOptions(BaseModel):
    """Options of ``toledo.continuous``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: str = Field(
        min_length=1, description="Serial device path or pyserial URL (socket://host:port)."
    )
    channel: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", description="Channel name."
    )
    baudrate: int = Field(9600, ge=300, le=4_000_000, description="Line speed, bits/s.")
    bytesize: Literal[7, 8] = Field(7, description="Data bits (the format is 7-bit ASCII).")
    parity: Literal["N", "E", "O"] = Field("E", description="Parity: N, E or O.")
    stopbits: Literal[1, 2] = Field(1, description="Stop bits.")
    checksum: bool = Field(True, description="Frames end with a checksum after the CR.")
    tare_field: bool = Field(True, description="Frames carry the tare (False: short format).")
    zero_command: str = Field("Z", max_length=16, description="Sent to zero; '' disables.")
    tare_command: str = Field("T", max_length=16, description="Sent to tare; '' disables.")
    no_data_timeout_s: float = Field(
        3.0, gt=0, le=3600, description="No valid frame this long: reopen the port."
    )
    max_grams: float = Field(
        500_000.0, gt=0, le=1e9, description="Weights beyond ± this are faults, not stock."
    )


class ToledoScale:
    """A :class:`~gateway.drivers.contracts.ScaleDriver` for one Toledo-continuous indicator."""

    def __init__(self, context: DriverContext, options: ToledoOptions) -> None:
        self._context = context
        self._options = options
        self._splitter = FrameSplitter(
            tare_field=options.tare_field, with_checksum=options.checksum
        )
        self._frames: collections.deque[ToledoFrame] = collections.deque(maxlen=_MAX_QUEUED_FRAMES)
        self._arrived = asyncio.Event()
        self._error: Exception | None = None
        self._link: SerialLink | None = None
        self.implausible = 0

    # --- the contract ---------------------------------------------------------------------

    @property
    def channels(self) -> tuple[str, ...]:
        return (self._options.channel,)

    @property
    def status_detail(self) -> str:
        splitter = self._splitter
        return (
            f"{splitter.frames} frames, {splitter.rejected} rejected, "
            f"{splitter.noise} noise bytes, {self.implausible} implausible"
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
        self._splitter.reset()  # whatever arrived before is from before we listened

    async def readings(self) -> AsyncIterator[Reading]:
        loop = asyncio.get_running_loop()
        last_valid = loop.time()
        while True:
            frame = await self._next_frame(last_valid + self._options.no_data_timeout_s)
            last_valid = loop.time()
            yield self._sample(frame)

    async def zero(self, channel: str) -> None:
        self._command(channel, "zero", self._options.zero_command)

    async def tare(self, channel: str) -> None:
        self._command(channel, "tare", self._options.tare_command)

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    # --- plumbing -------------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        frames = self._splitter.feed(data)
        if frames:
            self._frames.extend(frames)
            self._arrived.set()

    def _on_error(self, error: Exception) -> None:
        self._error = error
        self._arrived.set()

    async def _next_frame(self, deadline: float) -> ToledoFrame:
        """The next frame; DriverUnavailableError when the port fails or none comes in time."""
        try:
            async with asyncio.timeout_at(deadline):
                while not self._frames:
                    self._raise_if_failed()
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            self._raise_if_failed()
            raise DriverUnavailableError(
                f"no valid frame from {self._options.port} for "
                f"{self._options.no_data_timeout_s:g} s (cable, line settings or format?)",
                driver=self._context.name,
            ) from None
        return self._frames.popleft()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise DriverUnavailableError(
                f"serial port {self._options.port} failed: {self._error}",
                driver=self._context.name,
            ) from self._error

    def _command(self, channel: str, kind: str, command: str) -> None:
        if channel != self._options.channel:
            raise DriverConfigError(
                f"unknown channel {channel!r}; channel: {self._options.channel}",
                driver=self._context.name,
            )
        if not command:
            raise DriverConfigError(
                f"{kind} is disabled ({kind}_command is empty)", driver=self._context.name
            )
        link = self._link
        if link is None:
            raise DriverUnavailableError("the port is not open", driver=self._context.name)
        link.write(command.encode("ascii", errors="replace"))

    def _sample(self, frame: ToledoFrame) -> WeightSample:
        status, gross, net = sample_fields(frame)
        limit = self._options.max_grams
        if not (is_plausible(gross, limit) and is_plausible(net, limit)):
            self.implausible += 1
            status, gross, net = ScaleStatus.ERROR, None, None
        clock = self._context.clock
        return WeightSample(
            channel=self._options.channel,
            gross_grams=gross,
            net_grams=net,
            stable=frame.stable,
            status=status,
            monotonic=clock.monotonic(),
            observed_at=clock.utc_now(),
        )


PLUGIN = driver_plugin(
    ToledoScale,
    family=DeviceFamily.SCALE,
    options=ToledoOptions,
    description="weighing indicator streaming the Toledo continuous output format",
)
