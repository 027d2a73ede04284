"""A real mosquitto broker owned by one test, on a free loopback port (never 1883)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.waiting import patience

__all__ = ["Broker", "free_port"]


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
