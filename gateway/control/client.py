"""The CLI side of the control socket: one connection per request or stream.

Errors (all in :mod:`gateway.errors`): :class:`~gateway.errors.DaemonNotRunningError` when
nothing listens on the path, :class:`~gateway.errors.DaemonError` (with the daemon's ``code``)
when the daemon refused or failed the command, :class:`~gateway.errors.ControlProtocolError`
for a reply this client cannot read, and :class:`~gateway.errors.ControlError` for a timeout or
a permission problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from gateway.control.protocol import (
    MAX_REPLY_BYTES,
    Reply,
    ReplyKind,
    decode_reply,
    encode_request,
)
from gateway.errors import ControlError, ControlProtocolError, DaemonError, DaemonNotRunningError

__all__ = ["ControlClient"]


class ControlClient:
    """Talks to the daemon listening on ``socket_path``."""

    def __init__(self, socket_path: Path | str) -> None:
        self.socket_path = Path(socket_path)
        self._ids = itertools.count(1)

    async def request(
        self,
        cmd: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the CLI's deadline, applied inside
    ) -> Any:
        """Run one command and return its result (connect, send and answer within ``timeout``)."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await self._connect()
                try:
                    request_id = next(self._ids)
                    writer.write(encode_request(request_id, cmd, args))
                    await writer.drain()
                    reply = await self._read(reader, request_id)
                finally:
                    await _close(writer)
        except TimeoutError:
            raise ControlError(
                f"the daemon on {self.socket_path} did not answer {cmd!r} within {timeout:g} s"
            ) from None
        if reply.kind is ReplyKind.RESULT:
            return reply.value
        raise ControlProtocolError(f"{cmd!r} is a streaming command: use stream()")

    async def stream(
        self,
        cmd: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - bounds connecting only
    ) -> AsyncIterator[Any]:
        """Yield a streaming command's events until the daemon ends the stream.

        ``timeout`` bounds connecting only; events may be as far apart as the source makes
        them. Leaving the loop early closes the connection, which stops the stream.
        """
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await self._connect()
        except TimeoutError:
            raise ControlError(
                f"cannot connect to the daemon on {self.socket_path} within {timeout:g} s"
            ) from None
        try:
            request_id = next(self._ids)
            writer.write(encode_request(request_id, cmd, args))
            await writer.drain()
            while True:
                reply = await self._read(reader, request_id)
                if reply.kind is ReplyKind.END:
                    return
                if reply.kind is ReplyKind.RESULT:
                    raise ControlProtocolError(f"{cmd!r} is not a streaming command: use request()")
                yield reply.value
        finally:
            await _close(writer)

    def request_sync(
        self, cmd: str, args: Mapping[str, Any] | None = None, *, timeout: float = 5.0
    ) -> Any:
        """``request()`` for synchronous callers (the CLI); not from inside an event loop."""
        return asyncio.run(self.request(cmd, args, timeout=timeout))

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        path = self.socket_path
        try:
            return await asyncio.open_unix_connection(str(path), limit=MAX_REPLY_BYTES)
        except FileNotFoundError:
            raise DaemonNotRunningError(path, "no such socket") from None
        except ConnectionRefusedError:
            raise DaemonNotRunningError(path, "connection refused") from None
        except PermissionError:
            raise ControlError(
                f"permission denied on {path}: run as root or as a member of the storegw group"
            ) from None
        except OSError as exc:
            raise DaemonNotRunningError(path, exc.strerror or str(exc)) from None

    async def _read(self, reader: asyncio.StreamReader, request_id: int) -> Reply:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise ControlProtocolError(
                f"the daemon on {self.socket_path} closed the connection without an answer"
            ) from None
        except asyncio.LimitOverrunError:
            raise ControlProtocolError(
                f"the daemon's reply is longer than {MAX_REPLY_BYTES} bytes"
            ) from None
        except ConnectionError as exc:
            raise ControlError(f"connection to {self.socket_path} lost: {exc}") from None
        reply = decode_reply(line)
        if reply.kind is ReplyKind.ERROR:
            assert reply.error is not None
            raise DaemonError(reply.error["code"], reply.error["message"])
        if reply.id != request_id:
            raise ControlProtocolError(f"reply for request {reply.id}, expected {request_id}")
        return reply


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
