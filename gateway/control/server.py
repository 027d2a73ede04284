"""The daemon side of the control socket: registered commands answered over a unix socket.

The socket is created with mode 0660 (umask set before bind, so there is never a window where
it is world-accessible). A stale socket left by a dead daemon is replaced; a live daemon on the
same path is never displaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.control.protocol import (
    MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    ErrorCode,
    RequestError,
    decode_request,
    encode,
    error_response,
)
from gateway.errors import ControlError

__all__ = ["ControlServer", "Handler", "InvalidArgsError"]

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[Mapping[str, Any]], Awaitable[Any] | AsyncIterator[Any]]


class InvalidArgsError(ControlError):
    """Raised by a handler for bad arguments; answered as ``invalid_args``."""


class ControlServer:
    def __init__(self, socket_path: Path, *, handlers: Mapping[str, Handler] | None = None) -> None:
        self.socket_path = Path(socket_path)
        self._handlers: dict[str, Handler] = dict(handlers or {})

    def register(self, name: str, handler: Handler) -> None:
        self._handlers[name] = handler

    async def serve(self) -> None:
        """Listen until cancelled; removes the socket file on exit."""
        await self._claim_path()
        old_umask = os.umask(0o117)  # socket file born 0660
        try:
            server = await asyncio.start_unix_server(
                self._serve_client, path=str(self.socket_path), limit=MAX_LINE_BYTES
            )
        except OSError as exc:
            raise ControlError(f"cannot listen on {self.socket_path}: {exc}") from exc
        finally:
            os.umask(old_umask)
        self.socket_path.chmod(0o660)
        _LOGGER.debug("control socket listening on %s", self.socket_path)
        try:
            async with server:
                await asyncio.Event().wait()  # until cancelled
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()

    async def _claim_path(self) -> None:
        path = self.socket_path
        if not path.parent.exists():
            path.parent.mkdir(mode=0o750, parents=True)
        if not path.exists() and not path.is_symlink():
            return
        if await _someone_listens(path):
            raise ControlError(f"another storegw daemon is already serving {path}")
        _LOGGER.info("removing stale control socket %s", path)
        path.unlink()

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    await self._send(
                        writer, error_response(None, ErrorCode.BAD_REQUEST, "line too long")
                    )
                    return
                await self._answer(line, writer)
        except (ConnectionError, BrokenPipeError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await writer.wait_closed()

    async def _answer(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            request = decode_request(line)
        except RequestError as exc:
            await self._send(writer, error_response(exc.request_id, exc.code, str(exc)))
            return
        handler = self._handlers.get(request.cmd)
        if handler is None:
            known = ", ".join(sorted(self._handlers))
            await self._send(
                writer,
                error_response(
                    request.id,
                    ErrorCode.UNKNOWN_COMMAND,
                    f"unknown command {request.cmd!r}; known: {known}",
                ),
            )
            return
        base = {"v": PROTOCOL_VERSION, "id": request.id, "ok": True}
        try:
            outcome = handler(request.args)
            if inspect.isasyncgen(outcome) or isinstance(outcome, AsyncIterator):
                async for event in outcome:
                    await self._send(writer, {**base, "event": event})
                await self._send(writer, {**base, "end": True})
            else:
                result = await outcome
                await self._send(writer, {**base, "result": result})
        except InvalidArgsError as exc:
            await self._send(writer, error_response(request.id, ErrorCode.INVALID_ARGS, str(exc)))
        except (ConnectionError, BrokenPipeError):
            raise
        except Exception as exc:
            _LOGGER.exception("control command %r failed", request.cmd)
            await self._send(
                writer,
                error_response(request.id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"),
            )

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        writer.write(encode(message))
        await writer.drain()


async def _someone_listens(path: Path) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
