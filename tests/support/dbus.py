"""A private ``dbus-daemon`` for tests (Debian package ``dbus``): the fake BlueZ serves on it
and bleak connects to it as its system bus (``DBUS_SYSTEM_BUS_ADDRESS``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.waiting import patience

__all__ = ["PrivateBus"]

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    def __init__(self, directory: Path) -> None:
        self.socket = directory / "bus.sock"
        self.address = f"unix:path={self.socket}"
        self._config = directory / "bus.conf"
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> PrivateBus:
        binary = shutil.which("dbus-daemon") or "/usr/bin/dbus-daemon"
        if not Path(binary).exists():
            pytest.fail("dbus-daemon is not installed: run `make test`, which installs it")
        self._config.write_text(_CONFIG.format(socket=self.socket), encoding="utf-8")
        self._process = subprocess.Popen(
            [binary, f"--config-file={self._config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # printed once it listens
        if not line.strip():
            errors = self._process.stderr.read() if self._process.stderr else ""
            raise RuntimeError(f"dbus-daemon did not start: {errors}")
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=patience(10))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
