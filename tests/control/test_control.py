"""Control socket over real unix sockets: protocol, permissions, stale sockets, streams, garbage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.control.args import flag_arg, number_arg, optional_text_arg, text_arg
from gateway.control.client import ControlClient
from gateway.control.protocol import (
    MAX_LINE_BYTES,
    ErrorCode,
    ReplyKind,
    decode_reply,
    decode_request,
    encode,
    encode_request,
    result_message,
)
from gateway.control.server import ControlServer
from gateway.errors import (
    ControlError,
    ControlProtocolError,
    DaemonError,
    DaemonNotRunningError,
    InvalidArgsError,
    RequestError,
)
from tests.daemon import short_dir
from tests.support.filesystems import tmpfs
from tests.waiting import patience


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with short_dir() as path:
        yield path


class Handlers:
    """The commands the test server answers; records what streams saw."""

    def __init__(self) -> None:
        self.stream_closed = asyncio.Event()
        self.hang_started = asyncio.Event()

    async def echo(self, args: Mapping[str, Any]) -> Any:
        return {"echo": dict(args)}

    async def boom(self, args: Mapping[str, Any]) -> Any:
        raise RuntimeError("handler bug")

    async def picky(self, args: Mapping[str, Any]) -> Any:
        raise InvalidArgsError("slot must be given")

    async def not_json(self, args: Mapping[str, Any]) -> Any:
        return {"socket": object()}

    async def typed(self, args: Mapping[str, Any]) -> Any:
        return {"price": Decimal("1.99"), "at": datetime(2026, 11, 23, 9, 0, tzinfo=UTC)}

    async def hang(self, args: Mapping[str, Any]) -> Any:
        self.hang_started.set()
        await asyncio.Event().wait()

    async def count(self, args: Mapping[str, Any]) -> AsyncIterator[Any]:
        for n in range(int(args.get("n", 3))):
            yield {"n": n}

    async def endless(self, args: Mapping[str, Any]) -> AsyncIterator[Any]:
        try:
            n = 0
            while True:
                yield {"n": n}
                n += 1
                await asyncio.sleep(0)
        finally:
            self.stream_closed.set()

    async def silent(self, args: Mapping[str, Any]) -> AsyncIterator[Any]:
        try:
            yield {"started": True}
            await asyncio.Event().wait()  # a follow on a source that has gone quiet
        finally:
            self.stream_closed.set()

    async def breaks(self, args: Mapping[str, Any]) -> AsyncIterator[Any]:
        yield {"n": 0}
        raise RuntimeError("sensor unplugged")

    async def follow(self, args: Mapping[str, Any]) -> AsyncIterator[Any]:
        # A coroutine returning an iterator: arguments are refused before any event is sent.
        if "slot" not in args:
            raise InvalidArgsError("follow needs a slot")
        return self.count({"n": 2})

    def all(self) -> dict[str, Any]:
        names = [
            "echo",
            "boom",
            "picky",
            "not_json",
            "typed",
            "hang",
            "count",
            "endless",
            "silent",
            "breaks",
            "follow",
        ]
        return {name: getattr(self, name) for name in names}


class Running:
    """Runs ``ControlServer.serve()`` as a task for a test and always cancels and awaits it."""

    def __init__(
        self, path: Path, handlers: Handlers | None = None, *, max_connections: int | None = None
    ) -> None:
        self.handlers = handlers or Handlers()
        limit = {} if max_connections is None else {"max_connections": max_connections}
        self.server = ControlServer(path, handlers=self.handlers.all(), **limit)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.server.serve(), name="control")
        async with asyncio.timeout(patience(10)):
            while True:  # until it answers (a stale file may be there before it binds)
                assert not self.task.done(), self.task
                try:
                    _, writer = await asyncio.open_unix_connection(str(self.server.socket_path))
                except OSError:
                    await asyncio.sleep(0.01)
                    continue
                writer.close()
                await writer.wait_closed()
                break
            while getattr(self.server, "active_connections", 0):  # the probe has gone
                await asyncio.sleep(0.01)
        return self

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


# --- round trips ----------------------------------------------------------------------------


async def test_round_trip_socket_mode_and_cleanup(sock_dir: Path) -> None:
    path = sock_dir / "run" / "control.sock"
    async with Running(path):
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
        assert await ControlClient(path).request("echo", {"a": 1}) == {"echo": {"a": 1}}
    assert not path.exists()


async def test_socket_is_0660_even_under_a_strict_umask(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    old = os.umask(0o077)
    try:
        running = await Running(path).__aenter__()
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
    finally:
        await running.__aexit__()


async def test_several_requests_per_connection_answered_in_order(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    async with Running(path):
        answers = await raw_exchange(
            path,
            b'{"v": 1, "id": 1, "cmd": "echo", "args": {"x": 1}}\n'
            b'{"v": 1, "id": 2, "cmd": "typed"}\n'
            b'{"v": 1, "id": 3, "cmd": "echo"}',  # the last line may lack its newline
        )
    assert answers == [
        {"v": 1, "id": 1, "ok": True, "result": {"echo": {"x": 1}}},
        {
            "v": 1,
            "id": 2,
            "ok": True,
            "result": {"price": "1.99", "at": "2026-11-23T09:00:00.000+00:00"},
        },
        {"v": 1, "id": 3, "ok": True, "result": {"echo": {}}},
    ]


async def test_request_sync_for_the_cli(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    async with Running(path):
        with ThreadPoolExecutor(1) as executor:  # request_sync runs its own event loop
            result = await asyncio.get_running_loop().run_in_executor(
                executor, ControlClient(path).request_sync, "echo", {"k": "v"}
            )
    assert result == {"echo": {"k": "v"}}


# --- errors ---------------------------------------------------------------------------------


async def test_error_codes_and_the_server_keeps_serving(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    client = ControlClient(path)
    async with Running(path):
        with pytest.raises(DaemonError, match=r"unknown_command.*known commands: boom,") as err:
            await client.request("nope")
        assert err.value.code == "unknown_command"
        with pytest.raises(DaemonError, match="internal: RuntimeError: handler bug") as err:
            await client.request("boom")
        assert err.value.code == "internal"
        with pytest.raises(DaemonError, match="invalid_args: slot must be given"):
            await client.request("picky")
        with pytest.raises(DaemonError, match=r"internal: .*not JSON serialisable"):
            await client.request("not_json")
        assert await client.request("echo") == {"echo": {}}


async def test_handler_failure_is_logged_with_traceback(
    sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = sock_dir / "control.sock"
    async with Running(path):
        with pytest.raises(DaemonError):
            await ControlClient(path).request("boom")
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failures
    assert failures[0].exc_info is not None


async def test_garbage_is_answered_and_a_second_client_is_served(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    async with Running(path):
        answers = await raw_exchange(
            path,
            b"garbage\n"
            b'{"v": 2, "id": 5, "cmd": "echo"}\n'
            b'{"id": 9, "cmd": "echo"}\n'
            b'{"v": 1, "id": "x", "cmd": "echo"}\n'
            b'{"v": 1, "id": 6, "cmd": "echo", "args": []}\n'
            b"\xff\xfe\n" + b"[" * 100_000 + b"\n"
            b'{"v": 1, "id": 7, "cmd": "echo"}\n',
        )
        codes = [answer.get("error", {}).get("code") for answer in answers]
        assert codes == [
            "bad_request",
            "unsupported_version",
            "bad_request",
            "bad_request",
            "bad_request",
            "bad_request",
            "bad_request",
            None,
        ]
        assert [answer["id"] for answer in answers] == [None, 5, 9, None, 6, None, None, 7]
        assert await ControlClient(path).request("echo") == {"echo": {}}


async def test_unsupported_version_raises_for_the_client(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    async with Running(path):
        answers = await raw_exchange(path, b'{"v": 99, "id": 1, "cmd": "status"}\n')
    assert answers[0]["error"]["code"] == "unsupported_version"
    assert "99" in answers[0]["error"]["message"]


async def test_overlong_line_is_refused_and_the_connection_closed(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    async with Running(path):
        try:
            answers = await raw_exchange(path, b"x" * (MAX_LINE_BYTES + 10) + b"\n")
        except ConnectionError:
            answers = []  # the server may hang up before the client finished writing
        assert [answer["error"]["code"] for answer in answers] in ([], ["bad_request"])
        assert await ControlClient(path).request("echo") == {"echo": {}}


async def test_client_gives_up_after_its_timeout(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    running = Running(path)
    async with running:
        with pytest.raises(ControlError, match=r"did not answer 'hang' within 0\.2 s"):
            await ControlClient(path).request("hang", timeout=0.2)
        # It reached the handler that hangs (on a busy machine maybe after the client left).
        async with asyncio.timeout(patience(10)):
            await running.handlers.hang_started.wait()
        assert await ControlClient(path).request("echo") == {"echo": {}}


# --- streaming ------------------------------------------------------------------------------


async def test_streaming_command(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    async with Running(path):
        client = ControlClient(path)
        events = [event async for event in client.stream("count", {"n": 4})]
        assert events == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]
        assert [e async for e in client.stream("follow", {"slot": 1})] == [{"n": 0}, {"n": 1}]
        with pytest.raises(DaemonError, match="invalid_args: follow needs a slot"):
            [e async for e in client.stream("follow")]


async def test_stream_wire_format_then_the_connection_carries_on(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    async with Running(path):
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(encode_request(4, "count", {"n": 2}))
        lines = [json.loads(await reader.readline()) for _ in range(3)]
        writer.write(encode_request(5, "echo"))  # after the end line: a new request
        lines.append(json.loads(await reader.readline()))
        writer.close()
        await writer.wait_closed()
    assert lines == [
        {"v": 1, "id": 4, "ok": True, "event": {"n": 0}},
        {"v": 1, "id": 4, "ok": True, "event": {"n": 1}},
        {"v": 1, "id": 4, "ok": True, "end": True},
        {"v": 1, "id": 5, "ok": True, "result": {"echo": {}}},
    ]


async def test_stream_failure_ends_it_with_an_error(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    async with Running(path):
        seen = []
        with pytest.raises(DaemonError, match="internal: RuntimeError: sensor unplugged"):
            async for event in ControlClient(path).stream("breaks"):
                seen.append(event)  # noqa: PERF401 - the events before the error matter
        assert seen == [{"n": 0}]
        assert await ControlClient(path).request("echo") == {"echo": {}}


@pytest.mark.parametrize("command", ["endless", "silent"])
async def test_client_leaving_a_stream_stops_it(sock_dir: Path, command: str) -> None:
    path = sock_dir / "control.sock"
    running = Running(path)
    async with running:
        async for _event in ControlClient(path).stream(command):
            break  # the technician pressed Ctrl-C
        async with asyncio.timeout(patience(10)):  # a liveness bound, not a timing assertion
            await running.handlers.stream_closed.wait()
        assert await ControlClient(path).request("echo") == {"echo": {}}


async def test_request_on_a_streaming_command_is_a_clear_error(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    async with Running(path):
        with pytest.raises(ControlProtocolError, match="streaming command"):
            await ControlClient(path).request("count")
        with pytest.raises(ControlProtocolError, match="not a streaming command"):
            [e async for e in ControlClient(path).stream("echo")]


# --- the socket file ------------------------------------------------------------------------


async def test_no_daemon_is_a_clear_error(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    with pytest.raises(DaemonNotRunningError, match="not running") as caught:
        await ControlClient(path).request("status")
    assert str(path) in str(caught.value)
    assert caught.value.socket_path == str(path)


def test_no_daemon_from_the_synchronous_cli(sock_dir: Path) -> None:
    with pytest.raises(DaemonNotRunningError, match=str(sock_dir)):
        ControlClient(sock_dir / "control.sock").request_sync("status")


async def test_stale_socket_is_replaced_but_a_live_daemon_is_not(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: what a SIGKILLed daemon leaves behind
    stale.close()
    with pytest.raises(DaemonNotRunningError, match="connection refused"):
        await ControlClient(path).request("echo")
    async with Running(path):
        assert await ControlClient(path).request("echo") == {"echo": {}}
        with pytest.raises(ControlError, match=f"already serving {path}"):
            await ControlServer(path).serve()
        assert await ControlClient(path).request("echo") == {"echo": {}}  # still the first one
    assert not path.exists()


async def test_a_path_that_is_not_a_socket_is_never_replaced(sock_dir: Path) -> None:
    path = sock_dir / "gateway.toml"
    path.write_text("precious", encoding="utf-8")
    with pytest.raises(ControlError, match="is not a socket"):
        await ControlServer(path).serve()
    assert path.read_text(encoding="utf-8") == "precious"


async def test_overlong_socket_path_is_a_clear_error(sock_dir: Path) -> None:
    path = sock_dir / ("d" * 120) / "control.sock"
    with pytest.raises(ControlError, match="longer than 107 bytes"):
        await ControlServer(path).serve()


async def test_cancelling_the_server_closes_open_connections(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    running = Running(path)
    async with running:
        idle_reader, idle_writer = await asyncio.open_unix_connection(str(path))
        stream_reader, stream_writer = await asyncio.open_unix_connection(str(path))
        stream_writer.write(encode_request(1, "silent"))
        assert json.loads(await stream_reader.readline())["event"] == {"started": True}
    # serve() returned: both connections were closed by the server, no task is left behind.
    assert await idle_reader.read() == b""
    assert await stream_reader.read() == b""
    assert running.handlers.stream_closed.is_set()
    for writer in (idle_writer, stream_writer):
        writer.close()
        await writer.wait_closed()


async def test_a_live_daemon_on_the_path_is_named_by_its_pid(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    async with Running(path):
        second = ControlServer(path)
        with pytest.raises(ControlError, match=rf"\(pid {os.getpid()}\) is already serving"):
            await second.listen()
        second.close()  # nothing was claimed: the first one's socket stays
        assert await ControlClient(path).request("echo") == {"echo": {}}


async def test_listen_claims_the_path_before_serving(sock_dir: Path) -> None:
    """The daemon binds during start-up, before READY: a client connecting meanwhile waits in
    the backlog and is answered once serve() runs; close() without serve() gives the path up."""
    path = sock_dir / "control.sock"
    early = ControlServer(path, handlers=Handlers().all())
    await early.listen()
    assert stat.S_ISSOCK(path.stat().st_mode)
    with pytest.raises(ControlError, match="already serving"):
        await ControlServer(path).listen()
    pending = asyncio.create_task(ControlClient(path).request("echo", {"n": 1}, timeout=30))
    task = asyncio.create_task(early.serve(), name="control")
    try:
        assert await pending == {"echo": {"n": 1}}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not path.exists()
    abandoned = ControlServer(path)
    await abandoned.listen()
    abandoned.close()
    abandoned.close()  # idempotent
    assert not path.exists()


async def test_a_directory_that_cannot_hold_the_socket_is_a_clear_error(sock_dir: Path) -> None:
    with tmpfs(sock_dir / "ro", size="64k", read_only=True) as read_only:
        with pytest.raises(ControlError, match=f"cannot create the directory {read_only}/run"):
            await ControlServer(read_only / "run" / "control.sock").listen()
        with pytest.raises(ControlError, match=f"cannot listen on {read_only}/control.sock"):
            await ControlServer(read_only / "control.sock").listen()


# --- limits ---------------------------------------------------------------------------------


async def test_connections_beyond_the_limit_are_answered_busy(
    sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = sock_dir / "control.sock"
    running = Running(path, max_connections=2)
    async with running:
        held = [await asyncio.open_unix_connection(str(path)) for _ in range(2)]
        async with asyncio.timeout(10):  # liveness bound: until the server counts them
            while running.server.active_connections < 2:
                await asyncio.sleep(0.01)
        for _ in range(3):  # refused every time, logged once
            with pytest.raises(DaemonError, match="already serves 2 control connections") as err:
                await ControlClient(path).request("echo")
            assert err.value.code == "busy"
        answers = await raw_exchange(path, b'{"v": 1, "id": 41, "cmd": "echo"}\n')
        assert answers == [
            {
                "v": 1,
                "id": 41,
                "ok": False,
                "error": {"code": "busy", "message": answers[0]["error"]["message"]},
            }
        ]
        # The held connections are still served, and closing one makes room.
        reader, writer = held[0]
        writer.write(encode_request(1, "echo"))
        assert json.loads(await reader.readline())["result"] == {"echo": {}}
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(10):
            while running.server.active_connections > 1:
                await asyncio.sleep(0.01)
        assert await ControlClient(path).request("echo") == {"echo": {}}
        for _reader, writer in held[1:]:
            writer.close()
            await writer.wait_closed()
    limit_logs = [r for r in caplog.records if "max_connections" in r.getMessage()]
    assert len(limit_logs) == 1, [r.getMessage() for r in limit_logs]
    assert limit_logs[0].levelname == "WARNING"


async def test_a_flood_of_connections_never_exceeds_the_limit(sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    running = Running(path, max_connections=3)
    async with running:
        opened = []
        for _ in range(40):  # all connected before the server gets to accept any
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(path))
            opened.append(sock)
        try:
            async with asyncio.timeout(30):  # every one accepted: served, refused or dropped
                while running.server.accepted < 40:
                    assert running.server.active_connections <= 3
                    await asyncio.sleep(0.01)
            assert running.server.active_connections == 3
        finally:
            for sock in opened:
                sock.close()
        async with asyncio.timeout(10):
            while running.server.active_connections:
                await asyncio.sleep(0.01)
        assert await ControlClient(path).request("echo") == {"echo": {}}


async def test_a_follow_client_resetting_its_connection_is_not_an_error(
    sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`storegw scale read --follow` killed: its socket closes with events unread, which
    resets the daemon's side of the connection."""
    path = sock_dir / "control.sock"
    running = Running(path)
    async with running:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        sock.sendall(encode_request(1, "silent"))
        sock.setblocking(False)
        async with asyncio.timeout(10):  # until the first event waits unread in its buffer
            while True:
                try:
                    if sock.recv(1, socket.MSG_PEEK):
                        break
                except BlockingIOError:
                    pass
                await asyncio.sleep(0.01)
        sock.close()
        async with asyncio.timeout(10):  # liveness bound, not a timing assertion
            await running.handlers.stream_closed.wait()
            while getattr(running.server, "active_connections", 0):
                await asyncio.sleep(0.01)
        assert await ControlClient(path).request("echo") == {"echo": {}}
    problems = [r for r in caplog.records if r.levelname in {"ERROR", "CRITICAL"}]
    assert problems == [], [r.getMessage() for r in problems]


