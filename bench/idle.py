"""Idle CPU and RSS of the running demo daemon (every simulated driver family loaded).

Goals: < 1 % of one core, RSS <= 90 MiB, for a store at rest whose HQ is up: the daemon's MQTT
link on a private mosquitto, the reference HQ consumer (its own process, not counted) storing
and acking what the store sends. Also shown: the same store while HQ is down (no acks: the
uplink's ack timeouts re-send the unacknowledged window). Baseline in the same run: an idle
bare interpreter, and the RSS an interpreter reaches just by importing the field libraries
(bleak, paho, pyserial, aiosqlite, pydantic) — which is why storegw imports them lazily.
"""

from __future__ import annotations

import subprocess
import sys
import time

from _daemon import cpu_seconds, demo_daemon, rss_mib

WINDOW_S = 30.0
SETTLE_S = 3.0


def measure(pid: int) -> tuple[float, float]:
    cpu_start, wall_start = cpu_seconds(pid), time.monotonic()
    time.sleep(WINDOW_S)
    cpu = (cpu_seconds(pid) - cpu_start) / (time.monotonic() - wall_start) * 100
    return cpu, rss_mib(pid)


def interpreter(code: str) -> tuple[float, float]:
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(SETTLE_S)
        return measure(process.pid)
    finally:
        process.kill()
        process.wait()


def main() -> None:
    bare_cpu, bare_rss = interpreter("import time; time.sleep(3600)")
    _, libs_rss = interpreter(
        "import bleak, paho.mqtt.client, serial, aiosqlite, pydantic, pydantic_settings, time;"
        " time.sleep(3600)"
    )
    with demo_daemon(with_hq=True) as (process, _ready):
        time.sleep(SETTLE_S)
        cpu, rss = measure(process.pid)
    with demo_daemon(with_hq=False) as (process, _ready):
        time.sleep(SETTLE_S)
        cpu_hq_down, rss_hq_down = measure(process.pid)
    print(f"window {WINDOW_S:.0f} s")
    print(f"bare interpreter            CPU {bare_cpu:5.2f} %   RSS {bare_rss:6.1f} MiB")
    print(f"interpreter + field libs    (import only)   RSS {libs_rss:6.1f} MiB")
    print(
        f"storegw demo daemon         CPU {cpu:5.2f} %   RSS {rss:6.1f} MiB"
        f"   (RSS ratio to bare {rss / bare_rss:.1f}x)"
    )
    print(
        f"  the same, HQ down         CPU {cpu_hq_down:5.2f} %   RSS {rss_hq_down:6.1f} MiB"
        "   (ack timeouts re-send the unacknowledged window)"
    )
    print(
        f"goals: CPU < 1 %: {'met' if cpu < 1 else 'NOT met'}; "
        f"RSS <= 90 MiB: {'met' if rss <= 90 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
