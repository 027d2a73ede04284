"""The device end of a simulated serial line: a pty pair or a TCP socket, paced at a baud rate.

A driver opens the line exactly as it would open real hardware:

- :class:`PtyLine`: a pseudo-terminal pair. The driver opens ``url``, a symlink to the pty's
  slave (like ``/dev/serial/by-id/...`` links to the current ``ttyUSBn``), so the path stays
  the same across :meth:`~PtyLine.unplug` / :meth:`~PtyLine.replug` while the pty behind it is
  new, as with a USB adapter pulled out and plugged back in;
- :class:`SocketLine`: a TCP server on loopback carrying the raw serial bytes (what serial
  device servers do); the driver opens ``socket://127.0.0.1:PORT`` through pyserial. Unplugging
  drops the connection and stops listening; replugging listens again on the same port.

Bytes the device sends take the time they take on the wire: :meth:`SerialLine.send` releases a
frame of N characters in slices so that it is complete only N * ``bits_per_char`` / baud
seconds after transmission started, and transmissions never overlap (``line_free_at``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LineTiming", "PtyLine", "SerialLine", "SocketLine"]

_SLICE_S = 0.002  # pacing granularity: bytes are released in slices of about this long


@dataclass(frozen=True, slots=True)
class LineTiming:
    """Character timing of a serial line: start bit, data bits, parity bit, stop bits."""

    baudrate: int
    bytesize: int = 8
    parity: bool = False
    stopbits: int = 1

    @property
    def bits_per_char(self) -> int:
        return 1 + self.bytesize + int(self.parity) + self.stopbits

    @property
    def char_s(self) -> float:
        return self.bits_per_char / self.baudrate

    def duration(self, chars: int) -> float:
        return chars * self.char_s


class SerialLine:
    """What both line kinds share: pacing, the receive callback, plug state."""

    def __init__(self, timing: LineTiming, on_receive: Callable[[bytes], None]) -> None:
        self.timing = timing
        self._on_receive = on_receive
        self.line_free_at = 0.0
        self.plugged = False

    @property
    def url(self) -> str:
        raise NotImplementedError

    def _write_now(self, data: bytes) -> None:
        raise NotImplementedError

    async def plug(self) -> None:
        raise NotImplementedError

    async def unplug(self) -> None:
        raise NotImplementedError

    async def replug(self) -> None:
        await self.plug()

    async def send(self, data: bytes, *, not_before: float = 0.0) -> float:
        """Transmit ``data`` at the line's pace, starting no earlier than ``not_before`` (loop
        time) nor before the previous transmission ended; returns the end time."""
        loop = asyncio.get_running_loop()
        if (wait := not_before - loop.time()) > 0:
            await asyncio.sleep(wait)  # the line is not reserved meanwhile: a late reply collides
        start = max(loop.time(), self.line_free_at)
        char_s = self.timing.char_s
        per_slice = max(1, int(_SLICE_S / char_s))
        end = start
        for offset in range(0, len(data), per_slice):
            chunk = data[offset : offset + per_slice]
            end = start + (offset + len(chunk)) * char_s
            self.line_free_at = end
            delay = end - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.plugged:
                self._write_now(chunk)
        return end

    def write_unpaced(self, data: bytes) -> None:
        """Bytes put on the line at once (noise bursts in tests)."""
        if self.plugged:
            self._write_now(data)

    def _received(self, data: bytes) -> None:
        self._on_receive(data)


class PtyLine(SerialLine):
    """A pty pair; the driver opens ``url`` (a symlink to the current slave)."""

    def __init__(self, link: Path, timing: LineTiming, on_receive: Callable[[bytes], None]) -> None:
        super().__init__(timing, on_receive)
        self.link = link
        self._master: int | None = None
        self._slave: int | None = None

    @property
    def url(self) -> str:
        return str(self.link)

    async def plug(self) -> None:
        if self.plugged:
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: a plain byte pipe like a UART
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        self.link.symlink_to(os.ttyname(slave))
        asyncio.get_running_loop().add_reader(master, self._readable)
        self.plugged = True

    async def unplug(self) -> None:
        if not self.plugged:
            return
        self.plugged = False
        master, slave = self._master, self._slave
        self._master = self._slave = None
        if master is not None:
            asyncio.get_running_loop().remove_reader(master)
            os.close(master)  # the driver's open slave now reads EIO: the cable is gone
        if slave is not None:
            os.close(slave)
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()

    def _readable(self) -> None:
        master = self._master
        if master is None:
            return
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: nobody has the slave open right now
            return
        if data:
            self._received(data)

    def _write_now(self, data: bytes) -> None:
        if self._master is None:
            return
        # A full pty buffer means nobody reads: a real line drops those bytes too.
        with contextlib.suppress(BlockingIOError, InterruptedError):
            os.write(self._master, data)


class _Connection(asyncio.Protocol):
    def __init__(self, line: SocketLine) -> None:
        self._line = line
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._line._connected(self)

    def data_received(self, data: bytes) -> None:
        self._line._received(data)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002
        self._line._disconnected(self)


class SocketLine(SerialLine):
    """A TCP server on loopback carrying raw serial bytes; one client at a time (the newest)."""

    def __init__(self, timing: LineTiming, on_receive: Callable[[bytes], None]) -> None:
        super().__init__(timing, on_receive)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._client: _Connection | None = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    async def plug(self) -> None:
        if self.plugged:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.plugged = True

    async def unplug(self) -> None:
        if not self.plugged:
            return
        self.plugged = False
        server, self._server = self._server, None
        client, self._client = self._client, None
        if client is not None and client.transport is not None:
            client.transport.abort()
        if server is not None:
            server.close()
            await server.wait_closed()

    def _connected(self, connection: _Connection) -> None:
        previous, self._client = self._client, connection
        if previous is not None and previous.transport is not None:
            previous.transport.abort()

    def _disconnected(self, connection: _Connection) -> None:
        if self._client is connection:
            self._client = None

    def _write_now(self, data: bytes) -> None:
        client = self._client
        if client is not None and client.transport is not None:
            client.transport.write(data)