def test_registering_a_command_twice_is_a_bug(sock_dir: Path) -> None:
    server = ControlServer(sock_dir / "control.sock")
    server.register("status", Handlers().echo)
    with pytest.raises(ValueError, match="already registered"):
        server.register("status", Handlers().echo)


# --- protocol (pure) ------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_request_decoder_never_crashes_on_garbage(line: bytes) -> None:
    try:
        request = decode_request(line)
    except RequestError as exc:
        assert exc.code in set(ErrorCode)
    else:
        assert isinstance(request.cmd, str)
        assert isinstance(request.args, dict)


@given(st.binary(max_size=300))
def test_reply_decoder_only_raises_protocol_errors(line: bytes) -> None:
    with contextlib.suppress(ControlProtocolError):
        decode_reply(line)


def test_request_decoder_details() -> None:
    request = decode_request(b'{"v": 1, "id": 3, "cmd": "status"}\n')
    assert (request.id, request.cmd, request.args) == (3, "status", {})
    for line, code in [
        (b'{"v": true, "id": 3, "cmd": "s"}', ErrorCode.UNSUPPORTED_VERSION),
        (b'{"v": 1, "id": true, "cmd": "s"}', ErrorCode.BAD_REQUEST),
        (b'{"v": 1, "id": 3, "cmd": ""}', ErrorCode.BAD_REQUEST),
        (b'{"v": 1, "id": ' + b"9" * 5000 + b', "cmd": "s"}', ErrorCode.BAD_REQUEST),
        ('{"v": 1, "id": 3, "cmd": "s"}'.encode("utf-16"), ErrorCode.BAD_REQUEST),
    ]:
        with pytest.raises(RequestError) as caught:
            decode_request(line)
        assert caught.value.code is code, line[:40]


