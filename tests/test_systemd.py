"""systemd: sd_notify datagrams, the watchdog gate, and the unit file's hardening."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from gateway.config import SupervisorConfig
from gateway.systemd import SystemdNotifier, WatchdogGate

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "storegw.service"


def _listener(tmp_path: Path) -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "n.sock")
    sock.bind(path)
    sock.settimeout(2)
    return sock, path


def test_notifier_sends_exact_datagrams(tmp_path: Path) -> None:
    sock, path = _listener(tmp_path)
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})
    try:
        notifier.ready()
        notifier.status("3/3 drivers running\nsecond line")
        notifier.stopping()
        notifier.watchdog()
        notifier.reloading()
        received = [sock.recv(4096).decode() for _ in range(5)]
    finally:
        notifier.close()
        sock.close()
    assert received[:4] == [
        "READY=1",
        "STATUS=3/3 drivers running second line",
        "STOPPING=1",
        "WATCHDOG=1",
    ]
    assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", received[4])


def test_abstract_namespace_socket() -> None:
    name = f"storegw-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@" + name})
    try:
        notifier.ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        notifier.close()
        sock.close()


def test_without_systemd_everything_is_a_no_op(tmp_path: Path) -> None:
    notifier = SystemdNotifier.from_environment({})
    assert not notifier.enabled
    notifier.ready()
    assert notifier.watchdog_interval() is None


def test_vanished_socket_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    notifier.ready()
    notifier.ready()
    notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another pid
        ({"WATCHDOG_USEC": "garbage"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_interval_from_environment(env: dict[str, str], expected: float | None) -> None:
    assert SystemdNotifier.from_environment(env).watchdog_interval() == expected


def test_watchdog_gate_needs_progress_from_every_component() -> None:
    counters = {"loop": 0, "writer": 0, "supervisor": 0}
    gate = WatchdogGate({name: (lambda n=name: counters[n]) for name in counters})
    assert not gate.should_ping()  # nothing moved yet
    assert gate.stalled() == ["loop", "supervisor", "writer"]
    for name in counters:
        counters[name] += 1
    assert gate.should_ping()
    counters["loop"] += 1
    counters["supervisor"] += 1
    assert not gate.should_ping()  # the writer is wedged
    assert gate.stalled() == ["writer"]
    counters["writer"] += 1
    assert gate.should_ping()


def _systemd_analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.fail("systemd-analyze is missing: `make test` installs Debian's systemd package")
    return binary


def test_unit_is_hardened_to_2_5_or_better() -> None:
    result = subprocess.run(
        [_systemd_analyze(), "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.5


def test_unit_verifies_clean_apart_from_the_binary_path(tmp_path: Path) -> None:
    result = subprocess.run(
        [_systemd_analyze(), "verify", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    complaints = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "/usr/bin/storegw is not executable" not in line
    ]
    assert complaints == []


def test_unit_essentials() -> None:
    text = UNIT.read_text(encoding="utf-8")
    for line in (
        "Type=notify",
        "WatchdogSec=30",
        "Restart=on-failure",
        "RestartPreventExitStatus=78 65",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=storegw",
        "ConfigurationDirectory=storegw",
        "RuntimeDirectory=storegw",
        "User=storegw",
        "SupplementaryGroups=dialout bluetooth",
    ):
        assert line in text.splitlines(), line
    found = re.search(r"^TimeoutStopSec=(\d+)$", text, re.MULTILINE)
    assert found is not None
    assert SupervisorConfig().shutdown_budget_s < int(found.group(1))
