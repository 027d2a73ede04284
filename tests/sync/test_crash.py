"""The gateway process SIGKILLed again and again mid-flow: every accepted event reaches HQ.

SIGKILL is the stand-in for a power cut (which cannot be tested here): the process gets no
chance to flush anything, so only what was committed survives — and that is what was accepted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.sync.fake_hq import FakeHq
from tests.waiting import patience

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def producer(db: Path, port: int, first: int, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.sync.producer", str(db), str(port), str(first), str(count)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_sigkill_never_loses_an_accepted_event(tmp_path: Path, mosquitto: Broker) -> None:
    hq = FakeHq(mosquitto)
    db = tmp_path / "g.db"
    next_n = 0
    try:
        for _kill in range(5):
            process = producer(db, mosquitto.port, next_n, 100_000)
            assert process.stdout is not None
            accepted = next_n - 1
            deadline = time.monotonic() + patience(30)
            while accepted < next_n + 1500 and time.monotonic() < deadline:
                line = process.stdout.readline()
                if line.startswith("accepted "):
                    accepted = int(line.split()[1])
            process.send_signal(signal.SIGKILL)
            # Lines already written before the kill are accepted events too.
            rest = process.stdout.read()
            process.wait()
            process.stdout.close()
            for line in rest.splitlines():
                if line.startswith("accepted "):
                    accepted = max(accepted, int(line.split()[1]))
            assert accepted >= next_n, "the producer accepted nothing before the kill"
            next_n = accepted + 1
        final = producer(db, mosquitto.port, next_n, 0)
        output, _ = final.communicate(timeout=patience(60))
        assert "drained" in output
        epochs = {epoch for (stream, epoch) in hq.events if stream == "stock"}
        assert len(epochs) == 1  # one database, one epoch, across every restart
        stored = hq.events[("stock", epochs.pop())]
        received = {event["n"] for event in stored.values()}
        missing = set(range(next_n)) - received
        assert not missing, f"{len(missing)} accepted events lost, e.g. {sorted(missing)[:5]}"
        assert sorted(stored) == list(range(1, len(stored) + 1))  # seqs gapless
    finally:
        hq.close()