def test_reply_decoding_and_encoding() -> None:
    reply = decode_reply(encode(result_message(2, {"a": [1, "b"]})))
    assert (reply.id, reply.kind, reply.value) == (2, ReplyKind.RESULT, {"a": [1, "b"]})
    reply = decode_reply(b'{"v":1,"id":null,"ok":false,"error":{"code":"bad_request"}}')
    assert reply.kind is ReplyKind.ERROR
    assert reply.error == {"code": "bad_request", "message": ""}
    with pytest.raises(ControlProtocolError, match="protocol version 2"):
        decode_reply(b'{"v":2,"id":1,"ok":true,"result":1}')
    with pytest.raises(ControlProtocolError):
        encode({"value": float("nan")})
    with pytest.raises(ControlProtocolError):
        encode({"at": datetime(2026, 1, 1)})  # noqa: DTZ001 - naive on purpose
    assert encode({"text": "zeile\nzwei ✓"}).count(b"\n") == 1


@pytest.mark.parametrize(
    "value",
    [10**400, -(10**400), float("nan"), float("inf"), "10", None],
    ids=["huge", "-huge", "nan", "inf", "text", "null"],
)
def test_a_number_argument_beyond_a_float_is_invalid_args(value: object) -> None:
    """The socket's JSON reads integers of any size: one that no float holds is a bad
    argument (answered invalid_args), never an OverflowError answered internal."""
    with pytest.raises(InvalidArgsError, match="seconds: a number is required"):
        number_arg({"seconds": value}, "seconds", 10.0)
    assert number_arg({"seconds": 2**70}, "seconds", 10.0) == float(2**70)


