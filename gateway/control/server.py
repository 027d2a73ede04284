"""The daemon side of the control socket: registered command handlers answered over a unix socket.

Permissions: the socket file is born with mode ``0660`` minus the umask (the mode is set on the
socket before ``bind``, so it is never world-accessible, not even for an instant) and then set to
exactly ``0660``; a missing parent directory is created ``0750``.

Ownership of the path: a socket file left by a dead daemon (nothing accepts on it) is replaced;
a live daemon on the path (named by its pid), a path that is not a socket at all, a path too
long for a unix socket or a directory that cannot hold it make ``listen()`` refuse with a
:class:`~gateway.errors.ControlError`. The daemon calls ``listen()`` during start-up, before it
reports READY, so such a problem stops the start instead of failing later. On exit the file is
removed if it is still ours.

Every connection is a named task in the server's own ``TaskGroup``; cancelling ``serve()``
closes the listener and every connection, and no task outlives it. A handler's exception is
answered ``internal`` (and logged with its traceback); it never stops the server.

At most ``max_connections`` connections are served at once (each holds a file descriptor);
a client beyond that is answered ``busy`` and closed, and the start of such an episode is
logged once.

Streaming: a handler that returns (or is) an async iterator streams its items as ``event``
lines, then ``end``. A stream owns its connection while it runs: the client stops it by closing
the connection, and anything the client sends meanwhile cancels the stream and closes the
connection with a ``bad_request``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeAlias

from gateway.control.protocol import (
    MAX_LINE_BYTES,
    ErrorCode,
    decode_request,
    encode,
    end_message,
    error_message,
    event_message,
    result_message,
)
from gateway.errors import ControlError, ControlProtocolError, InvalidArgsError, RequestError

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "SUN_PATH_MAX",
    "ControlServer",
    "Handler",
]

_LOGGER = logging.getLogger(__name__)

#: ``async def handler(args) -> JSON-ready value``, or an async generator for a streaming
#: command (a coroutine may also return an async iterator, to validate ``args`` up front).
#: It reads ``args`` with :mod:`gateway.control.args`, which raises InvalidArgsError.
Handler: TypeAlias = Callable[[Mapping[str, Any]], Awaitable[object] | AsyncIterator[object]]

_SOCKET_MODE = 0o660
_DIRECTORY_MODE = 0o750
#: The longest path a unix socket holds: sizeof(sockaddr_un.sun_path) - 1 on Linux.
SUN_PATH_MAX = 107
_PROBE_TIMEOUT_S = 1.0
_BACKLOG = 64
#: Connections served at once unless the daemon is configured otherwise ([control]).
DEFAULT_MAX_CONNECTIONS = 32
# A refused client gets this long to send its request before it is answered ``busy``:
# answering before it has written would reset its connection under its write.
_REFUSAL_READ_S = 1.0


class ControlServer:
    """Answers the CLI on ``socket_path``. Register handlers, then run ``serve()`` as a task."""

    def __init__(
        self,
        socket_path: Path,
        *,
        handlers: Mapping[str, Handler] | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.socket_path = Path(socket_path)
        self.max_connections = max_connections
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._connections = 0  # accepted so far: names the connection tasks
        self._active = 0
        self._refusing = 0
        self._at_limit = False
        self._listening: tuple[socket.socket, tuple[int, int]] | None = None

    @property
    def active_connections(self) -> int:
        """Connections being served now (refused ones not counted)."""
        return self._active

    @property
    def accepted(self) -> int:
        """Connections accepted since the start, refused ones included."""
        return self._connections

    def register(self, name: str, handler: Handler) -> None:
        """Add a command; registering a name twice is a bug."""
        if name in self._handlers:
            raise ValueError(f"control command {name!r} is already registered")
        self._handlers[name] = handler

    async def listen(self) -> None:
        """Claim the path and bind the socket; ControlError if the path is taken (by a live
        daemon, or by something that is not a socket), too long, or cannot be bound. Clients
        connecting before :meth:`serve` runs wait in the backlog. Idempotent."""
        if self._listening is None:
            await self._claim_path()
            self._listening = self._bind()

    def close(self) -> None:
        """Give the socket and its file up if :meth:`listen` ran but :meth:`serve` did not
        (start-up failed in between). Idempotent; :meth:`serve` does this itself."""
        listening, self._listening = self._listening, None
        if listening is not None:
            sock, identity = listening
            sock.close()
            self._remove_socket_file(identity)

    async def serve(self) -> None:
        """Serve until cancelled (listening first if :meth:`listen` has not run)."""
        await self.listen()
        assert self._listening is not None
        sock, identity = self._listening
        try:
            async with asyncio.TaskGroup() as connections:
                try:
                    server = await asyncio.start_unix_server(
                        partial(self._accept, connections), sock=sock, limit=MAX_LINE_BYTES
                    )
                except BaseException:
                    sock.close()
                    raise
                _LOGGER.info("control socket listening on %s", self.socket_path)
                try:
                    await asyncio.get_running_loop().create_future()  # until cancelled
                finally:
                    server.close()  # stop accepting; the group then cancels the connections
        finally:
            self._listening = None
            sock.close()
            self._remove_socket_file(identity)

    async def _claim_path(self) -> None:
        path = self.socket_path
        if len(os.fsencode(path)) > SUN_PATH_MAX:
            raise ControlError(
                f"control socket path {path} is longer than {SUN_PATH_MAX} bytes "
                "(the unix socket limit); choose a shorter [control] socket"
            )
        if not path.parent.exists():
            try:
                path.parent.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
            except OSError as exc:
                raise ControlError(
                    f"cannot create the directory {path.parent} for the control socket: "
                    f"{exc.strerror or exc}"
                ) from exc
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ControlError(f"cannot inspect {path}: {exc.strerror or exc}") from exc
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"{path} exists and is not a socket; refusing to replace it")
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(path)), _PROBE_TIMEOUT_S
            )
        except (ConnectionRefusedError, FileNotFoundError):
            _LOGGER.warning("replacing stale control socket %s left by a dead daemon", path)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise ControlError(
                    f"cannot replace the stale control socket {path}: {exc.strerror or exc}"
                ) from exc
            return
        except (OSError, TimeoutError) as exc:
            # Busy, wedged or not ours to probe: never delete what might be a live daemon's.
            raise ControlError(
                f"cannot tell whether a daemon serves {path} ({exc!r}); refusing to replace it"
            ) from exc
        holder = _peer_pid(writer)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        who = "another storegw daemon" + (f" (pid {holder})" if holder else "")
        raise ControlError(
            f"{who} is already serving {path}; stop it, or give this one another [control] socket"
        )

    def _bind(self) -> tuple[socket.socket, tuple[int, int]]:
        path = self.socket_path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        bound = False
        try:
            # Linux creates the file with the socket inode's mode minus the umask: set it first,
            # so there is no window where the file is wider than 0660 (and no process-wide umask
            # juggling that other threads could observe).
            os.fchmod(sock.fileno(), _SOCKET_MODE)
            sock.bind(str(path))
            bound = True
            path.chmod(_SOCKET_MODE)  # widen to group-writable under a strict UMask=0027
            info = path.lstat()
            # Listening at once: a second daemon's probe now finds this one alive (instead of
            # taking the file for a dead daemon's) even before serve() accepts.
            sock.listen(_BACKLOG)
        except OSError as exc:
            sock.close()
            if bound:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            raise ControlError(f"cannot listen on {path}: {exc.strerror or exc}") from exc
        return sock, (info.st_dev, info.st_ino)

    def _remove_socket_file(self, identity: tuple[int, int]) -> None:
        try:
            info = self.socket_path.lstat()
        except FileNotFoundError:
            return
        if (info.st_dev, info.st_ino) == identity:  # not a successor daemon's socket
            with contextlib.suppress(OSError):
                self.socket_path.unlink(missing_ok=True)

    def _accept(
        self,
        connections: asyncio.TaskGroup,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        # Counted here, not when the task starts: many may be accepted in one loop turn.
        self._connections += 1
        serving = self._active < self.max_connections
        if serving:
            self._active += 1
            coro = self._serve_connection(reader, writer)
            name = f"control.client[{self._connections}]"
        else:
            self._note_limit(reached=True)
            if self._refusing >= self.max_connections:  # a flood: not even an answer
                writer.close()
                return
            self._refusing += 1
            coro = self._refuse(reader, writer)
            name = f"control.refuse[{self._connections}]"
        try:
            connections.create_task(coro, name=name)
        except RuntimeError:  # the server is shutting down
            coro.close()
            writer.close()
            if serving:
                self._active -= 1
            else:
                self._refusing -= 1

    def _note_limit(self, *, reached: bool) -> None:
        """Log the start and the end of an episode at the connection limit, once each."""
        if reached and not self._at_limit:
            _LOGGER.warning(
                "control socket: %d connections open ([control] max_connections); "
                "refusing more until some close",
                self._active,
            )
        elif not reached and self._at_limit:
            _LOGGER.info("control socket: accepting connections again")
        self._at_limit = reached

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # Take the request off the wire first (closing on unread data resets the client's
            # connection, and it might lose the answer); its id is echoed when readable.
            request_id = None
            with contextlib.suppress(TimeoutError, ValueError, ConnectionError):
                async with asyncio.timeout(_REFUSAL_READ_S):
                    request_id = _request_id(await reader.readline())
            message = (
                f"the daemon already serves {self.max_connections} control connections "
                "([control] max_connections); try again when one has closed"
            )
            with contextlib.suppress(ConnectionError):
                await _send(writer, error_message(request_id, ErrorCode.BUSY, message))
        finally:
            self._refusing -= 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:  # counted in _accept
            keep_open = True
            while keep_open:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():  # a last request without its newline
                        await self._answer(exc.partial, reader, writer)
                    return
                except asyncio.LimitOverrunError:
                    message = f"request line longer than {MAX_LINE_BYTES} bytes"
                    await _send(writer, error_message(None, ErrorCode.BAD_REQUEST, message))
                    return
                if line.strip():
                    keep_open = await self._answer(line, reader, writer)
        except ConnectionError:
            return  # the client went away; nothing to answer
        except Exception:
            # A bug in the server itself: drop this connection, keep serving the others.
            _LOGGER.exception("control connection failed")
        finally:
            self._active -= 1
            if self._active < self.max_connections:
                self._note_limit(reached=False)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(
        self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request line; False when the connection must close afterwards."""
        try:
            request = decode_request(line)
        except RequestError as exc:
            await _send(writer, error_message(exc.request_id, ErrorCode(exc.code), str(exc)))
            return True
        handler = self._handlers.get(request.cmd)
        if handler is None:
            known = ", ".join(sorted(self._handlers)) or "none"
            message = f"unknown command {request.cmd!r}; known commands: {known}"
            await _send(writer, error_message(request.id, ErrorCode.UNKNOWN_COMMAND, message))
            return True
        try:
            outcome = handler(request.args)
            value = outcome if isinstance(outcome, AsyncIterator) else await outcome
            if isinstance(value, AsyncIterator):
                return await self._stream(request.id, request.cmd, value, reader, writer)
            reply = encode(result_message(request.id, value))
        except Exception as exc:  # noqa: BLE001 - answered and logged by _failure
            reply = encode(_failure(request.id, request.cmd, exc))
        writer.write(reply)
        await writer.drain()
        return True

    async def _stream(
        self,
        request_id: int,
        cmd: str,
        events: AsyncIterator[object],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        async with asyncio.TaskGroup() as group:
            pump = group.create_task(
                _pump(request_id, cmd, events, writer), name=f"control.stream[{cmd}]"
            )
            watch = group.create_task(_watch_client(reader), name=f"control.stream[{cmd}].client")
            pump.add_done_callback(lambda _: watch.cancel())
            watch.add_done_callback(lambda _: pump.cancel())
        if watch.cancelled():
            return True  # the stream ended; the connection carries on
        if watch.result():
            message = f"input while stream {request_id} was open; the stream was cancelled"
            with contextlib.suppress(ConnectionError):
                await _send(writer, error_message(None, ErrorCode.BAD_REQUEST, message))
        return False


async def _watch_client(reader: asyncio.StreamReader) -> bytes:
    """What the client sends while its stream runs: a byte, or b"" once it has gone (closed
    or reset: a ``--follow`` interrupted, a client killed — not a failure of the server)."""
    try:
        return await reader.read(1)
    except ConnectionError:
        return b""


def _peer_pid(writer: asyncio.StreamWriter) -> int | None:
    """The pid of the process listening on the other end of a unix socket (Linux)."""
    sock = writer.get_extra_info("socket")
    peercred = getattr(socket, "SO_PEERCRED", None)
    if sock is None or peercred is None:
        return None
    try:
        pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, peercred, 12))
    except OSError:
        return None
    return pid or None


