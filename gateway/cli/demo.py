"""The demo store's extras: a private mosquitto, an in-process HQ, and the live summary.

The demo never touches a broker it did not start: it runs its own mosquitto on a free loopback
port (when mosquitto is installed; otherwise MQTT is switched off for the demo and it says so),
and an in-process ``hq tail`` that stores what the store sends into ``<state>/hq.db`` and
``<state>/hq-events.jsonl`` — the full store → HQ custody loop on one box.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import Gateway

__all__ = ["DemoHq", "PrivateBroker"]


@dataclass(slots=True)
class PrivateBroker:
    process: subprocess.Popen[bytes]
    port: int

    @classmethod
    def start(cls, state_dir: Path) -> PrivateBroker | None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            return None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        conf = state_dir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n",
            encoding="utf-8",
        )
        process = subprocess.Popen(  # noqa: S603 - fixed binary, generated config
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return cls(process, port)
            time.sleep(0.05)
        process.kill()
        process.wait()
        return None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass(slots=True)
class _CountingFile:
    path: Path
    lines: int = 0
    _handle: Any = field(default=None)

    def write(self, text: str) -> int:
        if self._handle is None:
            self._handle = self.path.open("a", encoding="utf-8")
        self.lines += text.count("\n")
        return int(self._handle.write(text))

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


@dataclass(slots=True)
class DemoHq:
    """The in-process HQ consumer of the demo."""

    state_dir: Path
    port: int
    output: _CountingFile = field(init=False)

    def __post_init__(self) -> None:
        self.output = _CountingFile(self.state_dir / "hq-events.jsonl")

    async def run(self, gateway: Gateway) -> None:
        from gateway.config import MqttConfig
        from gateway.hq.tail import HqConsumerConfig, HqSettings, tail

        settings = HqSettings(
            mqtt=MqttConfig(
                host="127.0.0.1",
                port=self.port,
                tls=False,
                allow_plaintext=True,
                client_id="storegw-demo-hq",
            ),
            hq=HqConsumerConfig(database=self.state_dir / "hq.db"),
        )
        try:
            await tail(settings, clock=gateway.clock, out=self.output)  # type: ignore[arg-type]
        finally:
            self.output.close()

    def summary(self) -> str:
        return f"  HQ (demo, in-process): {self.output.lines} events stored -> {self.output.path}"
