"""The CLI side of the control socket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from gateway.control.protocol import MAX_LINE_BYTES, PROTOCOL_VERSION, decode_response, encode
from gateway.errors import ControlError, ControlProtocolError, DaemonNotRunningError

__all__ = ["ControlClient", "DaemonError"]


class DaemonError(ControlError):
    """The daemon answered with an error."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class ControlClient:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = Path(socket_path)
        self._ids = itertools.count(1)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_unix_connection(str(self.socket_path), limit=MAX_LINE_BYTES)
        except FileNotFoundError:
            raise DaemonNotRunningError(self.socket_path, "no such socket") from None
        except ConnectionRefusedError:
            raise DaemonNotRunningError(self.socket_path, "connection refused") from None
        except PermissionError:
            raise ControlError(
                f"permission denied on {self.socket_path}: run as root or a member of the "
                "storegw group"
            ) from None
        except OSError as exc:
            raise DaemonNotRunningError(self.socket_path, str(exc)) from None

    async def request(
        self, cmd: str, args: Mapping[str, Any] | None = None, *, within_s: float = 10.0
    ) -> Any:
        """Send one command and return its result; DaemonError if the daemon refused it."""
        async with asyncio.timeout(within_s):
            reader, writer = await self._connect()
            try:
                request_id = next(self._ids)
                writer.write(encode(_request(request_id, cmd, args)))
                await writer.drain()
                line = await reader.readline()
                if not line:
                    raise ControlProtocolError("the daemon closed the connection")
                return _result(decode_response(line))
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def stream(self, cmd: str, args: Mapping[str, Any] | None = None) -> AsyncIterator[Any]:
        """Send a streaming command and yield its events until the daemon ends the stream."""
        reader, writer = await self._connect()
        try:
            writer.write(encode(_request(next(self._ids), cmd, args)))
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    raise ControlProtocolError("the daemon closed the stream")
                message = decode_response(line)
                if message.get("end"):
                    return
                if not message.get("ok"):
                    _result(message)
                yield message.get("event")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def request_sync(self, cmd: str, args: Mapping[str, Any] | None = None) -> Any:
        return asyncio.run(self.request(cmd, args))


def _request(request_id: int, cmd: str, args: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": request_id, "cmd": cmd, "args": dict(args or {})}


def _result(message: dict[str, Any]) -> Any:
    if message.get("ok"):
        return message.get("result")
    error = message.get("error") or {}
    raise DaemonError(str(error.get("code", "unknown")), str(error.get("message", "")))
