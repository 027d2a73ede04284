"""The gateway SIGKILLed with thousands of label jobs in flight, twice: after each restart every
label converges, and no label is sent more than once per crash.

The real thing end to end: ``storegw run`` as a subprocess against a private mosquitto, prices
pushed by the HQ tool (``push_prices``, unsigned: the store config has no ``hq_public_keys``)
for 200 SKUs, 10 000 simulated labels bound by ``storegw label seed``, one ``simulated.esl``
access point at 500 labels/s (``seconds_per_label`` 1 at ``speed`` 500: 30 000 labels/min, far
above a real radio, so the whole test stays well under a minute on two cores — 200 distinct
faces are rendered once each and shared). With ``queue_ahead_s`` 5 the access point holds about
2 500 pushed but unconfirmed jobs at any instant; the kills come at 25 % and 60 % confirmed.

The simulated labels keep their picture through the kill (reloaded from ``image_dir``, as
physical labels would) and ``push_log`` records every ``push()`` call across processes (whole
lines survive SIGKILL). What the kill left committed is read from the database read-only
between the kill and the restart. Asserted from the push log: every label was sent; in the run
before the first crash each label was sent at most once; after each restart, a label confirmed
before the kill is never sent again, and no label is sent more than once before the next crash
(at most one re-send per label per crash). At the end every job is confirmed with the content
its SKU's face renders to, ``label_shown`` agrees, and the image folder shows exactly those
bytes for every label.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from devices.simulated.esl import SimulatedEsl, SimulatedEslOptions
from devices.simulated.shelf_folder import ShelfFolder
from gateway.clock import FakeClock
from gateway.drivers.contracts import DriverContext
from gateway.hq.push import PricePush, push_prices
from tests.daemon import STOREGW, NotifyListener, run_cli, short_dir, write_config
from tests.support.broker import Broker
from tests.waiting import patience

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LABELS = 10_000
SKUS = 200
KILL_AT = (0.25, 0.60)  # share of labels confirmed when each SIGKILL comes
DEVICE = "esl-1"
ESL_OPTIONS: dict[str, Any] = {
    "seed": 11,
    "label_count": LABELS,
    "seconds_per_label": 1.0,
    "speed": 500.0,  # 500 labels/s
    "checkin_interval_s": 86_400.0,  # about 60 check-ins (SEEN) a second at this speed
    # The access point lists its labels (with their panels) when it is read, so the labels
    # seeded right after the start are drawn at once, not as each first checks in.
    "announce_labels": True,
    "heartbeat_s": 1.0,
}
CONVERGE_S = 120.0  # generous: the radio alone needs 20 s for the shelf


def label_ids() -> tuple[str, ...]:
    """The ids the driver generates for the seed and instance name (deterministic)."""
    options = SimulatedEslOptions.model_validate({**ESL_OPTIONS})
    return SimulatedEsl(DriverContext(DEVICE, FakeClock()), options).label_ids


def sku_of(index: int) -> str:
    return f"SKU{index % SKUS:04d}"


class Gateway:
    """``storegw run`` on one state directory, started again after each SIGKILL."""

    def __init__(self, config: Path, state: Path, log: Path) -> None:
        self.config, self.state, self.log = config, state, log
        self.socket = state / "control.sock"
        self.process: subprocess.Popen[str] | None = None
        self._out: IO[str] | None = None
        self._listener: NotifyListener | None = None

    def start(self) -> None:
        (self.state / "notify.sock").unlink(missing_ok=True)
        self._listener = NotifyListener(self.state / "notify.sock")
        self._out = self.log.open("a", encoding="utf-8")
        self._out.write("\n--- storegw run ---\n")
        self._out.flush()
        self.process = subprocess.Popen(
            [STOREGW, "run", "--config", str(self.config)],
            env={"NOTIFY_SOCKET": str(self._listener.path), "PATH": "/usr/bin:/bin"},
            stdout=self._out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._listener.wait_for("READY=1", timeout=30)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._release()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=patience(30))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._release()

    def _release(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def cli(self, *args: str) -> str:
        result = run_cli(*args, "--socket", str(self.socket))
        assert result.returncode == 0, f"storegw {' '.join(args)}: {result.stderr}"
        return result.stdout

    def diagnosis(self) -> str:
        """What a technician would look at: job counts and a sample, and the daemon's log."""
        try:
            listing = json.loads(self.cli("labels", "--json"))
            listing["jobs"] = listing["jobs"][:5]
            labels = json.dumps(listing, indent=1)[:4000]
        except (AssertionError, ValueError, subprocess.TimeoutExpired) as exc:
            labels = f"(storegw labels failed: {exc})"
        tail = self.log.read_text(encoding="utf-8")[-4000:]
        return f"storegw labels --json:\n{labels}\n--- daemon log (tail) ---\n{tail}"


