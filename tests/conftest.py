"""Suite-wide fixtures: leak detection, a real mosquitto broker, free ports, temp paths."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _fresh_simulated_labels() -> None:
    """Simulated labels remember what they show across driver objects of one instance name
    (as real labels do across access point restarts); every test starts with blank ones."""
    from devices.simulated.plugins import LABEL_MEMORY

    LABEL_MEMORY.reset()


@pytest.fixture(autouse=True)
async def _no_leaked_tasks_or_threads() -> AsyncIterator[None]:
    """Fail any test that leaves asyncio tasks or threads running behind it."""
    threads_before = set(threading.enumerate())
    tasks_before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    leaked_tasks = [
        task
        for task in asyncio.all_tasks() - tasks_before
        if task is not current and not task.done()
    ]
    for task in leaked_tasks:
        task.cancel()
    assert not leaked_tasks, f"test leaked asyncio tasks: {[t.get_name() for t in leaked_tasks]}"
    deadline = time.monotonic() + 2.0
    while True:  # worker threads (aiosqlite, executors) may need a moment to finish
        leaked = [
            thread
            for thread in set(threading.enumerate()) - threads_before
            if thread.is_alive() and not thread.daemon
        ]
        if not leaked or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert not leaked, f"test leaked threads: {[t.name for t in leaked]}"


@contextmanager
def tmpfs(mount_point: Path, *, size: str = "1m", read_only: bool = False) -> Iterator[Path]:
    """A real small or read-only filesystem. The suite runs as root, which ignores chmod but
    not a read-only mount or a full disk."""
    mount_point.mkdir(exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount tmpfs (the suite runs as root): {mounted.stderr!r}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def remount_read_only(mount_point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Broker:
    """A real mosquitto on loopback, owned by one test. ``kill()``/``start()`` simulate a broker
    crash and restart on the same port (persistence off: it forgets everything)."""

    def __init__(self, directory: Path, *, extra: str = "", port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.directory = directory
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.fail("mosquitto is not installed: run `make test`, which installs it")
        conf = self.directory / f"mosquitto-{self.port}.conf"
        conf.write_text(
            # user root: mosquitto would otherwise drop to its own user and lose our files.
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "user root\n"
            f"{self.extra}\n",
            encoding="utf-8",
        )
        self.process = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                if self.process.poll() is not None:
                    error = self.process.stderr.read() if self.process.stderr else b""
                    self.kill()
                    pytest.fail(f"mosquitto exited: {error!r}")
                time.sleep(0.05)
        self.kill()
        pytest.fail("mosquitto did not start listening within 10 s")

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its configuration, the ACL file included, keeping its
        clients connected (it applies the new ACL to their next publishes)."""
        if self.process is None:
            raise RuntimeError("the broker is not running")
        self.process.send_signal(signal.SIGHUP)

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, nothing saved."""
        process, self.process = self.process, None
        if process is None:
            return
        process.kill()
        process.wait()
        if process.stderr:
            process.stderr.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto on a free loopback port, owned by this test (never the one on 1883)."""
    broker = Broker(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
