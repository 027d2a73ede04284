"""TLS on the MQTT link against a real mosquitto TLS listener with a CA made in the test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.sync.config import MqttConfig
from gateway.sync.link import MqttLink
from tests.support.broker import Broker
from tests.sync.certs import Authority
from tests.sync.support import running, until
from tests.waiting import patience


@pytest.fixture
def pki(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


def tls_broker(tmp_path: Path, pki: Authority, *, require_client_cert: bool) -> Broker:
    server = pki.issue("broker", "localhost", server=True)
    lines = [
        f"cafile {pki.issued.cert}",
        f"certfile {server.cert}",
        f"keyfile {server.key}",
    ]
    if require_client_cert:
        lines += ["require_certificate true", "use_identity_as_username true"]
    broker = Broker(tmp_path, extra="\n".join(lines))
    broker.start()
    return broker


@pytest.fixture
def tls_only(tmp_path: Path, pki: Authority) -> Iterator[Broker]:
    broker = tls_broker(tmp_path, pki, require_client_cert=False)
    try:
        yield broker
    finally:
        broker.stop()


async def test_verified_tls_connects(tls_only: Broker, pki: Authority) -> None:
    config = MqttConfig(host="127.0.0.1", port=tls_only.port, ca_file=pki.issued.cert)
    link = MqttLink(config=config, store_id="s1", boot=1, clock=FakeClock())
    async with running(link):
        await asyncio.wait_for(link.connected.wait(), patience(15))
        await link.publish("retail/v1/s1/up/stock", b"secret")
    assert link.stats.transport == "tls"


async def test_wrong_ca_is_refused_without_plaintext_retry(
    tls_only: Broker, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    stranger = Authority(other, "stranger-ca")
    config = MqttConfig(host="127.0.0.1", port=tls_only.port, ca_file=stranger.issued.cert)
    link = MqttLink(config=config, store_id="s1", boot=1, clock=FakeClock())
    async with running(link):
        error = await until(lambda: link.stats.last_error)
        assert not link.connected.is_set()
    assert "CERTIFICATE_VERIFY_FAILED" in error


async def test_mutual_tls(tmp_path: Path, pki: Authority) -> None:
    broker = tls_broker(tmp_path, pki, require_client_cert=True)
    try:
        client = pki.issue("store", "s1", server=False)
        with_cert = MqttConfig(
            host="127.0.0.1",
            port=broker.port,
            ca_file=pki.issued.cert,
            client_cert=client.cert,
            client_key=client.key,
        )
        link = MqttLink(config=with_cert, store_id="s1", boot=1, clock=FakeClock())
        async with running(link):
            await asyncio.wait_for(link.connected.wait(), patience(15))
            await link.publish("retail/v1/s1/up/stock", b"mtls")
        without = MqttConfig(host="127.0.0.1", port=broker.port, ca_file=pki.issued.cert)
        refused = MqttLink(config=without, store_id="s1", boot=1, clock=FakeClock())
        async with running(refused):
            await until(lambda: refused.stats.last_error)
            assert not refused.connected.is_set()
    finally:
        broker.stop()


async def test_a_ca_file_gone_at_run_time_is_named_and_retried(
    tls_only: Broker, pki: Authority, tmp_path: Path
) -> None:
    """check-config refuses a missing ca_file; one removed later (a botched provisioning) is
    named in the link's last error (``storegw status``), and picked up once it is back."""
    ca_file = tmp_path / "hq-ca.pem"
    ca_file.write_bytes(pki.issued.cert.read_bytes())
    config = MqttConfig(host="127.0.0.1", port=tls_only.port, ca_file=ca_file)
    kept = ca_file.read_bytes()
    ca_file.unlink()
    link = MqttLink(config=config, store_id="s1", boot=1, clock=FakeClock())
    async with running(link):
        await until(lambda: link.stats.last_error is not None)
        assert f"CA file {ca_file}" in (link.stats.last_error or "")
        assert "No such file" in (link.stats.last_error or "")
        ca_file.write_bytes(kept)
        await until(link.connected.is_set, timeout=60)
