"""storegw's uplink and the reference HQ consumer together, over a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path

import pytest

from gateway.clock import SystemClock
from gateway.hq.tail import HqConsumerConfig, HqSettings, tail
from gateway.sync.config import MqttConfig
from tests.daemon import run_cli
from tests.store.probes import probe
from tests.support.broker import Broker
from tests.sync.support import drained, gateway, until


async def test_store_to_hq_custody_end_to_end(tmp_path: Path, mosquitto: Broker) -> None:
    out = io.StringIO()
    settings = HqSettings(
        mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, tls=False, allow_plaintext=True),
        hq=HqConsumerConfig(database=tmp_path / "hq.db", share_group="ingest"),
    )
    hq_task = asyncio.create_task(tail(settings, clock=SystemClock(), out=out), name="hq")
    try:
        await until(lambda: mosquitto.subscribed("$share/ingest/retail/v1/+/up/#"))
        async with gateway(tmp_path / "g.db", mosquitto) as gw:
            await asyncio.gather(
                *(gw.outbox.append("stock", probe("stock.changed", {"n": n})) for n in range(1500))
            )
            assert await drained(gw.outbox, 30) == 0  # HQ took custody of everything
            epoch = gw.outbox.epoch
    finally:
        hq_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hq_task
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    stock = [line for line in lines if line["stream"] == "stock"]
    assert [line["seq"] for line in stock] == list(range(1, 1501))
    assert {line["epoch"] for line in stock} == {epoch}
    assert [line["n"] for line in stock] == list(range(1500))


def test_hq_tail_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "hq.toml"
    config.write_text("[mqtt]\nport = 0\n[hq]\nshare_group = 'bad group'\n", encoding="utf-8")
    result = run_cli("hq", "tail", "--config", str(config), "--duration", "1")
    assert result.returncode == 78
    assert "mqtt.port" in result.stderr
    assert "hq.share_group" in result.stderr


@pytest.mark.slow
def test_hq_tail_runs_as_a_command(tmp_path: Path, mosquitto: Broker) -> None:
    config = tmp_path / "hq.toml"
    config.write_text(
        f"[mqtt]\nhost = '{mosquitto.host}'\nport = {mosquitto.port}\ntls = false\n"
        f"allow_plaintext = true\n[hq]\ndatabase = '{tmp_path / 'hq.db'}'\n",
        encoding="utf-8",
    )
    result = run_cli("hq", "tail", "--config", str(config), "--duration", "1.5")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "hq.db").exists()
