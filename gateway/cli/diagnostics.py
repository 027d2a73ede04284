"""Human-readable rendering of the daemon's diagnostics (``storegw status``, ``devices``).

Pure functions from the control socket's JSON to text, so a technician sees what is wrong in
seconds: problems first in each line, no scrolling through healthy noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "format_bytes",
    "format_duration",
    "render_alerts",
    "render_devices",
    "render_slot_reading",
    "render_slots",
    "render_status",
]

_HEALTH_MARK = {
    "running": "ok  ",
    "starting": "..  ",
    "degraded": "WARN",
    "failed": "FAIL",
    "stopped": "--  ",
    "disabled": "--  ",
}


def format_bytes(count: float | None) -> str:
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - unreachable


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _driver_line(driver: Mapping[str, Any]) -> str:
    health = str(driver.get("health", "?"))
    mark = _HEALTH_MARK.get(health, "?   ")
    line = (
        f"  [{mark}] {driver.get('name', '?'):<16} {driver.get('driver', '?'):<18} "
        f"{health:<9} readings={driver.get('readings', 0)} restarts={driver.get('restarts', 0)}"
    )
    if driver.get("detail"):
        line += f"\n           {driver['detail']}"
    if driver.get("last_error"):
        line += (
            f"\n           last error: {driver['last_error']} (at {driver.get('last_error_at')})"
        )
    if driver.get("next_retry_in_s") is not None:
        line += f"\n           next retry in {float(driver['next_retry_in_s']):.1f} s"
    return line


def _buffer_line(buffer: Mapping[str, Any]) -> str:
    used, budget = buffer.get("used_bytes") or 0, buffer.get("budget_bytes") or 0
    share = f"{100 * used / budget:.0f} %" if budget else "?"
    line = f"buffer:   {format_bytes(used)} of {format_bytes(budget)} budget ({share})"
    if buffer.get("paused"):
        line += f", PAUSED: {', '.join(buffer['paused'])}"
    dropped = buffer.get("shed") or {}
    if dropped:
        line += "; dropped " + ", ".join(f"{n} {key}" for key, n in dropped.items())
    refused = buffer.get("refused") or {}
    if refused:
        line += "; REFUSED " + ", ".join(f"{n} {key}" for key, n in refused.items())
    return line


def render_status(status: Mapping[str, Any]) -> str:
    store = status.get("store", {})
    clock = status.get("clock", {})
    lines = [
        (
            f"storegw {status.get('version', '?')} — store {store.get('id', '?')} "
            f"({store.get('timezone', '?')}), pid {status.get('pid', '?')}, "
            f"up {format_duration(status.get('uptime_s'))}"
        ),
    ]
    if clock.get("synchronized"):
        lines.append(f"clock:    synchronised ({clock.get('utc_now')})")
    else:
        lines.append(
            f"clock:    NOT SYNCHRONISED ({clock.get('utc_now')}): events are flagged "
            "'unsynced', wall-time schedules wait"
        )
    mqtt = status.get("mqtt") or {}
    if mqtt:
        lines.append(_mqtt_line(mqtt))
    lines.extend(
        f"outbox:   {stream['stream']:<9} {stream['depth']} waiting "
        f"({format_bytes(stream.get('bytes'))}, oldest {stream.get('oldest_ts')}), "
        f"HQ has up to seq {stream.get('acked_seq')}"
        for stream in status.get("outbox") or []
        if stream.get("depth")
    )
    downlink = status.get("downlink")
    if downlink:
        if downlink.get("signing") == "UNSIGNED":
            lines.append(
                f"prices:   v{downlink.get('price_version')}, UNSIGNED: no HQ keys configured, "
                "anyone who can publish to the broker can change prices"
            )
        else:
            lines.append(
                f"prices:   v{downlink.get('price_version')}, signed "
                f"(keys {', '.join(downlink.get('key_ids') or [])})"
            )
    refused = _refused_line(status)
    if refused:
        lines.append(refused)
    buffer = status.get("buffer")
    if buffer:
        lines.append(_buffer_line(buffer))
    storage = status.get("storage")
    if storage:
        lines.extend(_storage_lines(storage))
    reload_info = (status.get("config") or {}).get("last_reload")
    if reload_info and not reload_info.get("ok"):
        lines.append(f"config:   LAST RELOAD REFUSED at {reload_info.get('at')}:")
        lines.extend(f"          {line}" for line in str(reload_info.get("detail")).splitlines())
    if status.get("alerts_active"):
        lines.append(f"alerts:   {status['alerts_active']} active (storegw alerts)")
    drivers = status.get("drivers") or []
    problems = [d for d in drivers if d.get("health") not in {"running", "starting"}]
    lines.append(
        f"drivers:  {len(drivers) - len(problems)}/{len(drivers)} healthy"
        + (f", {len(problems)} need attention" if problems else "")
    )
    lines.extend(_driver_line(driver) for driver in sorted(drivers, key=_problem_first))
    return "\n".join(lines)


def _storage_lines(storage: Mapping[str, Any]) -> list[str]:
    lines = [
        (
            f"storage:  {storage.get('path')} {format_bytes(storage.get('size_bytes'))}, "
            f"{format_bytes(storage.get('free_disk_bytes'))} free, "
            f"schema v{storage.get('schema_version')}, boot #{storage.get('boot')}"
        )
    ]
    if storage.get("full_since"):
        lines.append(
            f"          DISK FULL since {storage['full_since']}: writes are refused "
            f"({storage.get('refused_while_full', 0)} rows so far)"
        )
    if storage.get("found_empty"):
        lines.append(
            f"          FOUND EMPTY at this start (0-byte file): started anew, "
            f"epoch {storage.get('epoch')}"
        )
    return lines


def _refused_line(status: Mapping[str, Any]) -> str | None:
    """What HQ's side sent that the store refused (each count is its alert's, see
    ``storegw alerts``: downlink.malformed, downlink.signature, downlink.command)."""
    parts = []
    malformed = (status.get("mqtt") or {}).get("malformed") or {}
    if malformed.get("refused"):
        topics = ", ".join(f"{t} {n}" for t, n in sorted((malformed.get("by_topic") or {}).items()))
        parts.append(f"{malformed['refused']} unreadable ({topics})")
    prices = (status.get("downlink") or {}).get("refused")
    if prices:
        parts.append(f"{prices} price message(s) not authentic")
    commands = (status.get("commands") or {}).get("refused")
    if commands:
        parts.append(f"{commands} command(s)")
    if not parts:
        return None
    line = "refused:  " + "; ".join(parts)
    if malformed.get("last_reason"):
        line += f"\n          last unreadable: {malformed['last_reason']}"
    return line


def _mqtt_line(mqtt: Mapping[str, Any]) -> str:
    transport = mqtt.get("transport", "?")
    where = f"{mqtt.get('host')}:{mqtt.get('port')} ({transport})"
    if transport != "tls":
        where += " <-- plaintext, allowed by config"
    if mqtt.get("enabled") is False:
        return f"mqtt:     disabled in config ({where})"
    link = mqtt.get("link") or {}
    if link.get("connected"):
        state = f"connected since {link.get('connected_since')}"
    elif link:
        state = f"NOT CONNECTED: {link.get('last_error') or 'connecting'}"
    else:
        state = "not started"
    line = f"mqtt:     {where}, {state}, reconnects {link.get('reconnects', 0)}"
    ack = mqtt.get("last_hq_ack")
    if ack:
        line += (
            f"\n          last HQ ack: {ack.get('stream')} seq {ack.get('seq')} at {ack.get('at')}"
        )
    for stream, error in (mqtt.get("parked_streams") or {}).items():
        line += f"\n          stream {stream} PARKED: {error}"
    return line


def _problem_first(driver: Mapping[str, Any]) -> tuple[int, str]:
    order = {"failed": 0, "degraded": 1, "starting": 2, "running": 3}
    return order.get(str(driver.get("health")), 4), str(driver.get("name"))


def render_alerts(result: Mapping[str, Any]) -> str:
    active = result.get("active") or []
    if not active:
        return "no active alerts"
    order = {"critical": 0, "warning": 1, "info": 2}
    ranked = sorted(active, key=lambda a: (order.get(a.get("severity"), 3), a.get("key")))
    return "\n".join(
        f"{str(alert.get('severity', '?')).upper():<8} {alert.get('key')}  "
        f"since {alert.get('raised_at')}\n         {alert.get('message')}"
        for alert in ranked
    )


def render_prices(result: Mapping[str, Any]) -> str:
    downlink = result.get("downlink") or {}
    signing = downlink.get("signing", "?")
    if signing == "UNSIGNED":
        signing = "UNSIGNED (no HQ keys: anyone on the broker can change prices)"
    else:
        signing = f"signed, keys {', '.join(downlink.get('key_ids') or [])}"
    lines = [
        (
            f"price version v{result.get('head_version', 0)}, "
            f"{result.get('total_skus', 0)} SKU(s), {signing}, at {result.get('at')}"
        )
    ]
    prices = result.get("prices") or []
    if prices:
        lines.append(f"{'SKU':<20} {'PRICE':>10} {'CUR':<4} {'WAS':>10}  {'VERSION':>7}  PROMOTION")
        lines.extend(
            f"{p.get('sku', '?'):<20} {p.get('price', '?'):>10} {p.get('currency', ''):<4} "
            f"{p.get('reference_price') or '':>10}  {p.get('version', ''):>7}  "
            f"{p.get('promotion') or ''}"
            for p in prices
        )
    else:
        lines.append("no prices")
    promotions = result.get("promotions") or []
    if promotions:
        lines.append("scheduled / running promotions:")
        lines.extend(
            f"  {p.get('id')}: {p.get('sku')} {p.get('price')} {p.get('currency')} "
            f"from {p.get('effective_from')} to {p.get('effective_to')} (v{p.get('version')})"
            f"{', progressive' if p.get('progressive') else ''}{_prior(p)}"
            for p in promotions
        )
    history = result.get("history")
    if history:
        lines.append("history:")
        lines.extend(
            f"  v{h.get('version')} {h.get('at')} {h.get('change')} "
            f"{h.get('price') or ''} {h.get('currency') or ''}"
            for h in history
        )
    return "\n".join(lines)


def _prior(promotion: Mapping[str, Any]) -> str:
    """The EU prior price of a promotion listed by ``storegw prices``."""
    if promotion.get("reduction_from") is None:
        return ", prior price: being worked out"
    prior = promotion.get("prior_price") or "none known"
    return f", prior price {prior} (30 days before {promotion['reduction_from']})"


def render_devices(result: Mapping[str, Any]) -> str:
    devices = result.get("devices") or []
    if not devices:
        return "no devices configured"
    lines = [f"{'NAME':<16} {'DRIVER':<18} {'FAMILY':<7} {'HEALTH':<9} LAST ERROR"]
    for device in devices:
        health = device.get("health") if device.get("enabled") else "disabled"
        lines.append(
            f"{device.get('name', '?'):<16} {device.get('driver', '?'):<18} "
            f"{device.get('family') or '?':<7} {health:<9} {device.get('last_error') or ''}"
        )
    return "\n".join(lines)


def render_labels(result: Mapping[str, Any]) -> str:
    """``storegw labels``: label jobs per state, flips ahead, drivers, and the listing."""
    counts = result.get("counts") or {}
    order = (
        "awaiting_model",
        "queued",
        "submitted",
        "pending",
        "confirmed",
        "failed",
        "failed_permanent",
    )
    summary = ", ".join(f"{state} {counts[state]}" for state in order if counts.get(state))
    lines = [
        (
            f"{result.get('total', 0)} label job(s): {summary or 'none'}; "
            f"{result.get('unreachable', 0)} unreachable (no ESL driver has heard them)"
        )
    ]
    unbound = result.get("unbound_labels") or []
    if unbound:
        shown = ", ".join(str(u["label"]) for u in unbound[:10])
        more = f" and {result['unbound'] - 10} more" if result.get("unbound", 0) > 10 else ""
        lines.append(
            f"{result.get('unbound', len(unbound))} label(s) heard but not bound: {shown}{more} "
            "(storegw label bind / label seed)"
        )
    lines.extend(_fleet_health_lines(result.get("health")))
    clock = result.get("clock") or {}
    if clock.get("note"):
        lines.append(f"WARNING: {clock['note']}")
    for name, driver in (result.get("drivers") or {}).items():
        if driver.get("running"):
            lines.append(f"driver {name}: running, {driver['labels_per_minute']:g} labels/min")
        else:
            lines.append(f"driver {name}: NOT running (its labels wait)")
    lines.extend(
        f"scheduled flip at {flip['due_at']}: {flip['labels']} label(s), "
        f"{flip['rendered']} pre-rendered"
        for flip in result.get("scheduled_flips") or []
    )
    jobs = result.get("jobs") or []
    if jobs:
        lines.append(
            f"{'LABEL':<18} {'SKU':<16} {'STATE':<16} {'VER':>5} {'TRY':>3}  "
            f"{'QUEUED':<29} LAST ERROR / EVIDENCE"
        )
        lines.extend(
            f"{j['label']:<18} {j['sku']:<16} {j['state']:<16} {j['price_version']:>5} "
            f"{j['attempts']:>3}  {j['queued_at']:<29} "
            f"{j.get('last_error') or j.get('evidence') or ''}"
            for j in jobs
        )
    return "\n".join(lines)


def _count(value: object) -> str:
    return "?" if value is None else str(value)


def _slot_count(view: Mapping[str, Any]) -> str:
    """``?`` while unknown; ``?(N)`` while stale: N is the last count, not a current one."""
    last = view.get("last_count")
    if view.get("stale") and last is not None:
        return f"?({last})"
    return _count(view.get("count"))


def _slot_health(view: Mapping[str, Any]) -> str:
    faults = view.get("faults") or []
    if faults:
        return "FAULT: " + ", ".join(faults)
    return "waiting for a stable weight" if view.get("stale") else "ok"


def render_slots(result: Mapping[str, Any]) -> str:
    """``storegw slots``: problems first (faults, out, low, unknown), then the rest."""
    slots = result.get("slots") or []
    if not slots:
        return "no shelf slots configured ([[shelves.slots]] or HQ's slots command)"
    order = {"out": 1, "low": 2, "unknown": 3, "ok": 4}

    def rank(slot: Mapping[str, Any]) -> tuple[int, str]:
        return (0 if slot.get("faults") else order.get(str(slot.get("state")), 5)), str(
            slot.get("slot")
        )

    header = (
        f"{'SLOT':<20} {'SKU':<15} {'COUNT':>5} {'MIN':>4} {'STATE':<8} {'GRAMS':>9} "
        f"{'NOISE':>6}  HEALTH"
    )
    lines = [header]
    for slot in sorted(slots, key=rank):
        grams = slot.get("items_grams")
        noise = slot.get("noise_grams")
        lines.append(
            f"{slot.get('slot', '?'):<20} {slot.get('sku', '?'):<15} "
            f"{_slot_count(slot):>5} {slot.get('min_count', 0):>4} "
            f"{str(slot.get('state', '?')).upper():<8} "
            f"{'?' if grams is None else f'{grams:.0f}':>9} "
            f"{'?' if noise is None else f'{noise:.1f}':>6}  {_slot_health(slot)}"
        )
    return "\n".join(lines)


_PROBLEM_TEXT = {
    "low_battery": "battery below 2400 mV",
    "timed_out": "missed check-in by > 600 s",
    "weak_signal": "signal below -85 dBm",
    "deep_sleep": "in deep sleep (silent until woken)",
}


def _fleet_health_lines(health: Mapping[str, Any] | None) -> list[str]:
    """``storegw labels --health``: the problems, then each affected label."""
    if not health:
        return []
    problems = health.get("problems") or {}
    found = [f"{len(labels)} {_PROBLEM_TEXT.get(p, p)}" for p, labels in problems.items() if labels]
    lines = [
        f"fleet health of {health.get('labels', 0)} label(s): {'; '.join(found) or 'all well'}"
    ]
    lines.extend(
        f"  {label['label']} via {label['device']}: {_health_text(label)}"
        for label in health.get("labels_with_problems") or []
    )
    return lines


def _health_text(label: Mapping[str, Any]) -> str:
    battery = label.get("battery_mv")
    rssi = label.get("rssi")
    problems = ", ".join(_PROBLEM_TEXT.get(p, p) for p in label.get("problems") or []) or "ok"
    due = label.get("next_checkin") or ("never: deep sleep" if label.get("deep_sleep") else "?")
    return (
        f"{problems} (battery {'?' if battery is None else f'{battery} mV'}, "
        f"RSSI {'?' if rssi is None else f'{rssi} dBm'}, next check-in "
        f"{due}, "
        f"last seen {label.get('last_seen')})"
    )


def render_label(result: Mapping[str, Any]) -> str:
    """``storegw label show LABEL``: should-show vs last confirmed, the job, the audit."""
    lines = [f"label {result['label']}"]
    binding = result.get("binding")
    lines.append(
        f"  bound to  {binding['sku']} ({binding['source']}"
        f"{', local override' if binding['local_override'] else ''}) since {binding['updated_at']}"
        if binding
        else "  bound to  nothing"
    )
    should = result.get("should_show")
    if should:
        face = should["face"]
        price = face.get("price") or "price unavailable"
        promo = f", promotion {face['promotion']}" if face.get("promotion") else ""
        if face.get("reference_price"):
            promo += f", was {face['reference_price']}"
        lines.append(
            f"  should    {price} {face.get('currency') or ''}{promo} (v{should['price_version']},"
            f" hash {(should.get('content_hash') or 'not rendered yet')[:12]})"
        )
    shown = result.get("last_confirmed")
    if shown:
        lines.append(
            f"  shows     hash {(shown.get('content_hash') or 'unknown')[:12]} since {shown['at']}"
            f" via {shown.get('device') or '?'} ({shown.get('evidence')})"
        )
    else:
        lines.append("  shows     unknown: no driver has reported this label")
    if result.get("health"):
        lines.append(f"  health    {_health_text(result['health'])}")
    lines.append(f"  in sync   {'yes' if result.get('in_sync') else 'NO'}")
    if "panel" in result:
        lines.append(f"  panel     {result['panel'] or 'unknown: drawn once the label reports it'}")
    job = result.get("job")
    if job:
        lines.append(
            f"  job       {job['state']}, attempt(s) {job['attempts']}, "
            f"queued {job['queued_at']}, submitted {job.get('submitted_at') or '-'}, "
            f"confirmed {job.get('confirmed_at') or '-'}"
        )
        if job.get("last_error"):
            lines.append(f"  error     {job['last_error']}")
        if job.get("next_attempt_at"):
            lines.append(f"  retry at  {job['next_attempt_at']}")
    lines.extend(
        f"  flip at   {flip['due_at']}: {flip['face'].get('price')} "
        f"(promotion {flip['face'].get('promotion') or '-'})"
        for flip in result.get("scheduled") or []
    )
    audit = result.get("audit") or []
    if audit:
        lines.append("  recent audit:")
        lines.extend(
            f"    {a['at']} {a['event']:<10} v{a['price_version']} "
            f"{(a.get('content_hash') or '')[:12]} {a.get('detail') or ''}"
            for a in audit
        )
    return "\n".join(lines)


def render_slot_reading(view: Mapping[str, Any]) -> str:
    """One line of ``storegw scale read``."""
    raw, load = view.get("raw"), view.get("load_grams")
    faults = view.get("faults") or []
    return (
        f"{view.get('slot')}: raw {'?' if raw is None else f'{raw:.1f}'} "
        f"load {'?' if load is None else f'{load:.1f}'} g "
        f"{'stable' if view.get('stable') else 'moving'}, "
        f"count {_slot_count(view)} ({view.get('state')})"
        + (f", FAULT {', '.join(faults)}" if faults else "")
    )
