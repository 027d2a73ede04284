"""A pyserial port driven by the event loop: a device path or any pyserial URL.

The port is opened in a short-lived thread (a ``socket://`` URL connects, which may block),
then read without blocking from the loop's reader callback on its file descriptor; writes are
small commands and go straight out. pyserial's errors are translated here, where they enter:
a port that cannot be opened or fails later is :class:`DriverUnavailableError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import termios
import threading
from collections.abc import Callable

import serial

from gateway.errors import DriverUnavailableError

__all__ = ["SerialLink"]

_SETTLE_S = 2.0  # a device path opens at once, a socket:// URL within its connect time


class SerialLink:
    """An open serial port delivering bytes to ``on_data`` and its failure to ``on_error``."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int,
        bytesize: int,
        parity: str,
        stopbits: int,
        on_data: Callable[[bytes], None],
        on_error: Callable[[Exception], None],
        driver: str | None = None,
    ) -> None:
        self._url = url
        self._baudrate = baudrate
        self._bytesize = bytesize
        self._parity = parity
        self._stopbits = stopbits
        self._on_data = on_data
        self._on_error = on_error
        self._driver = driver
        self._port: serial.SerialBase | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        result: asyncio.Future[serial.SerialBase] = loop.create_future()
        settled: asyncio.Future[None] = loop.create_future()  # the thread's port is handled

        def deliver(port: serial.SerialBase | None, error: BaseException | None) -> None:
            if result.cancelled():
                if port is not None:
                    port.close()
            elif error is not None:
                result.set_exception(error)
            else:
                result.set_result(port)  # type: ignore[arg-type]
            settled.set_result(None)

        def work() -> None:
            port: serial.SerialBase | None = None
            error: BaseException | None = None
            try:
                port = serial.serial_for_url(
                    self._url,
                    baudrate=self._baudrate,
                    bytesize=self._bytesize,
                    parity=self._parity,
                    stopbits=self._stopbits,
                    timeout=0,
                    write_timeout=2.0,
                    exclusive=True,
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the loop as it is
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(deliver, port, error)

        threading.Thread(target=work, name=f"serial-open[{self._url}]", daemon=True).start()
        try:
            port = await result
        except asyncio.CancelledError:
            # The thread opens the port anyway: wait (briefly) until it is closed again, so a
            # cancelled open() leaves the device free for the next driver, as a finished one.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_SETTLE_S):
                    await asyncio.shield(settled)
            raise
        # termios.error is no OSError: a line discipline refusing the settings (seen on ptys
        # reopened with 7 data bits) must not escape as an unexpected exception.
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            raise DriverUnavailableError(
                f"cannot open {self._url}: {exc}", driver=self._driver
            ) from exc
        self._port = port
        reset = getattr(port, "reset_input_buffer", None)  # stale bytes from before we opened
        if reset is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                reset()
        loop.add_reader(port.fileno(), self._readable)

    def _readable(self) -> None:
        port = self._port
        if port is None:
            return
        try:
            data = port.read(4096)
        except (serial.SerialException, OSError) as exc:
            self._detach()
            self._on_error(exc)
            return
        if data:
            self._on_data(data)

    def write(self, data: bytes) -> None:
        port = self._port
        if port is None:
            raise DriverUnavailableError(f"{self._url} is not open", driver=self._driver)
        try:
            port.write(data)
        except (serial.SerialException, OSError) as exc:
            self._detach()
            raise DriverUnavailableError(
                f"writing to {self._url} failed: {exc}", driver=self._driver
            ) from exc

    def _detach(self) -> None:
        port, self._port = self._port, None
        if port is None:
            return
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(port.fileno())
        with contextlib.suppress(serial.SerialException, OSError):
            port.close()

    def close(self) -> None:
        self._detach()
