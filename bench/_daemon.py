"""Shared helpers for the benchmarks: start the demo daemon under a fake systemd notify socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "config" / "demo.toml"
STOREGW = Path(sys.executable).with_name("storegw")


def start_hq(
    port: int, directory: Path, *, topic_root: str | None = None, settle_s: float = 0.0
) -> subprocess.Popen[bytes]:
    """The reference HQ (`storegw hq tail --quiet`: stores and acks, prints nothing) in its
    own process, as in production; ``settle_s`` to let it connect and subscribe."""
    config = directory / "hq.toml"
    root = "" if topic_root is None else f"topic_root = '{topic_root}'\n"
    config.write_text(
        f"[mqtt]\nhost = '127.0.0.1'\nport = {port}\ntls = false\nallow_plaintext = true\n"
        f"{root}[hq]\ndatabase = '{directory / 'hq.db'}'\n",
        encoding="utf-8",
    )
    hq = subprocess.Popen(
        [str(STOREGW), "hq", "tail", "--quiet", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(settle_s)
    return hq


@contextmanager
def hq_consumer(port: int, directory: Path) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`start_hq` for the length of a ``with`` block."""
    hq = start_hq(port, directory)
    try:
        yield hq
    finally:
        hq.terminate()
        hq.wait()


@contextmanager
def demo_daemon(
    extra_env: dict[str, str] | None = None,
    *,
    with_hq: bool = False,
    config: Path = DEMO_CONFIG,
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """Start `storegw run` on ``config`` (the demo's); yield (process, seconds until READY=1).
    ``with_hq``: the reference HQ consumer acks what the store sends (in its own process)."""
    from gateway.cli.demo import PrivateBroker

    with tempfile.TemporaryDirectory(prefix="storegw-bench-") as tmp, ExitStack() as stack:
        # The real daemon talks to HQ: give it a private broker so the MQTT link is part of
        # what is measured (never the machine's own broker on 1883).
        broker = PrivateBroker.start(Path(tmp))
        if broker is None and with_hq:
            raise RuntimeError("no mosquitto: the store cannot be measured with its HQ up")
        if broker is not None:
            stack.callback(broker.stop)
            if with_hq:
                stack.enter_context(hq_consumer(broker.port, Path(tmp)))
        notify_path = str(Path(tmp) / "notify.sock")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(30)
        env = dict(os.environ)
        env.update(
            NOTIFY_SOCKET=notify_path,
            STOREGW_STORAGE__PATH=str(Path(tmp) / "gateway.db"),
            STOREGW_CONTROL__SOCKET=str(Path(tmp) / "control.sock"),
            STOREGW_LOGGING__LEVEL="WARNING",
        )
        if broker is not None:
            env.update(STOREGW_MQTT__ENABLED="true", STOREGW_MQTT__PORT=str(broker.port))
        env.update(extra_env or {})
        started = time.perf_counter()
        process = subprocess.Popen([str(STOREGW), "run", "--config", str(config)], env=env, cwd=tmp)
        try:
            while True:
                message = notify.recv(4096).decode()
                if "READY=1" in message.split("\n"):
                    ready_after = time.perf_counter() - started
                    break
            yield process, ready_after
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            notify.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")
