"""``storegw label preview`` and ``label show`` against what a running daemon's label shows.

HQ pushes a price and, a little later, a promotion already running (no "was" price from HQ:
the store works out the EU prior price from its own history). The label's picture (the
simulated ESL writes exactly the bytes it shows) must be the preview's PNG, byte for byte, and
``label show --json`` must report the "was" price the label shows.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import SystemClock, isoformat_utc
from gateway.hq.push import PricePush, push_prices
from tests.daemon import run_cli, running_daemon, short_dir, write_config
from tests.support.broker import Broker
from tests.waiting import patience

pytestmark = [pytest.mark.slow, pytest.mark.broker, pytest.mark.timeout(120)]

LABEL = "00000000000000A1"
SKU = "4006381333931"


def wait_for(predicate: Callable[[], Any], *, what: str, timeout: float = 60.0) -> Any:
    timeout = patience(timeout)
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_preview_and_show_match_the_label_on_a_running_promotion(
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
    images = tmp_path / "shelf"
    with short_dir() as state:
        config = write_config(
            state / "gateway.toml",
            state_dir=state,
            devices=[
                {
                    "name": "esl-1",
                    "driver": "simulated.esl",
                    "options": {
                        "labels": [{"label_id": LABEL}],
                        "seconds_per_label": 0.2,
                        "checkin_interval_s": 1.0,
                        "heartbeat_s": 0.5,
                        "image_dir": str(images),
                    },
                }
            ],
            extra='[downlink]\nwas_price = "lowest_30_days"\n',
        )
        text = config.read_text(encoding="utf-8").replace(
            "[mqtt]\n", f"[mqtt]\nhost = '{mosquitto.host}'\nport = {mosquitto.port}\n"
        )
        config.write_text(text, encoding="utf-8")
        sock = str(state / "control.sock")
        with running_daemon(config, notify_dir=state):
            wait_for(  # HQ pushes once the store listens (the broker would drop it otherwise)
                lambda: mosquitto.subscribed("retail/v1/test-store/down/prices"),
                what="the daemon subscribed to its prices",
            )
            base = PricePush.load(hq, prices)
            assert asyncio.run(push_prices(base, kind="full", stores=["test-store"])) == {
                "test-store": 1
            }
            wait_for(
                lambda: "2.50" in run_cli("prices", "--socket", sock).stdout,
                what="the base price applied",
            )
            now = SystemClock().utc_now()
            sale = tmp_path / "sale.csv"
            sale.write_text(
                "id,sku,price,currency,effective_from,effective_to\n"
                f"sale-1,{SKU},1.99,EUR,{isoformat_utc(now)},"
                f"{isoformat_utc(now + timedelta(days=2))}\n",
                encoding="utf-8",
            )
            promotion = PricePush.load(hq, None, promotions_file=sale)
            assert asyncio.run(push_prices(promotion, kind="delta", stores=["test-store"])) == {
                "test-store": 2
            }
            bound = run_cli("label", "bind", LABEL, SKU, "--socket", sock)
            assert bound.returncode == 0, bound.stderr

            def confirmed_sale() -> dict[str, Any] | None:
                shown = run_cli("label", "show", LABEL, "--json", "--socket", sock)
                assert shown.returncode == 0, shown.stderr
                result: dict[str, Any] = json.loads(shown.stdout)
                job = result.get("job") or {}
                face = (result.get("should_show") or {}).get("face") or {}
                if job.get("state") == "confirmed" and face.get("promotion") == "sale-1":
                    return result
                return None

            show = wait_for(confirmed_sale, what="the label confirmed on the sale price")
            picture = (images / f"{LABEL}.png").read_bytes()
            model = show["job"]["model"]
            preview_png = state / "preview.png"
            preview = run_cli(
                "label", "preview", SKU, "--model", model, "--out", str(preview_png),
                "--socket", sock,
            )  # fmt: skip
            assert preview.returncode == 0, preview.stderr
            previewed = preview_png.read_bytes()
            show_text = run_cli("label", "show", LABEL, "--socket", sock).stdout
            prices_text = run_cli("prices", SKU, "--socket", sock).stdout
    face = show["should_show"]["face"]
    assert (face["price"], face["reference_price"]) == ("1.99", "2.50")
    assert show["in_sync"] is True
    assert previewed == picture, "the preview differs from what the label shows"
    assert "promotion sale-1, was 2.50" in show_text
    assert "sale-1: 4006381333931 1.99 EUR" in prices_text
    assert "prior price 2.50 (30 days before" in prices_text