def test_every_argument_reader_refuses_the_wrong_type_with_invalid_args() -> None:
    """One error type for bad arguments, naming the argument, whichever command reads them."""
    assert text_arg({"slot": "cola"}, "slot") == "cola"
    assert optional_text_arg({}, "sku") is None
    assert optional_text_arg({"sku": None}, "sku") is None
    assert optional_text_arg({"sku": "4006"}, "sku") == "4006"
    assert flag_arg({}, "force") is False
    assert flag_arg({"force": True}, "force") is True
    assert number_arg({}, "seconds", 10.0) == 10.0
    bad: list[tuple[Callable[[], object], str]] = [
        (lambda: text_arg({}, "slot"), "slot: a non-empty string is required, got None"),
        (lambda: text_arg({"slot": 5}, "slot"), "slot: a non-empty string is required, got 5"),
        (lambda: text_arg({"slot": "  "}, "slot"), "slot: a non-empty string"),
        (lambda: optional_text_arg({"sku": 4006}, "sku"), "sku: a non-empty string"),
        (lambda: optional_text_arg({"sku": ["a"]}, "sku"), "sku: a non-empty string"),
        (lambda: flag_arg({"force": "yes"}, "force"), "force: true or false is required"),
        (lambda: flag_arg({"device": 1}, "device"), "device: true or false is required"),
        (lambda: number_arg({}, "known_grams"), "known_grams: a number is required, got None"),
        (lambda: number_arg({"known_grams": "12"}, "known_grams"), "known_grams: a number"),
        (lambda: number_arg({"known_grams": True}, "known_grams"), "known_grams: a number"),
    ]
    for read, message in bad:
        with pytest.raises(InvalidArgsError) as caught:
            read()
        assert str(caught.value).startswith(message), (message, caught.value)
