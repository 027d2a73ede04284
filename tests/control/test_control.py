"""Control socket: protocol, permissions, stale sockets, streaming, garbage."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.control.client import ControlClient, DaemonError
from gateway.control.protocol import RequestError, decode_request
from gateway.control.server import ControlServer, InvalidArgsError
from gateway.errors import ControlError, DaemonNotRunningError
from tests.daemon import short_dir


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with short_dir() as path:
        yield path


async def _echo(args: Mapping[str, Any]) -> Any:
    return {"echo": dict(args)}


async def _boom(args: Mapping[str, Any]) -> Any:
    raise RuntimeError("handler bug")


async def _picky(args: Mapping[str, Any]) -> Any:
    raise InvalidArgsError("slot must be given")


async def _count(args: Mapping[str, Any]) -> AsyncIterator[Any]:
    for n in range(int(args.get("n", 3))):
        yield {"n": n}


class Running:
    def __init__(self, path: Path) -> None:
        self.server = ControlServer(
            path,
            handlers={"echo": _echo, "boom": _boom, "picky": _picky, "count": _count},
        )
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ControlServer:
        self.task = asyncio.create_task(self.server.serve(), name="control")
        for _ in range(500):  # until it answers (a stale file may be there before it binds)
            try:
                _, writer = await asyncio.open_unix_connection(str(self.server.socket_path))
            except OSError:
                await asyncio.sleep(0.01)
                continue
            writer.close()
            await writer.wait_closed()
            break
        return self.server

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def raw_exchange(path: Path, payload: bytes) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    lines = []
    while line := await reader.readline():
        lines.append(json.loads(line))
    writer.close()
    await writer.wait_closed()
    return lines


async def test_round_trip_and_socket_mode(sock_dir: Path) -> None:
    path = sock_dir / "run" / "control.sock"
    async with Running(path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
        result = await ControlClient(path).request("echo", {"a": 1})
        assert result == {"echo": {"a": 1}}
    assert not path.exists()


async def test_errors_are_answered_and_the_server_keeps_serving(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    client = ControlClient(path)
    async with Running(path):
        with pytest.raises(DaemonError, match=r"unknown_command.*known: boom, count, echo"):
            await client.request("nope")
        with pytest.raises(DaemonError, match="internal: RuntimeError: handler bug"):
            await client.request("boom")
        with pytest.raises(DaemonError, match="invalid_args: slot must be given"):
            await client.request("picky")
        answers = await raw_exchange(
            path,
            b"garbage\n"
            b'{"v": 2, "id": 5, "cmd": "echo"}\n'
            b'{"v": 1, "id": "x", "cmd": "echo"}\n'
            b'{"v": 1, "id": 6, "cmd": "echo", "args": []}\n'
            b'{"v": 1, "id": 7, "cmd": "echo"}\n',
        )
        codes = [a.get("error", {}).get("code") for a in answers]
        assert codes == [
            "bad_request",
            "unsupported_version",
            "bad_request",
            "bad_request",
            None,
        ]
        assert answers[1]["id"] == 5
        assert answers[4] == {"v": 1, "id": 7, "ok": True, "result": {"echo": {}}}
        assert await client.request("echo") == {"echo": {}}


async def test_overlong_line_is_refused(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    async with Running(path):
        try:
            answers = await raw_exchange(path, b"x" * (2 * 1024 * 1024) + b"\n")
        except ConnectionError:
            answers = []  # the server may hang up before the client finished writing
        assert all(answer["error"]["code"] == "bad_request" for answer in answers)
        assert await ControlClient(path).request("echo") == {"echo": {}}


async def test_streaming_command(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    async with Running(path):
        events = [event async for event in ControlClient(path).stream("count", {"n": 4})]
    assert events == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]


async def test_no_daemon_is_a_clear_error(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    with pytest.raises(DaemonNotRunningError, match="not running") as caught:
        await ControlClient(path).request("status")
    assert str(path) in str(caught.value)


async def test_stale_socket_is_replaced_but_a_live_daemon_is_not(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    import socket

    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: what a SIGKILLed daemon leaves behind
    stale.close()
    with pytest.raises(DaemonNotRunningError):
        await ControlClient(path).request("echo")
    async with Running(path):
        assert await ControlClient(path).request("echo") == {"echo": {}}
        second = ControlServer(path)
        with pytest.raises(ControlError, match="already serving"):
            await second.serve()
        assert await ControlClient(path).request("echo") == {"echo": {}}


@given(st.binary(max_size=300))
def test_decoder_never_crashes_on_garbage(line: bytes) -> None:
    try:
        request = decode_request(line)
    except RequestError as exc:
        assert exc.code
    else:
        assert isinstance(request.cmd, str)
        assert isinstance(request.args, dict)
