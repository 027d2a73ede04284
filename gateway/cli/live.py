"""The demo's live summary: what the virtual store's devices are doing, every few seconds.

Plain lines on stdout (no terminal control codes) so it works headless, piped and in CI logs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import Gateway

__all__ = ["bind_demo_labels", "format_live_summary", "print_live_summary"]


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
    slots = status.get("slots") or []
    if slots:
        lines.append("  shelves:  " + "  ".join(_slot_text(slot) for slot in slots))
    presence = status.get("presence") or {}
    if presence.get("enabled"):
        zones = "  ".join(f"{z}: {n}" for z, n in sorted((presence.get("occupancy") or {}).items()))
        lines.append(
            f"  presence: {zones or 'no zones'} in zone now, "
            f"{presence.get('visits_reported', 0)} visits ended  (storegw zones, storegw beacons)"
        )
    labels = status.get("labels")
    if labels:
        counts = labels.get("counts") or {}
        text = ", ".join(f"{state} {count}" for state, count in sorted(counts.items()))
        lines.append(f"  labels: {text or 'no jobs yet'}  (storegw labels for details)")
    return "\n".join(lines)


def _slot_text(slot: dict[str, Any]) -> str:
    count = "?" if slot.get("count") is None else str(slot["count"])
    if slot.get("stale") and slot.get("last_count") is not None:
        count = f"?({slot['last_count']})"  # the last count, not a current one
    state = str(slot.get("state", "?"))
    mark = "" if state == "ok" else f" {state.upper()}"
    if slot.get("faults"):
        mark += " FAULT:" + ",".join(slot["faults"])
    return f"{slot['slot']}={count}{mark}"


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


async def bind_demo_labels(gateway: Gateway, skus: Sequence[str]) -> None:
    """Demo only: bind each simulated label, once it has checked in, to the demo's SKUs in
    turn (every SKU gets labels), as an installer's seed file would (source ``seed``: HQ's
    ``bind`` and a technician's win over it). The label pipeline does the rest: jobs,
    rendering, pushes through the simulated ESL radio, confirmations, receipts."""
    from gateway.drivers.contracts import LabelReport, Reading

    heard: set[str] = set()

    def remember(_device: str, reading: Reading) -> None:
        if isinstance(reading, LabelReport):
            heard.add(reading.label_id)

    unsubscribe = gateway.hub.subscribe(remember)
    bound: set[str] = set()
    try:
        while True:
            await asyncio.sleep(1.0)
            bindings = gateway.bindings
            if bindings is None or not skus:
                continue
            new = sorted(heard - bound)
            if new:
                await bindings.seed(
                    [(label, skus[(len(bound) + n) % len(skus)]) for n, label in enumerate(new)]
                )
                bound.update(new)
    finally:
        unsubscribe()