@contextmanager
def database(path: Path) -> Iterator[sqlite3.Connection]:
    """The gateway's database, read-only (the daemon keeps writing it)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        yield connection
    finally:
        connection.close()


def job_states(db: Path) -> dict[str, tuple[str, str | None]]:
    with database(db) as connection:
        rows = connection.execute("SELECT label, state, content_hash FROM label_jobs").fetchall()
    return {label: (state, content_hash) for label, state, content_hash in rows}


def confirmed_count(db: Path) -> int:
    with database(db) as connection:
        row = connection.execute(
            "SELECT count(*) FROM label_jobs WHERE state = 'confirmed'"
        ).fetchone()
    return int(row[0])


def wait_until(
    condition: Callable[[], bool], *, timeout: float, what: str, gateway: Gateway
) -> None:
    timeout = patience(timeout)
    deadline = time.monotonic() + timeout
    while not condition():
        if gateway.process is not None and gateway.process.poll() is not None:
            pytest.fail(f"the daemon exited while waiting for {what}\n{gateway.diagnosis()}")
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}\n{gateway.diagnosis()}")
        time.sleep(0.1)


def push_log_lines(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(label, digest) for label, digest in (line.split(" ") for line in lines)]


def write_inputs(tmp_path: Path, broker: Broker, ids: tuple[str, ...]) -> tuple[Path, Path, Path]:
    """HQ's tool config (no signing key) with a price list, and the planogram seed file."""
    hq = tmp_path / "hq.toml"
    hq.write_text(
        f"[mqtt]\nhost = '{broker.host}'\nport = {broker.port}\ntls = false\n"
        f"allow_plaintext = true\n[hq]\ndatabase = '{tmp_path / 'hq.db'}'\n",
        encoding="utf-8",
    )
    prices = tmp_path / "prices.csv"
    prices.write_text(
        "sku,price,currency,name\n"
        + "".join(f"{sku_of(n)},{n % 50 + 1}.{n % 100:02d},EUR,Item {n}\n" for n in range(SKUS)),
        encoding="utf-8",
    )
    seed = tmp_path / "planogram.csv"
    seed.write_text(
        "label,sku\n" + "".join(f"{label},{sku_of(n)}\n" for n, label in enumerate(ids)),
        encoding="utf-8",
    )
    return hq, prices, seed


