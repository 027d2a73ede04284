"""The label pipeline through the real daemon and its control socket, as a technician meets it:
labels seeded right after installation, before they check in, wait for their panels (visible in
``storegw labels`` and ``label show``), survive a restart, and get content of their own size
once they check in — also after a panel swap; ``storegw label bind`` retries a failed job.

``storegw run`` is a subprocess against a private mosquitto; prices come from the HQ tool
(unsigned: the store has no ``hq_public_keys``); the access point is ``simulated.esl``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image

from gateway.hq.push import PricePush, push_prices
from tests.daemon import STOREGW, NotifyListener, run_cli, short_dir, write_config
from tests.support.broker import Broker
from tests.waiting import patience

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

T = TypeVar("T")

PANELS = {
    "00000000000000A1": {"width": 296, "height": 128, "palette": "bwr"},
    "00000000000000A2": {"width": 400, "height": 300, "palette": "bwr"},
    "00000000000000A3": {"width": 800, "height": 480, "palette": "bwr"},
}
SKU = "4006381333931"


def panel_text(panel: dict[str, Any]) -> str:
    return f"{panel['width']}x{panel['height']}:{panel['palette']}"


class Store:
    """A store's state directory; ``run`` starts the daemon on it with the given devices."""

    def __init__(self, state: Path, broker: Broker, log: Path) -> None:
        self.state, self.broker, self.log = state, broker, log
        self.socket = state / "control.sock"

    @contextmanager
    def run(self, devices: list[dict[str, Any]], labels: str = "") -> Iterator[None]:
        config = write_config(
            self.state / "gateway.toml",
            state_dir=self.state,
            devices=devices,
            extra=f"[labels]\n{labels}\n[logging]\nlevel = 'INFO'\n",
        )
        text = config.read_text(encoding="utf-8").replace(
            "[mqtt]\n", f"[mqtt]\nhost = '{self.broker.host}'\nport = {self.broker.port}\n"
        )
        config.write_text(text, encoding="utf-8")
        (self.state / "notify.sock").unlink(missing_ok=True)
        listener = NotifyListener(self.state / "notify.sock")
        with self.log.open("a", encoding="utf-8") as out:
            process = subprocess.Popen(
                [STOREGW, "run", "--config", str(config)],
                env={"NOTIFY_SOCKET": str(listener.path), "PATH": "/usr/bin:/bin"},
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                listener.wait_for("READY=1", timeout=30)
                yield
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    assert process.wait(timeout=30) == 0, self.log.read_text(encoding="utf-8")
                finally:
                    if process.poll() is None:
                        process.kill()
                        process.wait()
                    listener.close()

    def cli(self, *args: str) -> str:
        result = run_cli(*args, "--socket", str(self.socket))
        assert result.returncode == 0, f"storegw {' '.join(args)}: {result.stderr}"
        return result.stdout

    def labels(self) -> dict[str, Any]:
        listing: dict[str, Any] = json.loads(self.cli("labels", "--json"))
        return listing

    def show(self, label: str) -> dict[str, Any]:
        shown: dict[str, Any] = json.loads(self.cli("label", "show", label, "--json"))
        return shown

    def wait(self, condition: Callable[[], T | None], what: str, timeout: float = 60) -> T:
        timeout = patience(timeout)
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                tail = self.log.read_text(encoding="utf-8")[-3000:]
                pytest.fail(f"not within {timeout:g} s: {what}\n--- daemon log ---\n{tail}")
            time.sleep(0.1)

    def push_prices(self, tmp_path: Path, price: str) -> None:
        hq = tmp_path / "hq.toml"
        hq.write_text(
            f"[mqtt]\nhost = '{self.broker.host}'\nport = {self.broker.port}\ntls = false\n"
            f"allow_plaintext = true\n[hq]\ndatabase = '{tmp_path / 'hq.db'}'\n",
            encoding="utf-8",
        )
        prices = tmp_path / "prices.csv"
        prices.write_text(f"sku,price,currency,name\n{SKU},{price},EUR,Milk 1 l\n", "utf-8")
        push = PricePush.load(hq, prices)
        # Pushed once the daemon listens, and waited for until applied: a price arriving late
        # would re-plan the label's content in the middle of the test.
        self.wait(
            lambda: self.broker.subscribed("retail/v1/test-store/down/prices"),
            "the daemon subscribed to its prices",
        )
        sent = asyncio.run(push_prices(push, kind="full", stores=["test-store"]))
        assert sent == {"test-store": 1}
        self.wait(lambda: "price version v1" in self.cli("prices"), "the prices applied")


def esl(images: Path, panels: dict[str, dict[str, Any]], **options: Any) -> dict[str, Any]:
    return {
        "name": "esl-1",
        "driver": "simulated.esl",
        "options": {
            "seed": 4,
            "labels": [{"label_id": label, "model": panel} for label, panel in panels.items()],
            "seconds_per_label": 0.05,
            "image_dir": str(images),
            **options,
        },
    }


def png_size(path: Path) -> tuple[int, int] | None:
    if not path.exists():
        return None
    with Image.open(path) as image:
        return image.size


def test_labels_seeded_before_they_check_in_wait_then_show_content_for_their_panels(
    tmp_path: Path, mosquitto: Broker
) -> None:
    images = tmp_path / "shelf"
    with short_dir() as state:
        store = Store(state, mosquitto, tmp_path / "daemon.log")
        seed = tmp_path / "planogram.csv"
        seed.write_text("label,sku\n" + "".join(f"{label},{SKU}\n" for label in PANELS), "utf-8")

        # Installation: prices and the planogram arrive; no label has checked in yet (the
        # first check-in is hours away).
        with store.run([esl(images, PANELS, checkin_interval_s=86_400.0)]):
            store.push_prices(tmp_path, "1.19")
            assert store.cli("label", "seed", str(seed)).startswith("3 label(s) bound")
            store.wait(
                lambda: store.labels()["counts"] == {"awaiting_model": 3},
                "every job waiting for its label's panel",
            )
            assert "3 label job(s): awaiting_model 3" in store.cli("labels")
            shown = store.show("00000000000000A3")
            assert (shown["job"]["state"], shown["panel"]) == ("awaiting_model", None)
            text = store.cli("label", "show", "00000000000000A3")
            assert "job       awaiting_model" in text
            assert "panel     unknown: drawn once the label reports it" in text

        # After a restart the labels check in, and each gets content drawn for its panel.
        def converged(panels: dict[str, dict[str, Any]]) -> bool:
            if store.labels()["counts"] != {"confirmed": len(panels)}:
                return False
            for label, panel in panels.items():
                job = store.show(label)["job"]
                size = png_size(images / f"{label}.png")
                if job["model"] != panel_text(panel) or size != (panel["width"], panel["height"]):
                    return False
            return True

        with store.run([esl(images, PANELS, checkin_interval_s=1.0)]):
            store.wait(lambda: converged(PANELS), "every label showing content for its panel")
            assert store.show("00000000000000A3")["panel"] == "800x480:bwr"

        # A technician swaps the first label's 2.9" panel for a 7.5" one while the gateway is
        # off; it starts blank, checks in with its new model and gets content of its size.
        swapped = {**PANELS, "00000000000000A1": PANELS["00000000000000A3"]}
        with store.run([esl(images, swapped, checkin_interval_s=1.0)]):
            store.wait(lambda: converged(swapped), "the swapped label redrawn for its panel")
            audit = store.show("00000000000000A1")["audit"]
            assert "failed_permanent" not in {entry["state"] for entry in audit}


def test_label_bind_of_the_same_sku_retries_a_failed_job(tmp_path: Path, mosquitto: Broker) -> None:
    label = "00000000000000A1"
    push_log = tmp_path / "pushes.log"

    def pushes() -> int:
        if not push_log.exists():
            return 0
        return len(push_log.read_text(encoding="utf-8").splitlines())

    with short_dir() as state:
        store = Store(state, mosquitto, tmp_path / "daemon.log")
        device = esl(
            tmp_path / "shelf",
            {label: PANELS[label]},
            checkin_interval_s=0.5,
            failure_rate=1.0,  # the label is out of radio range: every delivery fails
            push_log=str(push_log),
        )
        # The first retry would come only after several minutes.
        with store.run([device], labels="retry_initial_s = 3600.0\nretry_max_s = 3600.0\n"):
            store.push_prices(tmp_path, "1.19")
            first = store.cli("label", "bind", label, SKU)
            assert f"label {label} shows {SKU} (local override)" in first
            job = store.wait(
                lambda: (j := store.show(label)["job"]) and j["state"] == "failed" and j,
                "the first delivery failed",
            )
            assert job["next_attempt_at"] is not None
            assert pushes() == 1

            again = store.cli("label", "bind", label, SKU)  # the technician moved the label
            store.wait(lambda: pushes() == 2, "the failed job sent again at once")
            assert "its job: queued" in again
            audit = store.show(label)["audit"]
            assert any(
                entry["event"] == "requeued"
                and entry["detail"] == "retried by a technician (storegw label bind)"
                for entry in audit
            ), audit
