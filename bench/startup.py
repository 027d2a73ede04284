"""Start-to-ready time of `storegw run` (demo config) against bare interpreter start-up.

Ready = the daemon's systemd READY=1 notification (storage open and checked, drivers started,
control socket listening). Goal: < 1.5 s. Prints the median of several runs and the ratio to
`python -c pass` measured in the same run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from _daemon import demo_daemon

RUNS = 7


def bare_interpreter() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def main() -> None:
    baseline = statistics.median(bare_interpreter() for _ in range(RUNS))
    ready_times = []
    for _ in range(RUNS):
        with demo_daemon() as (_process, ready_after):
            ready_times.append(ready_after)
    ready = statistics.median(ready_times)
    print(f"bare interpreter start-up   median {baseline * 1000:7.1f} ms  ({RUNS} runs)")
    print(
        f"storegw run → READY=1       median {ready * 1000:7.1f} ms  "
        f"(min {min(ready_times) * 1000:.1f}, max {max(ready_times) * 1000:.1f})"
    )
    print(f"ratio to bare interpreter   {ready / baseline:7.1f}x")
    print(f"goal < 1500 ms: {'met' if ready < 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