def test_sigkill_with_thousands_of_label_jobs_in_flight(tmp_path: Path, mosquitto: Broker) -> None:
    started = time.monotonic()
    ids = label_ids()
    assert len(set(ids)) == LABELS
    images, push_log = tmp_path / "shelf", tmp_path / "pushes.log"
    hq_config, price_file, seed_file = write_inputs(tmp_path, mosquitto, ids)
    with short_dir() as state:
        config = write_config(
            state / "gateway.toml",
            state_dir=state,
            devices=[
                {
                    "name": DEVICE,
                    "driver": "simulated.esl",
                    "options": {
                        **ESL_OPTIONS,
                        "image_dir": str(images),
                        "push_log": str(push_log),
                    },
                }
            ],
            extra="[labels]\nqueue_ahead_s = 5.0\n[logging]\nlevel = 'WARNING'\n",
        )
        text = config.read_text(encoding="utf-8").replace(
            "[mqtt]\n", f"[mqtt]\nhost = '{mosquitto.host}'\nport = {mosquitto.port}\n"
        )
        config.write_text(text, encoding="utf-8")
        db = state / "gateway.db"
        gateway = Gateway(config, state, tmp_path / "daemon.log")
        try:
            gateway.start()
            # HQ pushes once the store listens (the broker would drop the list otherwise)
            wait_until(
                lambda: mosquitto.subscribed("retail/v1/test-store/down/prices"),
                timeout=60,
                what="the daemon subscribed to its prices",
                gateway=gateway,
            )
            push = PricePush.load(hq_config, price_file)
            assert asyncio.run(push_prices(push, kind="full", stores=["test-store"])) == {
                "test-store": 1
            }
            seeded = gateway.cli("label", "seed", str(seed_file))
            assert seeded.startswith(f"{LABELS} label(s) bound"), seeded

            boundaries: list[int] = []  # push-log lines written before each kill
            confirmed_at_kill: list[dict[str, str | None]] = []
            for share in KILL_AT:
                wanted = int(LABELS * share)

                def progressed(wanted: int = wanted) -> bool:
                    return confirmed_count(db) >= wanted

                wait_until(
                    progressed,
                    timeout=CONVERGE_S,
                    what=f"{wanted} labels confirmed",
                    gateway=gateway,
                )
                gateway.kill()
                jobs = job_states(db)  # what the kill left committed
                unconfirmed = [label for label, (s, _) in jobs.items() if s != "confirmed"]
                in_flight = [
                    label for label, (s, _) in jobs.items() if s in {"submitted", "pending"}
                ]
                assert len(unconfirmed) >= LABELS // 10, (
                    f"only {len(unconfirmed)} of {LABELS} jobs unconfirmed at the kill: "
                    "the test no longer kills the gateway with jobs in flight"
                )
                print(
                    f"SIGKILL at {time.monotonic() - started:.1f} s: "
                    f"{LABELS - len(unconfirmed)} confirmed, {len(in_flight)} at the access "
                    f"point (submitted/pending), {len(unconfirmed)} unconfirmed"
                )
                boundaries.append(len(push_log_lines(push_log)))
                confirmed_at_kill.append(
                    {label: digest for label, (s, digest) in jobs.items() if s == "confirmed"}
                )
                gateway.start()

            def converged() -> bool:
                return confirmed_count(db) == LABELS

            wait_until(converged, timeout=CONVERGE_S, what="every label confirmed", gateway=gateway)
            converged_s = time.monotonic() - started
            listing = json.loads(gateway.cli("labels", "--json"))
            assert listing["counts"] == {"confirmed": LABELS}, listing["counts"]
        finally:
            gateway.stop()
        pushes = push_log_lines(push_log)
        jobs = job_states(db)
        with database(db) as connection:
            shown = dict(connection.execute("SELECT label, content_hash FROM label_shown"))
            pngs = dict(connection.execute("SELECT content_hash, png FROM label_images"))

    print(
        f"converged at {converged_s:.1f} s: {len(pushes)} pushes for {LABELS} labels "
        f"({len(pushes) - LABELS} re-sends over {len(KILL_AT)} crashes)"
    )
    # Every label shows its SKU's content: one hash per SKU, distinct across SKUs.
    by_sku: dict[str, set[str | None]] = {}
    for n, label in enumerate(ids):
        by_sku.setdefault(sku_of(n), set()).add(jobs[label][1])
    assert all(len(hashes) == 1 and None not in hashes for hashes in by_sku.values())
    assert len({next(iter(h)) for h in by_sku.values()}) == SKUS
    expected = {label: digest for label, (_, digest) in jobs.items()}
    assert shown == expected  # what the gateway last heard from each label
    # The folder shows what the gateway believes, byte for byte.
    shelf = ShelfFolder(images, driver=DEVICE).load()
    assert {label: record["content_hash"] for label, record in shelf.items()} == expected
    wrong = [
        label
        for label, digest in expected.items()
        if digest is None or (images / f"{label}.png").read_bytes() != pngs[digest]
    ]
    assert not wrong, f"{len(wrong)} label images differ, e.g. {wrong[:3]}"

    # The push log: sent at least once, at most once per run, never again once confirmed.
    assert {label for label, _ in pushes} == set(ids)
    segments = [
        pushes[start:end]
        for start, end in zip([0, *boundaries], [*boundaries, len(pushes)], strict=True)
    ]
    for run, segment in enumerate(segments):
        again = {label: n for label, n in Counter(label for label, _ in segment).items() if n > 1}
        assert not again, (
            f"run {run}: {len(again)} label(s) sent more than once, e.g. "
            f"{sorted(again.items())[:5]}"
        )
    for crash, confirmed in enumerate(confirmed_at_kill):
        later = {label for segment in segments[crash + 1 :] for label, _ in segment}
        resent = sorted(later & confirmed.keys())
        assert not resent, (
            f"{len(resent)} label(s) confirmed before crash {crash + 1} were sent again, "
            f"e.g. {resent[:5]}"
        )
    # Each label's last push carried the content it ends up showing.
    last = dict(pushes)
    assert last == expected
