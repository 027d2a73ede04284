"""Idle CPU and RSS of the demo daemon with a ``ble.bluez`` driver hearing ~20 beacons at 1 Hz,
against the same demo daemon without it, in the same run (interleaved: without, with, without,
with). The BlueZ it talks to is the fake one (devices/simulated/bluez.py) on a private
dbus-daemon, served from this process (not counted): every advert travels through bleak's real
BlueZ backend, as PropertiesChanged signals on D-Bus, exactly as on a store's adapter.

Goal (issue 14): the idle figures of issue 2 (< 1 % of one core, RSS <= 90 MiB) still met with
the bleak driver loaded and hearing its beacons.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from uuid import UUID

from _daemon import DEMO_CONFIG, ROOT, STOREGW, cpu_seconds, demo_daemon, rss_mib

sys.path.insert(0, str(ROOT))

from devices.ble.frames import APPLE_COMPANY_ID, ibeacon
from devices.simulated.bluez import FakeBlueZ
from tests.support.dbus import PrivateBus

WINDOW_S = 20.0
SETTLE_S = 5.0
BEACONS = 20
ROUNDS = 2
STORE_UUID = UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")

_DRIVER = """
[[devices]]
name = "ble-hci0"
driver = "ble.bluez"
[devices.options]
adapter = "hci0"
"""


class BeaconField:
    """The fake BlueZ on its own thread: ``BEACONS`` iBeacons, each advertising once a second."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._stop = threading.Event()
        self.adverts = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> BeaconField:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    async def _run(self) -> None:
        bluez = await FakeBlueZ(self._address).start()
        frames = [
            {APPLE_COMPANY_ID: ibeacon(STORE_UUID, 1, minor, -59)} for minor in range(BEACONS)
        ]
        try:
            while not self._stop.is_set():
                for index, frame in enumerate(frames):
                    address = f"C3:00:00:00:00:{index:02X}"
                    if bluez.advertise("hci0", address, -60 - index, manufacturer=frame):
                        self.adverts += 1
                    await asyncio.sleep(1.0 / BEACONS)  # spread over the second
        finally:
            bluez.stop()


def measure(pid: int) -> tuple[float, float]:
    cpu_start, wall_start = cpu_seconds(pid), time.monotonic()
    time.sleep(WINDOW_S)
    cpu = (cpu_seconds(pid) - cpu_start) / (time.monotonic() - wall_start) * 100
    return cpu, rss_mib(pid)


def heard_by_the_daemon(socket: Path) -> int:
    """How many of the field's beacons `storegw ble scan` shows the daemon hearing."""
    scan = subprocess.run(
        [str(STOREGW), "ble", "scan", "--seconds", "3", "--json", "--socket", str(socket)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return sum(str(STORE_UUID) in line for line in scan.stdout.splitlines())


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="storegw-bench-ble-") as tmp:
        bus = PrivateBus(Path(tmp)).start()  # the suite's private dbus-daemon
        address = bus.address
        config = Path(tmp) / "with_ble.toml"
        config.write_text(DEMO_CONFIG.read_text(encoding="utf-8") + _DRIVER, encoding="utf-8")
        env = {
            "DBUS_SYSTEM_BUS_ADDRESS": address,
            "STOREGW_CONTROL__SOCKET": str(Path(tmp) / "control.sock"),
        }
        heard = 0
        without: list[tuple[float, float]] = []
        with_ble: list[tuple[float, float]] = []
        try:
            with BeaconField(address) as field:
                for _ in range(ROUNDS):
                    with demo_daemon(env) as (process, _ready):
                        time.sleep(SETTLE_S)
                        without.append(measure(process.pid))
                    heard_before = field.adverts
                    with demo_daemon(env, config=config) as (process, _ready):
                        time.sleep(SETTLE_S)
                        with_ble.append(measure(process.pid))
                        heard = heard_by_the_daemon(Path(tmp) / "control.sock")
                    if field.adverts == heard_before:
                        raise SystemExit("the daemon never started discovery on the fake BlueZ")
        finally:
            bus.stop()
    cpu_without = sum(c for c, _ in without) / len(without)
    rss_without = max(r for _, r in without)
    cpu_with = sum(c for c, _ in with_ble) / len(with_ble)
    rss_with = max(r for _, r in with_ble)
    print(f"window {WINDOW_S:.0f} s x {ROUNDS} rounds, interleaved; {BEACONS} beacons at 1 Hz")
    print(f"`storegw ble scan` lines naming the field's beacons (last round): {heard}")
    print(f"demo daemon                 CPU {cpu_without:5.2f} %   RSS {rss_without:6.1f} MiB")
    print(
        f"demo daemon + ble.bluez     CPU {cpu_with:5.2f} %   RSS {rss_with:6.1f} MiB"
        f"   (+{cpu_with - cpu_without:.2f} points CPU, RSS ratio {rss_with / rss_without:.2f}x)"
    )
    print(
        f"goals: CPU < 1 %: {'met' if cpu_with < 1 else 'NOT met'}; "
        f"RSS <= 90 MiB: {'met' if rss_with <= 90 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
