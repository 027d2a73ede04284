"""The demo's live summary: what the virtual store's devices are doing, every few seconds.

Plain lines on stdout (no terminal control codes) so it works headless, piped and in CI logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.drivers.contracts import LabelModel

__all__ = ["format_live_summary", "print_live_summary"]


def format_live_summary(status: dict[str, Any]) -> str:
    clock = "synced" if status["clock"]["synchronized"] else "UNSYNCED"
    link = (status.get("mqtt") or {}).get("link") or {}
    uplink = "HQ link up" if link.get("connected") else "HQ link down"
    backlog = sum(stream.get("depth", 0) for stream in status.get("outbox", []))
    downlink = status.get("downlink") or {}
    prices = ""
    if downlink:
        signing = "signed" if downlink.get("signing") != "UNSIGNED" else "UNSIGNED"
        prices = f" | prices v{downlink.get('price_version', 0)} ({signing})"
    header = (
        f"--- store {status['store']['id']} | up {status['uptime_s']:.0f}s | clock {clock}"
        f" | {uplink} | outbox {backlog} waiting{prices}"
    )
    lines = [header]
    readings: dict[str, dict[str, Any]] = status.get("readings", {})
    for driver in status.get("drivers", []):
        name = driver["name"]
        digest = readings.get(name, {})
        detail = ""
        if "weights" in digest:
            detail = "  ".join(
                f"{channel}={w['net_grams']:.0f}g{'' if w['stable'] else '~'}"
                for channel, w in digest["weights"].items()
                if w["net_grams"] is not None
            )
        elif "beacons_recent" in digest:
            detail = f"{digest['beacons_recent']} beacons in range"
            if "strongest_rssi" in digest:
                detail += f", strongest {digest['strongest_rssi']} dBm"
        elif "label_reports" in digest:
            detail = ", ".join(f"{kind} {count}" for kind, count in digest["label_reports"].items())
        error = f"  last error: {driver['last_error']}" if driver.get("last_error") else ""
        lines.append(
            f"  {name:<14} {driver['health']:<9} {driver['readings']:>7} readings  {detail}{error}"
        )
    return "\n".join(lines)


async def print_live_summary(
    gateway: Gateway, interval: float, extra: Callable[[], str] | None = None
) -> None:
    while True:
        await asyncio.sleep(interval)
        status = await gateway.status()
        text = format_live_summary(status)
        if extra is not None:
            text += "\n" + extra()
        print(text, flush=True, file=sys.stdout)


async def exercise_labels(gateway: Gateway, interval: float) -> None:
    """Demo only: refresh one label at a time so the ESL radio has work to show.

    The real label pipeline (prices → rendering → jobs) arrives with the labels feature; until
    then the demo sends a placeholder image through the same driver contract.
    """
    from gateway.drivers.contracts import (
        DeviceFamily,
        LabelContent,
        LabelDriver,
        LabelReport,
        Reading,
    )

    known: dict[str, dict[str, LabelReport]] = {}

    def remember(device: str, reading: Reading) -> None:
        if isinstance(reading, LabelReport) and reading.model is not None:
            known.setdefault(device, {})[reading.label_id] = reading

    unsubscribe = gateway.hub.subscribe(remember)
    turn = 0
    try:
        while True:
            await asyncio.sleep(interval)
            supervisor = gateway.supervisor
            if supervisor is None:
                continue
            for device in gateway.devices:
                labels = known.get(device.name)
                driver = supervisor.driver(device.name)
                if device.plugin.family is not DeviceFamily.ESL or not labels or driver is None:
                    continue
                assert isinstance(driver, LabelDriver)
                report = sorted(labels.values(), key=lambda r: r.label_id)[turn % len(labels)]
                assert report.model is not None
                image = _placeholder_png(report.model, f"{report.label_id}\ndemo #{turn}")
                await driver.push(
                    LabelContent(
                        label_id=report.label_id,
                        image_png=image,
                        content_hash=hashlib.md5(image, usedforsecurity=False).hexdigest(),
                        model=report.model,
                    )
                )
            turn += 1
    finally:
        unsubscribe()


def _placeholder_png(model: LabelModel, text: str) -> bytes:
    """A real PNG of the panel's size, so a simulated ESL's image folder shows something."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("1", (model.width, model.height), 1)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, model.width - 1, model.height - 1), outline=0)
    draw.multiline_text((6, 6), text, fill=0, font_size=max(10, model.height // 8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
