"""Run the real `storegw` daemon as a subprocess, the way systemd does, for lifecycle tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.waiting import patience, wait_until

STOREGW = str(Path(sys.executable).with_name("storegw"))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def write_config(
    path: Path,
    *,
    state_dir: Path,
    devices: list[dict[str, Any]],
    extra: str = "",
    store_id: str = "test-store",
) -> Path:
    lines = [
        "[store]",
        f'id = "{store_id}"',
        'timezone = "Europe/Berlin"',
        "[clock]",
        'sync = "assume"',
        "[mqtt]",
        "tls = false",
        "allow_plaintext = true",
        "[storage]",
        f"path = {toml_value(str(state_dir / 'gateway.db'))}",
        "[control]",
        f"socket = {toml_value(str(state_dir / 'control.sock'))}",
        "[supervisor]",
        "backoff_initial_s = 0.05",
        "backoff_max_s = 0.5",
        "start_timeout_s = 2.0",
        "stop_timeout_s = 1.0",
        "shutdown_budget_s = 10.0",
        extra,
    ]
    for device in devices:
        lines.append("[[devices]]")
        for key, value in device.items():
            lines.append(f"{key} = {toml_value(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextmanager
def short_dir() -> Iterator[Path]:
    """A short directory path: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="sgw-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class NotifyListener:
    """A stand-in for systemd's notify socket: collects sd_notify datagrams."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float = 60.0) -> list[str]:
        """Wait until a datagram holds ``line`` (or a line starting with it); ``timeout`` is a
        liveness bound (stretched by ``TEST_TIMEOUT_FACTOR``)."""
        timeout = patience(timeout)
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if any(part == line or part.startswith(line) for part in message.split("\n")):
                    return self.messages
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {line!r} within {timeout} s; got {self.messages}")
            self.sock.settimeout(remaining)
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except TimeoutError:
                continue

    def drain(self) -> list[str]:
        """Every datagram received so far, those not yet read included."""
        self.sock.setblocking(False)
        try:
            while True:
                self.messages.append(self.sock.recv(65536).decode())
        except BlockingIOError:
            return self.messages
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        self.sock.close()


class FollowedOutput:
    """A daemon's output read line by line as it comes (in a thread), so that a test can wait
    for what the daemon says instead of guessing how long it takes to say it."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.lines: list[str] = []
        self._stream = process.stdout
        self._thread = threading.Thread(
            target=self._read, args=(process.stdout,), name="daemon-output", daemon=True
        )
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        wait_until(
            lambda: any(text in line for line in list(self.lines)),
            within=timeout,
            what=f"{text!r} in the daemon's output",
        )

    def finish(self) -> str:
        """The whole output, once the process has ended (its end of the pipe is closed)."""
        self._thread.join(timeout=patience(30))
        self._stream.close()
        return "".join(self.lines)


@contextmanager
def running_daemon(
    config: Path,
    *,
    notify_dir: Path,
    env: Mapping[str, str] | None = None,
    wait_ready: bool = True,
) -> Iterator[tuple[subprocess.Popen[str], NotifyListener]]:
    listener = NotifyListener(notify_dir / "notify.sock")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STOREGW_")}
    full_env["NOTIFY_SOCKET"] = str(listener.path)
    full_env.update(env or {})
    process = subprocess.Popen(
        [STOREGW, "run", "--config", str(config)],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        if wait_ready:
            listener.wait_for("READY=1")
        yield process, listener
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=patience(30))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()
        listener.close()


def stop(process: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str]:
    """SIGTERM the daemon; return its exit code and its whole output."""
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=patience(timeout))
    return process.returncode, output


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREGW_")}
    return subprocess.run(
        [STOREGW, *args],
        capture_output=True,
        text=True,
        timeout=patience(timeout),
        env=env,
        check=False,
    )


def scale(name: str, **faults: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"seed": 7, "sample_rate_hz": 5.0}
    if faults:
        options["faults"] = faults
    return {"name": name, "driver": "simulated.scale", "options": options}


def esl(name: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "driver": "simulated.esl", "options": {"seed": 3, **options}}


def status_json(state: Path) -> dict[str, Any]:
    result = run_cli("status", "--json", "--socket", str(state / "control.sock"))
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def wait_for(predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll the daemon (through the CLI) until ``predicate`` holds; returns what it saw."""
    return wait_until(predicate, within=timeout, what=what, every=0.1)
