"""Text views of presence for technicians: ``storegw zones`` and ``storegw beacons``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["render_beacons", "render_scan", "render_zones"]


def render_zones(result: Mapping[str, Any]) -> str:
    """Occupancy and dwell now per zone; receivers configured but never heard stand out."""
    if not result.get("enabled"):
        return "presence is off: no [[presence.zones]] or [[presence.fixed_beacons]] configured"
    zones = result.get("zones") or []
    lines = [
        f"{'zone':<20} {'now':>4} {'longest dwell now':>18}  receivers",
    ]
    for zone in zones:
        longest = zone.get("longest_dwell_now_s")
        dwell = "-" if longest is None else f"{longest:.0f} s"
        receivers = ", ".join(zone.get("receivers") or [])
        unheard = zone.get("receivers_unheard") or []
        if unheard:
            receivers += f"  (NEVER HEARD: {', '.join(unheard)} — check the name)"
        lines.append(
            f"{zone.get('zone', '?'):<20} {zone.get('occupancy', 0):>4} {dwell:>18}  {receivers}"
        )
    lines.append(
        f"tracking {result.get('tracked', 0)} tags/devices; {result.get('adverts', 0)} adverts "
        f"heard; {result.get('visits_reported', 0)} visits ended since start"
    )
    return "\n".join(lines)


def render_beacons(result: Mapping[str, Any]) -> str:
    """Fixed beacons: problems first (missing, battery low), then the rest."""
    if not result.get("enabled"):
        return "presence is off: no fixed beacons configured ([[presence.fixed_beacons]])"
    beacons = result.get("beacons") or []
    if not beacons:
        return "no fixed beacons configured ([[presence.fixed_beacons]])"
    rank = {"missing": 0, "battery low": 1, "ok": 2}
    lines = [f"{'beacon':<20} {'state':<12} {'last seen':>10} {'battery':>9} {'temp':>7}  via"]
    for beacon in sorted(beacons, key=lambda b: (rank.get(b.get("state"), 3), b.get("name"))):
        ago = beacon.get("seconds_ago")
        seen = "never" if ago is None else f"{ago:.0f} s ago"
        battery = "-" if beacon.get("battery_mv") is None else f"{beacon['battery_mv']} mV"
        temp = "-" if beacon.get("temperature_c") is None else f"{beacon['temperature_c']:.1f} C"
        via = "-"
        if beacon.get("receiver"):
            via = f"{beacon['receiver']} ({beacon.get('rssi')} dBm)"
        lines.append(
            f"{beacon.get('name', '?'):<20} {str(beacon.get('state')).upper():<12} {seen:>10} "
            f"{battery:>9} {temp:>7}  {via}"
        )
    return "\n".join(lines)


def render_scan(result: Mapping[str, Any]) -> str:
    """``storegw ble scan``: per receiver, who it heard, strongest first."""
    heard = result.get("heard") or []
    if not heard:
        return (
            f"nothing heard in {result.get('seconds', 0):g} s: is a beacon driver configured and "
            "running (storegw devices)? Is the adapter up (bluetoothctl show)?"
        )
    header = f"{'receiver':<14} {'who':<44} {'kind':<22} {'adverts':>7} {'max':>5} {'median':>7}"
    lines = [header + "  power/battery"]
    for row in heard:
        extra = []
        if row.get("measured_power") is not None:
            extra.append(f"{row['measured_power']} dBm @1m")
        if row.get("battery_mv") is not None:
            extra.append(f"{row['battery_mv']} mV")
        if row.get("temperature_c") is not None:
            extra.append(f"{row['temperature_c']:.1f} C")
        lines.append(
            f"{row['receiver']:<14} {row['who']:<44} {row['kind']:<22} {row['adverts']:>7} "
            f"{row['rssi_max']:>5} {row['rssi_median']:>7.1f}  {', '.join(extra)}"
        )
    dropped = result.get("senders_dropped") or 0
    lines.append(
        f"{result.get('adverts', 0)} adverts in {result.get('seconds', 0):g} s"
        + (f"; {dropped} adverts from further senders not listed" if dropped else "")
        + "; devices are shown by pseudonym (docs/privacy.md)"
    )
    return "\n".join(lines)
