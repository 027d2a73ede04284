"""The demo store's extras: a private mosquitto, an in-process HQ, and the live summary.

The demo never touches a broker it did not start: it runs its own mosquitto on a free loopback
port (when mosquitto is installed; otherwise MQTT is switched off for the demo and it says so),
and an in-process ``hq tail`` that stores what the store sends into ``<state>/hq.db`` and
``<state>/hq-events.jsonl`` — the full store → HQ custody loop on one box.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import Gateway

__all__ = ["DEMO_SKUS", "DemoHq", "PrivateBroker"]


@dataclass(slots=True)
class PrivateBroker:
    process: subprocess.Popen[bytes]
    port: int

    @classmethod
    def start(cls, state_dir: Path) -> PrivateBroker | None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            return None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        conf = state_dir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n",
            encoding="utf-8",
        )
        process = subprocess.Popen(  # noqa: S603 - fixed binary, generated config
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return cls(process, port)
            time.sleep(0.05)
        process.kill()
        process.wait()
        return None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass(slots=True)
class _CountingFile:
    """HQ's event log, counting what arrives; the dwell events are read for the summary."""

    path: Path
    lines: int = 0
    cart_visits: int = 0
    aggregates: dict[str, dict[str, Any]] = field(default_factory=dict)  # zone -> the latest
    _handle: Any = field(default=None)

    def write(self, text: str) -> int:
        if self._handle is None:
            self._handle = self.path.open("a", encoding="utf-8")
        self.lines += text.count("\n")
        if '"stream":"dwell"' in text:
            for line in text.splitlines():
                if '"zone.' not in line:
                    continue
                event = json.loads(line)
                if event.get("type") == "zone.exit":
                    self.cart_visits += 1
                elif event.get("type") == "zone.aggregate":
                    self.aggregates[str(event.get("zone"))] = event
        return int(self._handle.write(text))

    def dwell_summary(self) -> str:
        if not self.cart_visits and not self.aggregates:
            return ""
        zones = "; ".join(
            f"{zone}: {a['visits']} visits"
            + (f", median {a['dwell_median_s']:.0f} s" if a.get("dwell_median_s") else "")
            + f", peak {a['peak_occupancy']}"
            for zone, a in sorted(self.aggregates.items())
        )
        return f"\n  HQ dwell: {self.cart_visits} cart visits; last minute {zones or '-'}"

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


_DEMO_KID = "demo-hq"
_DEMO_PRICES = """sku,price,currency,name,reference_price
4006381333931,1.99,EUR,Butter 250 g,
4006381333948,0.89,EUR,Milk 1 l,
4006381333955,2.49,EUR,Coffee 500 g,2.99
4006381333962,3.29,EUR,Olive oil 0.5 l,
"""
#: The SKUs the demo binds its simulated labels to.
DEMO_SKUS = tuple(line.split(",")[0] for line in _DEMO_PRICES.splitlines()[1:])

_FLASH_SKU = "4006381333955"  # Coffee 500 g


@dataclass(slots=True)
class DemoHq:
    """The in-process HQ of the demo: consumes the store's events and pushes signed prices
    through the same tools a real HQ uses (``hq keygen``, ``hq push-prices``)."""

    state_dir: Path
    port: int
    store_id: str = "demo-store"
    output: _CountingFile = field(init=False)
    public_key: str = field(init=False)
    pushed: dict[str, int] = field(default_factory=dict)
    flash_sale: str = ""

    def __post_init__(self) -> None:
        self.output = _CountingFile(self.state_dir / "hq-events.jsonl")
        self.public_key = self._signing_key()
        (self.state_dir / "hq.toml").write_text(
            f"[mqtt]\nhost = '127.0.0.1'\nport = {self.port}\ntls = false\n"
            f"allow_plaintext = true\nclient_id = 'storegw-demo-hq'\n"
            f"[hq]\ndatabase = '{self.state_dir / 'hq.db'}'\n"
            f"[signing]\nkey_file = '{self.state_dir / 'hq.key'}'\nkid = '{_DEMO_KID}'\n",
            encoding="utf-8",
        )
        (self.state_dir / "prices.csv").write_text(_DEMO_PRICES, encoding="utf-8")

    def _signing_key(self) -> str:
        from gateway.hq.keys import generate_key
        from gateway.sync.signing import Signer, encode_public_key

        path = self.state_dir / "hq.key"
        if not path.exists():
            return generate_key(path, _DEMO_KID)
        signer = Signer.from_pem(_DEMO_KID, path.read_bytes())
        return encode_public_key(signer.key.public_key())

    @property
    def store_overrides(self) -> dict[str, Any]:
        """The demo store trusts the demo HQ's key: its prices are signed end to end."""
        return {"hq_public_keys": {_DEMO_KID: self.public_key}}

    async def run(self, gateway: Gateway) -> None:
        import asyncio

        from gateway.hq.tail import load_hq_config, tail

        settings = load_hq_config(self.state_dir / "hq.toml")
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(tail(settings, clock=gateway.clock, out=self.output))  # type: ignore[arg-type]
                group.create_task(self._push_prices())
        finally:
            self.output.close()

    async def _push_prices(self) -> None:
        """A full price list first, then a flash sale starting a minute later (as an HQ
        operator would push it: ``hq push-prices --delta --promotions``), then every 20 s a
        delta that changes one price; a new flash sale every ten minutes."""
        import asyncio
        import random

        from gateway.errors import GatewayError
        from gateway.hq.push import PricePush, push_prices

        await asyncio.sleep(2.0)
        config = self.state_dir / "hq.toml"
        push = PricePush.load(config, self.state_dir / "prices.csv")
        regular = [item for item in push.items if item["sku"] != _FLASH_SKU]  # price changes
        kind = "full"
        rng = random.Random(7)  # noqa: S311 - demo prices, not cryptography
        for tick in itertools.count():
            if tick % 30 == 1:  # 20 s after the full list, then every 10 min
                number = tick // 30 + 1
                promotions = self.state_dir / "flash-sale.csv"
                promotions.write_text(
                    "id,sku,price,currency,reference_price,effective_from,effective_to\n"
                    f"flash-{number},{_FLASH_SKU},1.99,EUR,2.49,+1m,+5m\n",
                    encoding="utf-8",
                )
                push = PricePush.load(config, None, promotions_file=promotions)
                starts = push.promotions[0]["effective_from"][11:19]
                self.flash_sale = f"flash sale flash-{number}: Coffee 500 g 1.99 € from {starts}"
            try:
                self.pushed = await push_prices(push, kind=kind, stores=[self.store_id])  # type: ignore[arg-type]
            except GatewayError as exc:
                print(f"demo HQ: price push failed: {exc}")
            await asyncio.sleep(20.0)
            item = dict(rng.choice(regular))
            item["price"] = f"{rng.randint(49, 499) / 100:.2f}"
            push = PricePush(push.settings, [item], push.signer)
            kind = "delta"

    def summary(self) -> str:
        pushed = f", prices pushed up to v{max(self.pushed.values())}" if self.pushed else ""
        flash = f"\n  HQ {self.flash_sale} UTC" if self.flash_sale else ""
        return (
            f"  HQ (demo, in-process): {self.output.lines} events stored -> {self.output.path}"
            f"{pushed}{flash}{self.output.dwell_summary()}"
        )