def _request_id(line: bytes) -> int | None:
    try:
        return decode_request(line).id
    except RequestError as exc:
        return exc.request_id


async def _pump(
    request_id: int, cmd: str, events: AsyncIterator[object], writer: asyncio.StreamWriter
) -> None:
    """Send a stream's events then ``end``; a failure ends it with an error line instead."""
    try:
        while True:
            try:
                line = encode(event_message(request_id, await anext(events)))
            except StopAsyncIteration:
                line = encode(end_message(request_id))
                break
            except Exception as exc:  # noqa: BLE001 - answered and logged by _failure
                line = encode(_failure(request_id, cmd, exc))
                break
            writer.write(line)
            await writer.drain()
        writer.write(line)
        await writer.drain()
    except ConnectionError:
        return  # the client went away
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def _failure(request_id: int, cmd: str, exc: Exception) -> Mapping[str, object]:
    if isinstance(exc, InvalidArgsError):
        return error_message(request_id, ErrorCode.INVALID_ARGS, str(exc))
    if isinstance(exc, ControlProtocolError):  # the handler's value is not JSON
        _LOGGER.error("control command %r returned a value JSON cannot carry: %s", cmd, exc)
    else:
        _LOGGER.error("control command %r failed", cmd, exc_info=exc)
    return error_message(request_id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")


async def _send(writer: asyncio.StreamWriter, message: Mapping[str, object]) -> None:
    writer.write(encode(message))
    await writer.drain()
