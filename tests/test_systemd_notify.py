"""sd_notify over real AF_UNIX datagram sockets, the watchdog gate, and journald detection."""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.systemd import SystemdNotifier, WatchdogGate, running_under_journald
from tests.daemon import short_dir


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """What systemd listens on: a datagram socket bound to a (short) path."""
    with short_dir() as directory:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = str(directory / "notify")
        sock.bind(path)
        sock.settimeout(5)  # a liveness bound for recv, not a timing assertion
        try:
            yield sock, path
        finally:
            sock.close()


def test_notifier_sends_exact_datagrams(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    try:
        notifier.ready()
        notifier.status("3/3 drivers running\nsecond line")
        notifier.stopping()
        notifier.watchdog()
        notifier.notify("STATUS=custom", "EXTEND_TIMEOUT_USEC=5000000")
        notifier.reloading()
        received = [sock.recv(4096).decode() for _ in range(6)]
    finally:
        notifier.close()
    assert received[:5] == [
        "READY=1",
        "STATUS=3/3 drivers running second line",
        "STOPPING=1",
        "WATCHDOG=1",
        "STATUS=custom\nEXTEND_TIMEOUT_USEC=5000000",
    ]
    assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", received[5])


def test_abstract_namespace_socket() -> None:
    name = f"storegw-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@" + name})
    try:
        notifier.ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        notifier.close()
        sock.close()


def test_without_systemd_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier.from_environment({})
    assert not notifier.enabled
    notifier.ready()
    notifier.status("x")
    notifier.watchdog()
    notifier.close()
    assert notifier.watchdog_interval() is None


def test_lost_notify_socket_is_logged_once_and_recovery_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with short_dir() as directory:
        path = str(directory / "notify")
        notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})
        with caplog.at_level(logging.INFO, logger="gateway.systemd"):
            notifier.ready()
            notifier.watchdog()  # still gone: no second warning
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            sock.settimeout(5)
            try:
                notifier.watchdog()
                assert sock.recv(100) == b"WATCHDOG=1"
            finally:
                sock.close()
                notifier.close()
    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if m.startswith("cannot notify systemd")]) == 1
    assert len([m for m in messages if "reachable again" in m]) == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another pid
        ({"WATCHDOG_USEC": "garbage"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_from_environment(env: dict[str, str], expected: float | None) -> None:
    assert SystemdNotifier.from_environment(env).watchdog_interval() == expected


def test_journald_is_recognised_by_the_stream_identity(tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w", encoding="utf-8") as stream:
        info = os.fstat(stream.fileno())
        ours = f"{info.st_dev}:{info.st_ino}"
        fd = stream.fileno()
        assert running_under_journald({"JOURNAL_STREAM": ours}, fd=fd)
        # Inherited by a process whose stderr goes elsewhere (a shell redirect, a pipe):
        assert not running_under_journald({"JOURNAL_STREAM": f"{info.st_dev}:1"}, fd=fd)
        assert not running_under_journald({"JOURNAL_STREAM": "garbage"}, fd=fd)
        assert not running_under_journald({}, fd=fd)


# --- the watchdog gate (sans-IO) ------------------------------------------------------------


def _gate(counters: dict[str, int]) -> WatchdogGate:
    return WatchdogGate({name: (lambda n=name: counters[n]) for name in counters})


def test_watchdog_gate_needs_progress_from_every_component() -> None:
    counters = {"event loop": 0, "storage writer": 0, "supervisor": 0}
    gate = _gate(counters)
    assert gate.stalled() == []
    assert not gate.should_ping()  # nothing moved since start
    assert gate.stalled() == ["event loop", "storage writer", "supervisor"]
    for name in counters:
        counters[name] += 1
    assert gate.should_ping()
    assert gate.stalled() == []
    counters["event loop"] += 1
    counters["supervisor"] += 1
    assert not gate.should_ping()  # the writer is wedged: systemd will restart us
    assert gate.stalled() == ["storage writer"]
    counters["storage writer"] += 1
    # The loop and supervisor moved since the last *successful* ping, so this one is honest.
    assert gate.should_ping()
    assert not gate.should_ping()


def test_watchdog_gate_without_probes_always_pings() -> None:
    gate = WatchdogGate({})
    assert gate.should_ping()
    assert gate.should_ping()
    assert gate.stalled() == []
