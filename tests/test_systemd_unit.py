"""The shipped systemd unit and sysusers file, checked with systemd's own tools."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.control.config import ControlConfig
from gateway.drivers.config import SupervisorConfig
from gateway.store.config import StorageConfig

SYSTEMD_DIR = Path(__file__).resolve().parents[1] / "systemd"
UNIT = SYSTEMD_DIR / "storegw.service"
SYSUSERS = SYSTEMD_DIR / "storegw.sysusers.conf"
MAX_EXPOSURE = 2.5
EX_CONFIG = 78


def _tool(name: str) -> str:
    binary = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(binary).exists():
        pytest.fail(f"{name} is missing: run `make test`, which installs Debian's systemd package")
    return binary


def _service() -> dict[str, list[str]]:
    """The [Service] section: every key with all its values, in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run(args, capture_output=True, text=True, check=False, env=env)


def test_unit_exposure_is_at_most_2_5() -> None:
    result = _run(_tool("systemd-analyze"), "security", "--offline=yes", str(UNIT))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    threshold = _run(
        _tool("systemd-analyze"),
        "security",
        "--offline=yes",
        f"--threshold={round(MAX_EXPOSURE * 10)}",
        str(UNIT),
    )
    assert threshold.returncode == 0, threshold.stdout


def test_unit_verifies_clean_apart_from_the_binary_path() -> None:
    result = _run(_tool("systemd-analyze"), "verify", str(UNIT))
    complaints = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "/usr/bin/storegw is not executable" not in line
    ]
    assert complaints == []


def test_unit_runs_the_daemon_the_way_it_expects() -> None:
    service = _service()
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["ExecStart"][0].startswith("/usr/bin/storegw run --config ")
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["WatchdogSec"] == ["30"]
    assert service["Restart"] == ["on-failure"]
    assert str(EX_CONFIG) in service["RestartPreventExitStatus"][0].split()
    # The daemon's own graceful stop must finish before systemd resorts to SIGKILL.
    assert SupervisorConfig().shutdown_budget_s < int(service["TimeoutStopSec"][0])
    assert service["User"] == ["storegw"]
    assert service["Group"] == ["storegw"]
    assert service["SupplementaryGroups"] == ["dialout bluetooth"]


def test_unit_caps_file_descriptors_well_above_the_control_connections() -> None:
    limit = _service()["LimitNOFILE"]
    assert len(limit) == 1
    assert ":" not in limit[0]  # soft = hard: the daemon cannot lift it
    # Control connections are capped far below the limit: clients cannot starve the daemon
    # of descriptors for its database, the MQTT link or its serial ports.
    assert int(limit[0]) >= ControlConfig().max_connections + 512


def test_unit_directories_match_the_configuration_defaults() -> None:
    service = _service()
    assert service["RuntimeDirectory"] == ["storegw"]
    assert service["RuntimeDirectoryMode"] == ["0750"]
    assert service["StateDirectory"] == ["storegw"]
    assert service["ConfigurationDirectory"] == ["storegw"]
    assert service["UMask"] == ["0027"]
    assert ControlConfig().socket.parent == Path("/run/storegw")
    assert StorageConfig().path.parent == Path("/var/lib/storegw")


def test_unit_reaches_serial_ports_and_bluez_but_nothing_else() -> None:
    service = _service()
    assert "PrivateDevices" not in service  # would hide the serial adapters
    assert service["DevicePolicy"] == ["closed"]
    assert {"char-ttyUSB rw", "char-ttyACM rw"} <= set(service["DeviceAllow"])
    families = service["RestrictAddressFamilies"][0].split()
    assert "AF_UNIX" in families  # D-Bus to BlueZ, the control socket, sd_notify
    assert {"AF_INET", "AF_INET6"} <= set(families)  # MQTT to HQ
    assert "PrivateNetwork" not in service
    assert service["CapabilityBoundingSet"] == [""]
    assert service["NoNewPrivileges"] == ["yes"]


def test_sysusers_creates_the_account_with_its_groups(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    result = _run(_tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSUSERS))
    assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text(encoding="utf-8")
    account = next(line for line in passwd.splitlines() if line.startswith("storegw:"))
    assert account.endswith(":/usr/sbin/nologin")
    groups = {
        line.split(":")[0]: line.split(":")[3].split(",")
        for line in (tmp_path / "etc" / "group").read_text(encoding="utf-8").splitlines()
    }
    assert "storegw" in groups["dialout"]
    assert "storegw" in groups["bluetooth"]
