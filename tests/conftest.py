"""Suite-wide fixtures: leak detection, a real mosquitto broker, free ports, temp paths; the
per-test timeout stretched by ``TEST_TIMEOUT_FACTOR`` (see tests/waiting.py)."""

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
from hypothesis import HealthCheck, settings

from tests.waiting import TIMEOUT_FACTOR, patience

# Hypothesis times each example (200 ms by default) and its data generation: timing assertions
# that a busy machine fails. The properties are what the suite checks, not the speed.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A slower machine (``TEST_TIMEOUT_FACTOR`` above 1) gets every per-test timeout stretched
    as much as the waits inside the tests."""
    if TIMEOUT_FACTOR == 1:
        return
    default = float(config.getoption("timeout", None) or config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        seconds = default
        if marker is not None:
            seconds = float(marker.args[0] if marker.args else marker.kwargs.get("timeout", 0))
        if seconds > 0:
            item.add_marker(pytest.mark.timeout(seconds * TIMEOUT_FACTOR), append=False)


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
    crash and restart on the same port (persistence off: it forgets everything).

    Its log is read as it comes (an unread pipe would fill up and stall the broker): what it says
    about subscriptions tells a test when a client's SUBSCRIBE has landed (``subscribed``), so
    nothing has to sleep and hope."""

    def __init__(self, directory: Path, *, extra: str = "", port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.directory = directory
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.log: list[str] = []  # this run's log lines (a restart starts a new list)
        self._log_reader: threading.Thread | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.fail("mosquitto is not installed: run `make test`, which installs it")
        conf = self.directory / f"mosquitto-{self.port}.conf"
        log_types = ("error", "warning", "notice", "information", "subscribe", "unsubscribe")
        conf.write_text(
            # user root: mosquitto would otherwise drop to its own user and lose our files.
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "user root\nlog_dest stderr\n"
            + "".join(f"log_type {log_type}\n" for log_type in log_types)
            + f"{self.extra}\n",
            encoding="utf-8",
        )
        self.log = []
        self.process = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._log_reader = threading.Thread(
            target=self._read_log,
            args=(self.process, self.log),
            name=f"mosquitto-{self.port}-log",
            daemon=True,
        )
        self._log_reader.start()
        deadline = time.monotonic() + patience(10)
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                if self.process.poll() is not None:
                    log = self.log
                    self.kill()
                    pytest.fail(f"mosquitto exited: {log!r}")
                time.sleep(0.05)
        self.kill()
        pytest.fail(f"mosquitto did not start listening within {patience(10):g} s")

    @staticmethod
    def _read_log(process: subprocess.Popen[bytes], lines: list[str]) -> None:
        assert process.stderr is not None
        with process.stderr:
            for line in process.stderr:
                lines.append(line.decode(errors="replace").rstrip("\n"))  # noqa: PERF401 - each as it comes

    def subscribed(self, topic_filter: str, client_id: str | None = None) -> bool:
        """Whether this run of the broker has taken a SUBSCRIBE to ``topic_filter`` exactly
        (of ``client_id``, if given): a message published after that reaches the subscriber."""
        for line in list(self.log):
            _stamp, _, entry = line.partition(": ")
            words = entry.split(" ")
            if (
                len(words) == 3
                and words[1].isdigit()
                and words[2] == topic_filter
                and (client_id is None or words[0] == client_id)
            ):
                return True
        return False

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
        self._finish_log()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=patience(5))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._finish_log()

    def _finish_log(self) -> None:
        """The reader ends at the end of the dead broker's log (it closes the pipe)."""
        reader, self._log_reader = self._log_reader, None
        if reader is not None:
            reader.join(timeout=patience(5))


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto on a free loopback port, owned by this test (never the one on 1883)."""
    broker = Broker(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
