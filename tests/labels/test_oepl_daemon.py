"""The real daemon with an ``esl.oepl`` device against a fake OpenEPaperLink access point:
HQ pushes a price, a technician binds a tag the AP lists, and the tag's own "xfer complete"
confirms the job (``storegw label show``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.hq.push import PricePush, push_prices
from tests.daemon import run_cli, running_daemon, short_dir, write_config
from tests.devices.oepl_support import access_point_in_thread
from tests.support.broker import Broker
from tests.waiting import patience

pytestmark = [pytest.mark.slow, pytest.mark.broker, pytest.mark.timeout(120)]

SKU = "4006381333931"


def wait_for(predicate: Callable[[], Any], *, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + patience(timeout)
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def test_a_daemon_confirms_a_label_through_a_fake_oepl_access_point(
    tmp_path: Path, mosquitto: Broker
) -> None:
    hq = tmp_path / "hq.toml"
    hq.write_text(
        f"[mqtt]\nhost = '{mosquitto.host}'\nport = {mosquitto.port}\ntls = false\n"
        f"allow_plaintext = true\n[hq]\ndatabase = '{tmp_path / 'hq.db'}'\n",
        encoding="utf-8",
    )
    prices = tmp_path / "prices.csv"
    prices.write_text(f"sku,price,currency,name\n{SKU},2.50,EUR,Butter 250 g\n", encoding="utf-8")
    with access_point_in_thread(tag_count=2, checkin_s=0.5) as ap, short_dir() as state:
        label = min(ap.tags)
        config = write_config(
            state / "gateway.toml",
            state_dir=state,
            devices=[{"name": "ap-1", "driver": "esl.oepl", "options": {"url": ap.url}}],
        )
        text = config.read_text(encoding="utf-8").replace(
            "[mqtt]\n", f"[mqtt]\nhost = '{mosquitto.host}'\nport = {mosquitto.port}\n"
        )
        config.write_text(text, encoding="utf-8")
        sock = str(state / "control.sock")
        with running_daemon(config, notify_dir=state):
            wait_for(
                lambda: mosquitto.subscribed("retail/v1/test-store/down/prices"),
                what="the daemon subscribed to its prices",
            )
            base = PricePush.load(hq, prices)
            assert asyncio.run(push_prices(base, kind="full", stores=["test-store"])) == {
                "test-store": 1
            }
            wait_for(
                lambda: "2.50" in run_cli("prices", "--socket", sock).stdout,
                what="the price applied",
            )
            bound = run_cli("label", "bind", label, SKU, "--socket", sock)
            assert bound.returncode == 0, bound.stderr

            def confirmed() -> dict[str, Any] | None:
                shown = run_cli("label", "show", label, "--json", "--socket", sock)
                assert shown.returncode == 0, shown.stderr
                result: dict[str, Any] = json.loads(shown.stdout)
                job = result.get("job") or {}
                return result if job.get("state") == "confirmed" else None

            show = wait_for(confirmed, what="the label confirmed by its xfer complete")
    assert show["job"]["model"].startswith("296x128")
    assert label in ap.uploads
    assert ap.tags[label].ap_hash != "0" * 32
